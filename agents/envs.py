"""The tasks the agent trains on, by the short names the runner takes, built as batched torch twins."""

from __future__ import annotations

import gymnasium
import torch

ENV_IDS = {"corridor": "Corridor-v0", "portal": "Portal-v0", "instruction": "Instruction-v0"}


def env_id(name: str) -> str:
    if name not in ENV_IDS:
        raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(ENV_IDS)}")
    return ENV_IDS[name]


def make_batched_env(name: str, num_envs: int, device: torch.device | str, **task_kwargs: object):
    """``num_envs`` envs of task ``name`` stepped together in torch on ``device`` (the env contract's twin)."""
    import envs  # noqa: F401  (registers the gymnasium ids)

    return gymnasium.make_vec(
        env_id(name), num_envs=num_envs, vectorization_mode="vector_entry_point", device=str(device), **task_kwargs
    )


def make_reference_env(name: str, render_mode: str | None = None, **task_kwargs: object) -> gymnasium.Env:
    """One reference env of task ``name`` (numpy, minigrid renderer), identical in rules to the twin."""
    import envs  # noqa: F401

    return gymnasium.make(env_id(name), render_mode=render_mode, **task_kwargs)
