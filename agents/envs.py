"""The envs the agent trains on: the project's tasks by short name (batched torch twins), or any gymnasium id.

``--env corridor|portal|instruction`` builds the twin; anything else is a registered gymnasium id,
or ``module:Id`` to import the module that registers it first (as ``gymnasium.make`` does), built by
``agents.gym_env.GymVectorEnv``. Both meet the interface described there.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium
import torch

ENV_IDS = {"corridor": "Corridor-v0", "portal": "Portal-v0", "instruction": "Instruction-v0"}
WORD_GRID_IDS = tuple(ENV_IDS.values())  # the tasks' reference envs: word grids, encoded as such


def env_id(name: str) -> str:
    if name not in ENV_IDS:
        raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(ENV_IDS)}")
    return ENV_IDS[name]


def is_task(name: str) -> bool:
    """One of the project's tasks by short name (trained on its batched twin)."""
    return name in ENV_IDS


def gym_id(name: str) -> str:
    """The registered gymnasium id of ``name`` (``Id`` or ``module:Id``, importing the module); a ValueError
    naming the valid choices when there is none."""
    import minigrid  # noqa: F401  (a core dependency: its ids, MiniGrid-MemoryS7-v0 and the rest, need no module:)

    import envs  # noqa: F401  (registers the tasks' ids)

    module, sep, env = name.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"--env {name!r}: cannot import module {module!r} ({error})") from None
    try:
        gymnasium.spec(env)
    except gymnasium.error.Error as error:
        raise ValueError(
            f"unknown env {name!r}: neither one of this project's tasks ({', '.join(ENV_IDS)}) nor a registered "
            f"gymnasium id ({str(error).strip().splitlines()[0]}); use module:Id to import the module that registers it"
        ) from None
    return env


def check_env_name(name: str) -> None:
    """A ValueError unless ``name`` is a task or a registered gymnasium id."""
    if not is_task(name):
        gym_id(name)


def uses_word_grid(name: str) -> bool:
    """The project's tasks, as twins or through gymnasium: their (3, 3, V) word grids keep the word-grid encoder."""
    return is_task(name) or gym_id(name) in WORD_GRID_IDS


def make_batched_env(name: str, num_envs: int, device: torch.device | str, **task_kwargs: object):
    """``num_envs`` envs of task ``name`` stepped together in torch on ``device`` (the env contract's twin)."""
    import envs  # noqa: F401  (registers the gymnasium ids)

    return gymnasium.make_vec(
        env_id(name), num_envs=num_envs, vectorization_mode="vector_entry_point", device=str(device), **task_kwargs
    )


def make_env(name: str, num_envs: int, device: torch.device | str, config: dict[str, Any]):
    """The training env batch for ``name``: the twin of a task (``[env]`` its parameters), else ``num_envs``
    gymnasium envs (``[env]`` passed to ``gymnasium.make``, ``[gym]`` how they are vectorised)."""
    if is_task(name):
        return make_batched_env(name, num_envs, device, **config["env"])
    from agents.gym_env import GymVectorEnv

    return GymVectorEnv(gym_id(name), num_envs, device, config["gym"], **config["env"])


def make_reference_env(name: str, render_mode: str | None = None, **task_kwargs: object) -> gymnasium.Env:
    """One reference env of task ``name`` (numpy, minigrid renderer), identical in rules to the twin; for any
    other env one gymnasium env, with ``render_mode`` only where the env has it."""
    import envs  # noqa: F401

    if is_task(name):
        return gymnasium.make(env_id(name), render_mode=render_mode, **task_kwargs)
    env = gym_id(name)
    modes = gymnasium.spec(env).kwargs.get("render_modes") or _render_modes(env)
    if render_mode in modes:
        return gymnasium.make(env, render_mode=render_mode, **task_kwargs)
    return gymnasium.make(env, **task_kwargs)  # some envs (POPGym's) take no render_mode at all


def _render_modes(env: str) -> list[str]:
    """The render modes an env class declares (its ``metadata``), found without building it."""
    entry = gymnasium.spec(env).entry_point
    if callable(entry):
        return list(getattr(entry, "metadata", {}).get("render_modes", []))
    module, _, attr = entry.partition(":")
    return list(getattr(getattr(importlib.import_module(module), attr), "metadata", {}).get("render_modes", []))
