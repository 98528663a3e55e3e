"""Episode statistics accumulated as device tensors, so acting never waits on the host."""

from __future__ import annotations

import torch
from torch import Tensor

# Per-episode counters a task may report in `info` (Instruction's accuracy), summed like the rest.
TASK_COUNTERS = (
    "instructions_received",
    "instructions_right",
    "instructions_failed",
    "instructions_wrong",
    "instructions_repeated",
)


class EpisodeStats:
    """Per-env sums of finished episodes' return, length, success and task counters; read (one host sync) once per
    log interval."""

    def __init__(self, num_envs: int, device: torch.device):
        names = ("episodes", "return", "length", "success", *TASK_COUNTERS)
        self.sums = {name: torch.zeros(num_envs, device=device) for name in names}

    def add(self, done: Tensor, info: dict[str, Tensor]) -> None:
        """done: N bool; info holds the twin's per-env episode_return, episode_length, success and any task
        counters (valid where done)."""
        done_f = done.to(torch.float32)  # N
        self.sums["episodes"] += done_f
        self.sums["return"] += info["episode_return"] * done_f
        self.sums["length"] += info["episode_length"] * done_f
        self.sums["success"] += info["success"] * done_f
        for name in TASK_COUNTERS:
            if name in info:
                self.sums[name] += info[name] * done_f

    def state_dict(self) -> dict[str, Tensor]:
        """The sums since the last read: a resumed run's next read then equals the uninterrupted run's."""
        return {name: tensor.clone() for name, tensor in self.sums.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """A counter the checkpoint's code did not have yet resumes from zero."""
        for name, tensor in self.sums.items():
            tensor.copy_(state[name]) if name in state else tensor.zero_()

    def read(self) -> dict[str, float] | None:
        """Means over the episodes finished since the last read (None if none finished), then start afresh.

        With Instruction's counters, also `instruction_accuracy`: of the instructions attempted (the first
        speech to a ready target), the share carried out.
        """
        totals = dict(zip(self.sums, torch.stack([s.sum() for s in self.sums.values()]).tolist(), strict=True))
        for tensor in self.sums.values():
            tensor.zero_()
        episodes = totals.pop("episodes")
        if episodes == 0:
            return None
        means = {name: total / episodes for name, total in totals.items()}
        executed = totals["instructions_right"] + totals["instructions_failed"]
        if totals["instructions_received"] > 0:
            means["instruction_accuracy"] = totals["instructions_right"] / executed if executed else 0.0
        else:
            for name in TASK_COUNTERS:
                del means[name]
        return {"episodes": episodes, **means}
