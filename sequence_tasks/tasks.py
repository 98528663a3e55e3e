"""The task registry: from a task name and its ``[data]`` settings to vocabularies and block streams.

Every task has the splits train, valid and test. Text splits are parts of the user's file, or the
split files (WikiText-103) or folders of books (PG-19) in the user's data folder; generated tasks
draw each split (and each rank) from its own seed, so validation and test data never repeat
training data and every rank trains on its own rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sequence_tasks import collision, copy_task, pg19, text, wikitext
from sequence_tasks.batch import BlockStream

TASK_NAMES = ("text", "enwik8", "copy", "collision", "wikitext103", "pg19")
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class Task:
    """vocab_in token ids in, vocab_out classes out; metric is 'bpc', 'ppl', 'accuracy' or 'error'."""

    name: str
    vocab_in: int
    vocab_out: int
    metric: str
    make_stream: Callable[[str, int], BlockStream]  # (split, batch_size) -> the split's stream for this rank


def build_task(
    name: str, data: dict[str, Any], block: int, path: str | Path | None, seed: int, rank: int = 0, world_size: int = 1
) -> Task:
    """The task ``name`` with the ``[data]`` config table ``data``.

    ``path`` is the text file (text, enwik8) or the data folder (wikitext103, pg19).
    """
    if name in ("text", "enwik8"):
        if path is None:
            raise ValueError(f"--task {name} reads a local file: pass --data PATH")
        raw = text.read_bytes(path)
        if name == "enwik8":
            splits = text.split_by_sizes(raw, data["train_bytes"], data["valid_bytes"], data["test_bytes"])
        else:
            splits = text.split_by_fractions(raw, data["valid_fraction"], data["test_fraction"])

        def make_text(split: str, batch_size: int) -> BlockStream:
            return text.TextStream(
                splits[split], batch_size, block, rank, world_size, loop=split == "train", name=split
            )

        return Task(name, text.VOCAB_SIZE, text.VOCAB_SIZE, "bpc", make_text)

    if name in ("wikitext103", "pg19"):
        if path is None:
            raise ValueError(f"--task {name} reads a local folder: pass --data DIR")
        return build_folder_task(name, data, block, path, rank, world_size)

    def split_seed(split: str) -> np.random.SeedSequence:
        return np.random.SeedSequence([seed, SPLITS.index(split), rank])

    if name == "copy":

        def make_copy(split: str, batch_size: int) -> BlockStream:
            return copy_task.CopyStream(batch_size, block, seed=split_seed(split), **data)

        return Task(name, copy_task.VOCAB_SIZE, data["max_count"], "accuracy", make_copy)
    if name == "collision":
        grid, colours = data["grid"], not data["easy"]

        def make_collision(split: str, batch_size: int) -> BlockStream:
            return collision.CollisionStream(batch_size, block, grid, colours, seed=split_seed(split))

        return Task(name, collision.vocab_size(grid), collision.N_QUADRANTS, "error", make_collision)
    raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")


def build_folder_task(
    name: str, data: dict[str, Any], block: int, path: str | Path, rank: int, world_size: int
) -> Task:
    """WikiText-103 (word ids, perplexity) or PG-19 (characters of books, bits per character) from ``path``."""
    if name == "wikitext103":
        vocabulary, splits = wikitext.load(path)

        def make_words(split: str, batch_size: int) -> BlockStream:
            loop = split == "train"
            return text.TextStream(
                splits[split], batch_size, block, rank, world_size, loop=loop, name=split, unit="words", pad_tail=True
            )

        return Task(name, len(vocabulary), len(vocabulary), "ppl", make_words)
    books = pg19.find_books(path)
    characters = pg19.build_vocabulary(books["train"], data["vocab_size"])

    def make_books(split: str, batch_size: int) -> BlockStream:
        loop = split == "train"
        return pg19.BookStream(books[split], characters, batch_size, block, rank, world_size, loop=loop, name=split)

    return Task(name, len(characters), len(characters), "bpc", make_books)
