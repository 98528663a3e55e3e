"""Small corpora in the WikiText-103 and PG-19 layouts, written by the tests that read them."""

from pathlib import Path


def write_wikitext(folder: Path, train: str, valid: str, test: str) -> Path:
    """``wiki.{train,valid,test}.tokens`` in ``folder`` with the given contents."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, content in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"wiki.{split}.tokens").write_text(content, encoding="utf-8")
    return folder


def write_pg19(folder: Path, books: dict[str, list[str]]) -> Path:
    """``train/``, ``validation/`` and ``test/`` in ``folder``, one numbered .txt file per book, in order."""
    for split, texts in books.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        for number, text in enumerate(texts):
            (folder / split / f"{number:03d}.txt").write_text(text, encoding="utf-8")
    return folder


WORDS = "the cat sat on a mat , and the dog ran to the door of the red house . = history = it was late".split()


def word_lines(n_lines: int, seed: int) -> str:
    """``n_lines`` lines of 3 to 9 words from WORDS, a fixed pseudo-random text."""
    lines, state = [], seed
    for _ in range(n_lines):
        state = (state * 1103515245 + 12345) % 2**31
        length = 3 + state % 7
        lines.append(" " + " ".join(WORDS[(state // 7 + 5 * k) % len(WORDS)] for k in range(length)) + " ")
    return "\n".join(lines) + "\n"


def book(n_chars: int, seed: int) -> str:
    """A book of ``n_chars`` characters: pseudo-random words over a small alphabet with newlines."""
    text = word_lines(n_chars // 10 + 1, seed).replace(" = ", " é ")
    return text[:n_chars]
