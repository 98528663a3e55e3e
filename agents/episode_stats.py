"""Episode statistics accumulated as device tensors, so acting never waits on the host."""

from __future__ import annotations

import torch
from torch import Tensor


class EpisodeStats:
    """Per-env sums of finished episodes' return, length and success; read (one host sync) once per log interval."""

    def __init__(self, num_envs: int, device: torch.device):
        self.episodes = torch.zeros(num_envs, device=device)
        self.returns = torch.zeros(num_envs, device=device)
        self.lengths = torch.zeros(num_envs, device=device)
        self.successes = torch.zeros(num_envs, device=device)

    def add(self, done: Tensor, info: dict[str, Tensor]) -> None:
        """done: N bool; info holds the twin's per-env episode_return, episode_length and success (valid where done)."""
        done_f = done.to(self.episodes.dtype)  # N
        self.episodes += done_f
        self.returns += info["episode_return"] * done_f
        self.lengths += info["episode_length"] * done_f
        self.successes += info["success"] * done_f

    def read(self) -> dict[str, float] | None:
        """Means over the episodes finished since the last read (None if none finished), then start afresh."""
        totals = torch.stack([self.episodes.sum(), self.returns.sum(), self.lengths.sum(), self.successes.sum()])
        episodes, returns, lengths, successes = totals.tolist()
        for tensor in (self.episodes, self.returns, self.lengths, self.successes):
            tensor.zero_()
        if episodes == 0:
            return None
        return {
            "episodes": episodes,
            "return": returns / episodes,
            "length": lengths / episodes,
            "success": successes / episodes,
        }
