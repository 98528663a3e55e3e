"""Curricula: env parameters that change by stages during one run, promoted on training success.

A config's ``[curriculum]`` table lists ``stages``, each a table of env parameter values (for
Corridor ``{max_length = 10}``), and the promotion rule: once at least ``window`` episodes of the
current stage have finished and their success rate is at least ``threshold``, the next stage begins.
Promotion takes effect for episodes that start after it (the batched env's ``set_task``): an episode
running at that moment finishes under the rules it began with and counts for no stage. The run
never restarts. Held-out evaluation always uses the config's full ``[env]`` table.

Under torchrun the counts are summed over ranks, so every rank promotes at the same update. The
rate is over the most recent whole updates holding at least ``window`` of the stage's episodes:
counts are read once per update (one host sync), not per episode.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def check_curriculum_config(curriculum: dict[str, Any], changeable: tuple[str, ...]) -> None:
    """ValueErrors naming the first bad value of the ``[curriculum]`` table; ``changeable``: the env's parameters
    a stage may set."""
    stages = curriculum["stages"]
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict) or not stage:
            raise ValueError(f"curriculum.stages[{index}] must be a table of env parameters, got {stage!r}")
        unknown = sorted(set(stage) - set(changeable))
        if unknown:
            raise ValueError(
                f"curriculum.stages[{index}] sets {', '.join(unknown)}, which this env cannot change between "
                f"episodes (it can change: {', '.join(changeable) or 'nothing'})"
            )
    if stages and not 0 < curriculum["threshold"] <= 1:
        raise ValueError(f"curriculum.threshold must be in (0, 1], got {curriculum['threshold']}")
    if stages and curriculum["window"] < 1:
        raise ValueError(f"curriculum.window must be at least 1 episode, got {curriculum['window']}")


class Curriculum:
    """Watches training episodes end (an ``EpisodeObserver``) and moves ``env`` through the stages."""

    def __init__(self, env, curriculum: dict[str, Any], device: torch.device):
        self.env, self.stages = env, curriculum["stages"]
        self.threshold, self.window = curriculum["threshold"], curriculum["window"]
        self.stage = 0
        self.row_stage = torch.zeros(env.num_envs, dtype=torch.long, device=device)  # N: stage each episode began in
        self.finished = torch.zeros((), device=device)  # episodes of the current stage finished in this update
        self.succeeded = torch.zeros((), device=device)
        self.history: list[tuple[float, float]] = []  # per update: (episodes, successes) of the current stage
        if self.stages:
            env.set_task(**self.stages[0])

    @property
    def active(self) -> bool:
        return bool(self.stages)

    def add(self, done: Tensor, info: dict[str, Tensor]) -> None:
        """done: N bool; info["success"]: N bool, valid where done."""
        counted = done & (self.row_stage == self.stage)  # N: episodes that began in the current stage
        self.finished += counted.sum()
        self.succeeded += (counted & info["success"]).sum()
        self.row_stage = torch.where(done, self.stage, self.row_stage)  # the next episode begins now

    def after_update(self) -> bool:
        """Read this update's counts and promote when the rule holds; True when it promoted."""
        if self.stage + 1 >= len(self.stages):
            return False
        counts = torch.stack([self.finished, self.succeeded])  # 2
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)  # every rank promotes on the same counts, so all stay in one stage
        finished, succeeded = counts.tolist()
        self.finished.zero_()
        self.succeeded.zero_()
        self.history.append((finished, succeeded))
        while len(self.history) > 1 and sum(n for n, _ in self.history[1:]) >= self.window:
            self.history.pop(0)  # the rest still hold a full window
        episodes = sum(n for n, _ in self.history)
        if episodes < self.window or sum(s for _, s in self.history) < self.threshold * episodes:
            return False
        self.stage += 1
        self.history = []
        self.env.set_task(**self.stages[self.stage])
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "row_stage": self.row_stage.clone(),
            "finished": self.finished.clone(),
            "succeeded": self.succeeded.clone(),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``; call after the env's own state is restored."""
        device = self.row_stage.device
        self.stage = state["stage"]
        self.row_stage = state["row_stage"].to(device)
        self.finished, self.succeeded = state["finished"].to(device), state["succeeded"].to(device)
        self.history = [tuple(item) for item in state["history"]]
        if self.stages:
            self.env.set_task(**self.stages[self.stage])
