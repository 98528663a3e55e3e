"""The extremely long copy task (Expire-Span paper, section 5.3): count A's seen far in the past.

Layout of one episode (token ids in brackets)::

    A A ... A   B B B ... B B   ?
    `count`     `distance`      query

``count`` is uniform in 1..max_count and ``distance`` (the B's between the last A and the query)
uniform in min_distance..distance. The loss and the accuracy apply only at the query position,
whose target is class ``count - 1`` (the output head has ``max_count`` classes); every other
position is unmasked. Episodes follow each other without gaps in every row, as one endless sequence
(``first`` is all False): the B's and the query of the episode before precede each run of A's, which is
what lets attention count the A's (a run at the very start of a context would look the same for any count).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sequence_tasks.batch import Batch

B_TOKEN, A_TOKEN, QUERY_TOKEN = 0, 1, 2
VOCAB_SIZE = 3
MAX_DISTANCE = 131_072


def copy_episode(rng: np.random.Generator, max_count: int, min_distance: int, distance: int) -> dict[str, np.ndarray]:
    """One episode's tokens, targets, loss mask and first flags (each of length count + distance + 1)."""
    count = int(rng.integers(1, max_count + 1))
    gap = int(rng.integers(min_distance, distance + 1))
    length = count + gap + 1
    tokens = np.full(length, B_TOKEN, dtype=np.int64)
    tokens[:count], tokens[-1] = A_TOKEN, QUERY_TOKEN
    targets = np.zeros(length, dtype=np.int64)
    targets[-1] = count - 1
    mask, first = np.zeros(length, dtype=bool), np.zeros(length, dtype=bool)
    mask[-1] = True
    return {"tokens": tokens, "targets": targets, "mask": mask, "first": first}


class CopyStream:
    """``batch_size`` rows of back-to-back copy episodes, generated on the fly from ``seed``."""

    def __init__(self, batch_size: int, block: int, max_count: int, min_distance: int, distance: int, seed: Any):
        if not 1 <= min_distance <= distance <= MAX_DISTANCE:
            raise ValueError(f"need 1 <= min_distance <= distance <= {MAX_DISTANCE}, got {min_distance}, {distance}")
        if max_count < 2:
            raise ValueError(f"max_count must be at least 2, got {max_count}")
        self.batch_size, self.block = batch_size, block
        self.episode = {"max_count": max_count, "min_distance": min_distance, "distance": distance}
        self.rng = np.random.default_rng(seed)
        self.pending = [copy_episode(self.rng, **self.episode) for _ in range(batch_size)]

    def next_block(self) -> Batch:
        rows = []
        for row in range(self.batch_size):
            while len(self.pending[row]["tokens"]) < self.block:
                new = copy_episode(self.rng, **self.episode)
                self.pending[row] = {k: np.concatenate([v, new[k]]) for k, v in self.pending[row].items()}
            rows.append({k: v[: self.block] for k, v in self.pending[row].items()})
            self.pending[row] = {k: v[self.block :] for k, v in self.pending[row].items()}
        return Batch(**{k: torch.from_numpy(np.stack([r[k] for r in rows])) for k in rows[0]})  # each B x T

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "pending": [{k: v.copy() for k, v in p.items()} for p in self.pending],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.pending = [{k: v.copy() for k, v in p.items()} for p in state["pending"]]
