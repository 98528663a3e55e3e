"""Build a small real-text corpus from the documentation on this machine, in the WikiText or PG-19 layout.

    python scripts/build_doc_corpus.py /tmp/doc-wikitext                 # wiki.{train,valid,test}.tokens
    python scripts/build_doc_corpus.py /tmp/doc-pg19 --layout pg19      # train/, validation/, test/ books

The documents are the README, NEWS and text files (.txt, .md, .rst, plain or gzipped) under
/usr/share/doc, without licences and changelogs, identical files once. They are shuffled with a
fixed seed and split by document: the first ``--test-fraction`` of the words for test, the next
``--valid-fraction`` for validation, the rest (up to ``--max-words``) for training. The WikiText
layout tokenises each line into words and punctuation, one space between tokens, and replaces
words seen fewer than 3 times in the training split by ``<unk>`` (as WikiText-103 does). The PG-19
layout writes each document as one book, as it is. Nothing is downloaded; the output is not part
of the project, only this script is.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import random
import re
from pathlib import Path

PATTERNS = re.compile(r"^(readme|news).*|.*\.(txt|md|rst)$", re.IGNORECASE)
LEFT_OUT = re.compile(r"changelog|changes|copying|license|licence", re.IGNORECASE)  # logs and legal text
WORD = re.compile(r"\w+|[^\w\s]")
MIN_COUNT = 3


def documents(root: Path, min_chars: int) -> list[str]:
    """The text of every matching documentation file under ``root``, in a fixed order, each once."""
    seen, texts = set(), []
    for path in sorted(root.rglob("*")):
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        if not path.is_file() or path.is_symlink() or not PATTERNS.match(name) or LEFT_OUT.search(name):
            continue
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        digest = hashlib.sha256(raw).digest()
        text = raw.decode("utf-8", errors="ignore").replace("\r\n", "\n")
        if digest in seen or len(text) < min_chars:
            continue
        seen.add(digest)
        texts.append(text)
    return texts


def split_documents(texts: list[str], valid: float, test: float, max_words: int, seed: int) -> dict[str, list[str]]:
    """Shuffled documents dealt to test, then valid, then train, by their share of the words."""
    random.Random(seed).shuffle(texts)
    total = sum(len(t.split()) for t in texts)
    limits = {"test": test * total, "valid": valid * total, "train": max_words}
    splits: dict[str, list[str]] = {split: [] for split in limits}
    counts = dict.fromkeys(limits, 0)
    for text in texts:
        split = next((s for s in ("test", "valid", "train") if counts[s] < limits[s]), None)
        if split is None:
            break
        splits[split].append(text)
        counts[split] += len(text.split())
    return splits


def write_wikitext(splits: dict[str, list[str]], out: Path) -> None:
    tokenised = {s: [WORD.findall(line) for text in texts for line in text.split("\n")] for s, texts in splits.items()}
    counts = collections.Counter(word for line in tokenised["train"] for word in line)
    for split, lines in tokenised.items():
        with open(out / f"wiki.{split}.tokens", "w", encoding="utf-8") as handle:
            for line in lines:
                if line:
                    handle.write(" " + " ".join(w if counts[w] >= MIN_COUNT else "<unk>" for w in line) + " \n")


def write_pg19(splits: dict[str, list[str]], out: Path) -> None:
    for split, texts in splits.items():
        folder = out / {"train": "train", "valid": "validation", "test": "test"}[split]
        folder.mkdir(parents=True, exist_ok=True)
        for number, text in enumerate(texts):
            (folder / f"{number:05d}.txt").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder to write (created)")
    parser.add_argument("--layout", choices=("wikitext", "pg19"), default="wikitext")
    parser.add_argument("--root", type=Path, default=Path("/usr/share/doc"))
    parser.add_argument("--valid-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--max-words", type=int, default=2_000_000, help="training words at most")
    parser.add_argument("--min-chars", type=int, default=2000, help="shorter documents are left out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    texts = documents(args.root, args.min_chars)
    splits = split_documents(texts, args.valid_fraction, args.test_fraction, args.max_words, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (write_wikitext if args.layout == "wikitext" else write_pg19)(splits, args.out)
    for split, chosen in splits.items():
        print(f"{split}: {len(chosen)} documents, {sum(len(t.split()) for t in chosen)} white-space words")


if __name__ == "__main__":
    main()
