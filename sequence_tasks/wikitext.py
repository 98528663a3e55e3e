"""Word-level WikiText-103 (Merity et al., 2017) from a local folder in the standard layout.

The folder holds ``wiki.train.tokens``, ``wiki.valid.tokens`` and ``wiki.test.tokens``: text that is
already tokenised, words separated by white space, rare words already replaced by ``<unk>``. Each
line's words are followed by ``<eos>`` (empty lines give a lone ``<eos>``), as Transformer-XL and
fairseq read this data set. The vocabulary is every word of the training split, most frequent first
(ties in order of first appearance), so the adaptive input and softmax cut-offs split it into
frequency bands; a validation or test word outside it reads as ``<unk>``.
Each split is one token stream, read as byte-level text is (``text.TextStream``): articles follow
each other with the memory carried across them, as is usual for this data set. Evaluation scores
every word of each row but its first, the last block padded (the split's last words, fewer than
``batch_size x processes``, do not fill a row and are left out).
"""

from __future__ import annotations

import array
import collections
import dataclasses
from pathlib import Path

import numpy as np

from sequence_tasks.text import DataError

SPLIT_FILES = {"train": "wiki.train.tokens", "valid": "wiki.valid.tokens", "test": "wiki.test.tokens"}
EOS, UNK = "<eos>", "<unk>"


@dataclasses.dataclass
class Vocabulary:
    """Words in id order; ``index`` maps a word to its id."""

    words: list[str]
    index: dict[str, int]

    def __len__(self) -> int:
        return len(self.words)


def data_folder(path: str | Path, files: str) -> Path:
    """``path`` as an existing folder, or a DataError that says what --data must name."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"data folder {str(folder)!r} does not exist (--data takes the folder holding {files})")
    if not folder.is_dir():
        raise DataError(f"data path {str(folder)!r} is not a folder (--data takes the folder holding {files})")
    return folder


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a DataError naming the file when it is missing, unreadable or empty."""
    if not path.is_file():
        raise DataError(f"{what} {str(path)!r} is missing")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{what} {str(path)!r} is not UTF-8 text: {error}") from error
    except OSError as error:
        raise DataError(f"{what} {str(path)!r} cannot be read: {error}") from error
    if not content.strip():
        raise DataError(f"{what} {str(path)!r} is empty")
    return content


def lines(content: str) -> list[str]:
    """The file's lines, split at newlines only (as iterating over the open file does)."""
    split = content.split("\n")
    return split[:-1] if split[-1] == "" else split


def build_vocabulary(content: str) -> Vocabulary:
    """Every word of ``content`` and ``<eos>``, most frequent first; ``<unk>`` last if the text never has it."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines(content):
        counts.update(line.split())
        counts[EOS] += 1
    ordered = [word for word, _ in counts.most_common()]  # a stable sort: ties in order of first appearance
    if UNK not in ordered:
        ordered.append(UNK)
    return Vocabulary(ordered, {word: i for i, word in enumerate(ordered)})


def encode(content: str, vocabulary: Vocabulary) -> np.ndarray:
    """The word ids (int32) of ``content``, ``<eos>`` after each line, ``<unk>`` for a word not in the vocabulary."""
    index, unk, eos = vocabulary.index, vocabulary.index[UNK], vocabulary.index[EOS]
    ids = array.array("i")  # 4 bytes a word: WikiText-103's 103M training words as Python objects would need GBs
    for line in lines(content):
        ids.extend(index.get(word, unk) for word in line.split())
        ids.append(eos)
    return np.frombuffer(ids, dtype=np.int32)


def load(path: str | Path) -> tuple[Vocabulary, dict[str, np.ndarray]]:
    """The vocabulary of the training split and every split's word ids."""
    needed = ", ".join(SPLIT_FILES.values())
    folder = data_folder(path, needed)
    for name in SPLIT_FILES.values():
        if not (folder / name).is_file():
            raise DataError(f"{str(folder / name)!r} is missing: a WikiText folder holds {needed}")
    contents = {split: read_text(folder / name, "split file") for split, name in SPLIT_FILES.items()}
    vocabulary = build_vocabulary(contents["train"])
    return vocabulary, {split: encode(content, vocabulary) for split, content in contents.items()}
