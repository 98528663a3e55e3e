"""Byte-level language modelling data from a file the user names (nothing is ever downloaded).

``text``: any file, split by fractions (train first, then validation, then test). ``enwik8``: the
standard split of Mahoney's file, the first 90M bytes for training and the next 5M each for
validation and test; the file may be raw or a zip archive holding it.

Each split is cut into ``world_size x batch_size`` contiguous streams (Transformer-XL's batchify);
rank r reads rows ``r*B .. r*B+B-1``, and a block is ``block`` consecutive bytes of every row with
the next byte as target.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sequence_tasks.batch import Batch

VOCAB_SIZE = 256
ENWIK8_SPLIT = (90_000_000, 5_000_000, 5_000_000)  # train, valid, test bytes


class DataError(ValueError):
    """A data file that is missing, unreadable, or too small for the requested blocks."""


def read_bytes(path: str | Path) -> np.ndarray:
    """The file's bytes (the single member's bytes for a zip archive) as a uint8 array."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist (--data takes the path of a local file)")
    if not path.is_file():
        raise DataError(f"data path {str(path)!r} is not a file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise DataError(f"zip archive {str(path)!r} must hold exactly one file, it holds {len(members)}")
                raw = archive.read(members[0])
        else:
            raw = path.read_bytes()
    except (OSError, zipfile.BadZipFile) as error:
        raise DataError(f"data file {str(path)!r} cannot be read: {error}") from error
    if not raw:
        raise DataError(f"data file {str(path)!r} is empty")
    return np.frombuffer(raw, dtype=np.uint8)


def split_by_sizes(data: np.ndarray, train_bytes: int, valid_bytes: int, test_bytes: int) -> dict[str, np.ndarray]:
    """The first ``train_bytes`` for training, the next ``valid_bytes`` and ``test_bytes`` (enwik8: 90M/5M/5M)."""
    total = train_bytes + valid_bytes + test_bytes
    if min(train_bytes, valid_bytes, test_bytes) <= 0:
        raise DataError("train_bytes, valid_bytes and test_bytes must all be positive")
    if len(data) < total:
        raise DataError(f"the data has {len(data)} bytes, fewer than the split needs ({total} = train + valid + test)")
    return {
        "train": data[:train_bytes],
        "valid": data[train_bytes : train_bytes + valid_bytes],
        "test": data[train_bytes + valid_bytes : total],
    }


def split_by_fractions(data: np.ndarray, valid_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """Training first, then ``valid_fraction`` of the bytes for validation and ``test_fraction`` for test."""
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise DataError("valid_fraction and test_fraction must lie in (0, 1) and sum to less than 1")
    n_valid, n_test = int(len(data) * valid_fraction), int(len(data) * test_fraction)
    if min(n_valid, n_test) == 0:
        raise DataError(
            f"the data has {len(data)} bytes: data.valid_fraction {valid_fraction:g} and data.test_fraction "
            f"{test_fraction:g} of it leave {n_valid} and {n_test} bytes; use a larger file or larger fractions"
        )
    return split_by_sizes(data, len(data) - n_valid - n_test, n_valid, n_test)


class TextStream:
    """``batch_size`` contiguous rows of one split, read ``block`` tokens (bytes, or words) at a time.

    With ``loop`` (training) a row wraps to its start when fewer than ``block + 1`` tokens remain, and
    that block is flagged ``first`` so the carried memory does not bridge the seam; without it
    (evaluation) the stream ends there, or with ``pad_tail`` after one last block holding the rest of
    every row, padded with unscored positions, so that every token after a row's first is scored.
    """

    def __init__(
        self,
        data: np.ndarray,
        batch_size: int,
        block: int,
        rank: int = 0,
        world_size: int = 1,
        *,
        loop: bool,
        name: str = "data",
        unit: str = "bytes",
        pad_tail: bool = False,
    ):
        n_rows = batch_size * world_size
        self.length = len(data) // n_rows
        if self.length < block + 1:
            raise DataError(
                f"the {name} split has {len(data)} {unit}: too small for {n_rows} streams of block + 1 = {block + 1} "
                f"{unit} each; use a larger file or a smaller block or batch_size"
            )
        rows = data[: self.length * n_rows].reshape(n_rows, self.length)[rank * batch_size : (rank + 1) * batch_size]
        self.rows = torch.from_numpy(rows.copy())  # B x length, uint8 bytes or int32 word ids
        self.block, self.loop, self.pad_tail, self.position = block, loop, pad_tail, 0

    def next_block(self) -> Batch | None:
        if self.position + self.block + 1 > self.length:
            if self.loop:
                self.position = 0
            elif not (self.pad_tail and self.position + 1 < self.length):
                return None
        chunk = self.rows[:, self.position : self.position + self.block + 1].long()  # B x (n + 1), n <= T
        scored = chunk.shape[1] - 1
        first = torch.zeros(chunk.shape[0], self.block, dtype=torch.bool)
        first[:, 0] = self.position == 0
        self.position += self.block
        if scored < self.block:  # the padded tail: zeros past the row's end, unscored
            chunk = torch.nn.functional.pad(chunk, (0, self.block - scored))  # B x (T + 1)
        mask = torch.zeros_like(first)
        mask[:, :scored] = True
        return Batch(tokens=chunk[:, :-1], targets=chunk[:, 1:], mask=mask, first=first)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = state["position"]
