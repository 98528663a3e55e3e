"""Reading train_agent.py checkpoints: data only, and one clear line for a file that is not one.

``train_agent.py --resume`` and ``render.py --checkpoint`` both come through ``load_agent_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import memory_models
from agents.envs import ENV_IDS, check_env_name
from training.checkpoint import CheckpointError, describe_checkpoint, load_checkpoint

if TYPE_CHECKING:
    from agents.trainer import Trainer

REQUIRED_KEYS = ("env_name", "model_name", "config", "seed", "world_size", "updates", "global_step", "policy", "ranks")


def load_agent_checkpoint(path: str | Path) -> dict[str, Any]:
    """The payload of a train_agent.py checkpoint at ``path``; a CheckpointError for any other file."""
    payload = load_checkpoint(path)
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(
            f"{str(path)!r} is {describe_checkpoint(payload)}, not a train_agent.py checkpoint "
            f"(it lacks {', '.join(missing)})"
        )
    if not known_env(payload["env_name"]) or payload["model_name"] not in memory_models.MODEL_NAMES:
        raise CheckpointError(
            f"{str(path)!r} is a checkpoint for env {payload['env_name']!r} and model {payload['model_name']!r}, "
            f"which this version does not have (envs: {', '.join(ENV_IDS)} or a registered gymnasium id)"
        )
    return payload


def known_env(name: object) -> bool:
    """A task or a registered gymnasium id (a checkpoint of an env whose package is gone cannot be resumed)."""
    try:
        check_env_name(str(name))
    except ValueError:
        return False
    return True


def load_policy_weights(policy: torch.nn.Module, payload: dict[str, Any], path: str | Path) -> None:
    """``policy.load_state_dict`` with a mismatch (an edited checkpoint, another version) as one line."""
    try:
        policy.load_state_dict(payload["policy"])
    except (RuntimeError, TypeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{str(path)!r}: its weights do not fit the {payload['model_name']} policy its config describes: {first}"
        ) from None


def resume_trainer(trainer: Trainer, payload: dict[str, Any], path: str | Path) -> None:
    """``trainer.load_checkpoint_payload(payload)``; a payload that does not fit is one CheckpointError line."""
    try:
        trainer.load_checkpoint_payload(payload)
    except (RuntimeError, KeyError, TypeError, AttributeError, IndexError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{str(path)!r} does not hold the state of a {payload['env_name']} / {payload['model_name']} run of "
            f"this version ({type(error).__name__}: {detail})"
        ) from None


def check_resume_steps(payload: dict[str, Any], steps: int | None) -> None:
    """``--resume --steps N`` must not ask for fewer steps than the checkpoint has already trained."""
    if steps is not None and steps < payload["global_step"]:
        raise ValueError(
            f"--steps {steps} is below the checkpoint's step {payload['global_step']}: the run is already past it "
            "(give a larger --steps to continue, or --eval EPISODES to evaluate it)"
        )
