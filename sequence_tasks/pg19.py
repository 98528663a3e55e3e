"""Character-level PG-19 (Rae et al., 2020) from a local folder in the standard layout.

The folder holds ``train/``, ``validation/`` and ``test/``, each a folder of books, one UTF-8 ``.txt``
file per book. The vocabulary is the characters of the training books, most frequent first (ties by
code point), capped at ``vocab_size`` ids in all with the two special ids ``<bos>`` (a book starts)
and ``<unk>`` (the Expire-Span paper's PG-19 vocabulary has 3506); a rarer character, or one the
training books never use, reads as ``<unk>``.

The books of a split are dealt to its ``world_size x batch_size`` rows in file-name order, each to
the row with the fewest bytes so far, and every row reads its books one after another. A book is
read as ``<bos>`` and its characters: the inputs are ``<bos>`` and all but the last character, the
targets every character, so each character is scored once and nothing is predicted across books.
``first`` is set at each ``<bos>``: the models' memory is carried within a book and reset between
books. A training row starts again at its first book when it runs out; an evaluation row that runs
out is padded with unscored positions until the split's last row ends.
"""

from __future__ import annotations

import dataclasses
import heapq
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sequence_tasks.batch import Batch
from sequence_tasks.text import DataError
from sequence_tasks.wikitext import data_folder, read_text

SPLIT_FOLDERS = {"train": "train", "valid": "validation", "test": "test"}
BOS, UNK = 0, 1  # the special ids; characters take the ids from 2 on
N_CODE_POINTS = 0x110000


def code_points(content: str) -> np.ndarray:
    """The Unicode code points of ``content`` (uint32), one per character."""
    return np.frombuffer(content.encode("utf-32-le"), dtype=np.uint32)


@dataclasses.dataclass
class CharVocabulary:
    """``chars[i]`` has id ``2 + i``; ``table`` maps every code point to its id (``<unk>`` for the rest)."""

    chars: str
    table: np.ndarray  # N_CODE_POINTS int64

    def __len__(self) -> int:
        return len(self.chars) + 2

    def encode(self, content: str) -> np.ndarray:
        return self.table[code_points(content)]


def find_books(path: str | Path) -> dict[str, list[Path]]:
    """Each split's books in file-name order; a DataError naming the folder that is missing or holds none."""
    needed = "train/, validation/ and test/ folders of .txt books"
    folder = data_folder(path, needed)
    books = {}
    for split, name in SPLIT_FOLDERS.items():
        split_folder = folder / name
        if not split_folder.is_dir():
            raise DataError(f"{str(split_folder)!r} is missing: a PG-19 folder holds {needed}")
        books[split] = sorted(split_folder.glob("*.txt"))
        if not books[split]:
            raise DataError(f"{str(split_folder)!r} holds no .txt books")
    return books


def build_vocabulary(books: list[Path], vocab_size: int) -> CharVocabulary:
    """The most frequent characters of ``books``, ``vocab_size - 2`` at most."""
    if vocab_size < 3:
        raise DataError(f"data.vocab_size must be at least 3 (<bos>, <unk> and one character), got {vocab_size}")
    counts = np.zeros(N_CODE_POINTS, dtype=np.int64)
    for path in books:
        counts += np.bincount(code_points(read_text(path, "book")), minlength=N_CODE_POINTS)
    order = np.lexsort((np.arange(N_CODE_POINTS), -counts))  # by count, most first; ties by code point
    kept = order[: min(vocab_size - 2, int((counts > 0).sum()))]
    table = np.full(N_CODE_POINTS, UNK, dtype=np.int64)
    table[kept] = np.arange(2, 2 + len(kept))
    return CharVocabulary("".join(map(chr, kept)), table)


def deal_books(books: list[Path], n_rows: int) -> list[list[Path]]:
    """The books in order, each to the row that has the fewest bytes so far (the lowest row on a tie)."""
    rows: list[list[Path]] = [[] for _ in range(n_rows)]
    load = [(0, row) for row in range(n_rows)]
    for path in books:
        size, row = heapq.heappop(load)
        rows[row].append(path)
        heapq.heappush(load, (size + path.stat().st_size, row))
    return rows


class BookStream:
    """This rank's ``batch_size`` rows of a split's books, ``block`` characters at a time (module docstring)."""

    def __init__(
        self,
        books: list[Path],
        vocabulary: CharVocabulary,
        batch_size: int,
        block: int,
        rank: int = 0,
        world_size: int = 1,
        *,
        loop: bool,
        name: str = "data",
    ):
        n_rows = batch_size * world_size
        if loop and len(books) < n_rows:
            raise DataError(
                f"the {name} split has {len(books)} books: fewer than the {n_rows} streams that read it "
                f"(batch_size x processes); use more books or a smaller batch_size"
            )
        self.rows = deal_books(books, n_rows)[rank * batch_size : (rank + 1) * batch_size]
        self.vocabulary, self.block, self.loop = vocabulary, block, loop
        self.book = [0] * batch_size  # per row: the index of the book it reads among its books
        self.position = [0] * batch_size  # per row: the next input's index in that book's [<bos>, chars]
        self.cache: list[tuple[int, np.ndarray] | None] = [None] * batch_size  # per row: (book, its ids)

    def sequence(self, row: int) -> np.ndarray:
        """``<bos>`` and the ids of the characters of the book ``row`` reads now."""
        cached = self.cache[row]
        if cached is None or cached[0] != self.book[row]:
            content = read_text(self.rows[row][self.book[row]], "book")
            cached = (self.book[row], np.concatenate([[BOS], self.vocabulary.encode(content)]))
            self.cache[row] = cached
        return cached[1]

    def next_block(self) -> Batch | None:
        batch_size = len(self.rows)
        if not self.loop and all(self.book[row] >= len(self.rows[row]) for row in range(batch_size)):
            return None
        tokens = np.zeros((batch_size, self.block), dtype=np.int64)  # B x T, <bos> where unscored padding
        targets = np.zeros((batch_size, self.block), dtype=np.int64)  # B x T
        mask = np.zeros((batch_size, self.block), dtype=bool)  # B x T
        first = np.zeros((batch_size, self.block), dtype=bool)  # B x T
        for row in range(batch_size):
            filled = 0
            while filled < self.block:
                if self.book[row] >= len(self.rows[row]):
                    if not self.loop:
                        break
                    self.book[row] = 0
                ids, start = self.sequence(row), self.position[row]
                take = min(self.block - filled, len(ids) - 1 - start)
                tokens[row, filled : filled + take] = ids[start : start + take]
                targets[row, filled : filled + take] = ids[start + 1 : start + 1 + take]
                mask[row, filled : filled + take] = True
                first[row, filled] = start == 0
                filled += take
                self.position[row] = start + take
                if self.position[row] == len(ids) - 1:
                    self.book[row], self.position[row] = self.book[row] + 1, 0
        return Batch(*(torch.from_numpy(a) for a in (tokens, targets, mask, first)))

    def state_dict(self) -> dict[str, Any]:
        return {"book": list(self.book), "position": list(self.position)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.book, self.position = list(state["book"]), list(state["position"])
