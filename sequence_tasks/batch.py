"""What every sequence task streams: blocks of B parallel rows, processed in order with memory carried.

A stream's position (offsets, generator state, pending tokens) is its ``state_dict``, so a checkpoint
that saves it resumes the data exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclasses.dataclass
class Batch:
    """One block of every stream.

    tokens: B x T long inputs; targets: B x T long, what the output at each position must predict;
    mask: B x T bool, True where the loss and the metric count; first: B x T bool, True where a new
    document or episode starts (the memory models' ``first`` flag).
    """

    tokens: Tensor
    targets: Tensor
    mask: Tensor
    first: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in dataclasses.astuple(self)))


class BlockStream(Protocol):
    """B rows of a task's data, handed out one block at a time, in order."""

    def next_block(self) -> Batch | None:
        """The next block, or None when a finite (evaluation) stream is used up."""

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the blocks still to come."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
