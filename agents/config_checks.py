"""Checks of an agent config's values, each a ValueError naming the first bad one.

``train_agent.py`` runs them before it builds anything, so a bad value stops the run with one line
instead of a ZeroDivisionError after the first update, with a run directory already written; the
trainer runs them again for callers that build one directly. (Curriculum stages need the env, which
says what it can change: ``agents.curriculum.check_curriculum_config``.)
"""

from __future__ import annotations

from typing import Any

import torch

from agents.encoders import IMAGE_KINDS

OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
ALGORITHMS = ("a2c", "ppo")


def check_agent_config(config: dict[str, Any], model_options: dict[str, Any]) -> None:
    """The ``[log]``, ``[agent]``, ``[train]`` and ``[ppo]`` tables, and the chosen model's options."""
    check_train_config(config["train"])
    if config["train"]["algorithm"] == "ppo":
        check_ppo_config(config["ppo"], config["train"]["num_envs"])
    check_one_policy(model_options)
    log = config["log"]
    for key in ("every_updates", "checkpoint_every_updates", "eval_every_updates"):
        if log[key] < 1:
            raise ValueError(f"log.{key} must be at least 1 (updates between two of them), got {log[key]}")
    if log["eval_episodes"] < 0:
        raise ValueError(f"log.eval_episodes must be 0 (no evaluation) or more, got {log['eval_episodes']}")
    if not config["agent"]["actor_init_scale"] > 0:
        scale = config["agent"]["actor_init_scale"]
        raise ValueError(f"agent.actor_init_scale must be above 0 (it scales the actor's initial weights), got {scale}")
    if config["agent"]["embed_dim"] < 1:
        raise ValueError(f"agent.embed_dim must be at least 1, got {config['agent']['embed_dim']}")
    image = config["agent"].get("image", "pixels")  # the task presets have no image key
    if image not in IMAGE_KINDS:
        raise ValueError(f"agent.image must be one of {', '.join(IMAGE_KINDS)}, got {image!r}")
    for key in ("entropy_cost", "value_cost"):
        if config["train"][key] < 0:
            value = config["train"][key]
            raise ValueError(f"train.{key} must be 0 or more (a negative cost rewards the opposite), got {value}")


def check_train_config(train: dict[str, Any]) -> None:
    """ValueErrors naming the first bad value of the ``[train]`` table."""
    if train["algorithm"] not in ALGORITHMS:
        raise ValueError(f"train.algorithm must be one of {', '.join(ALGORITHMS)}, got {train['algorithm']!r}")
    if train["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, got {train['optimizer']!r}")
    if train["cpu_threads"] < 0:
        raise ValueError(f"train.cpu_threads must be 0 (torch's default) or more, got {train['cpu_threads']}")
    for key in ("num_envs", "unroll", "steps"):
        if train[key] < 1:
            raise ValueError(f"train.{key} must be at least 1, got {train[key]}")
    for key in ("lr", "grad_clip", "optimizer_eps"):
        if train[key] <= 0:
            raise ValueError(f"train.{key} must be positive, got {train[key]}")
    for key in ("discount", "gae_lambda"):
        if not 0 <= train[key] <= 1:
            raise ValueError(f"train.{key} must be in [0, 1], got {train[key]}")


def check_ppo_config(ppo: dict[str, Any], num_envs: int) -> None:
    """ValueErrors naming the first bad value of the ``[ppo]`` table (``num_envs``: the rows minibatches split)."""
    if ppo["epochs"] < 1:
        raise ValueError(f"ppo.epochs must be at least 1, got {ppo['epochs']}")
    if not 1 <= ppo["minibatches"] <= num_envs:
        raise ValueError(
            f"ppo.minibatches must be from 1 to train.num_envs ({num_envs}): minibatches split env rows, "
            f"got {ppo['minibatches']}"
        )
    if ppo["clip"] <= 0:
        raise ValueError(f"ppo.clip must be positive, got {ppo['clip']}")
    if ppo["target_kl"] < 0:
        raise ValueError(f"ppo.target_kl must be 0 (no early stop) or positive, got {ppo['target_kl']}")


def check_one_policy(model_config: dict[str, Any]) -> None:
    """Dropout would draw one mask while acting and another in the recompute: the learner would then train a
    policy that did not act, which A2C cannot correct and PPO would take for a policy change."""
    if model_config.get("dropout", 0.0) != 0.0:
        raise ValueError(
            f"model.dropout must be 0 for an agent, got {model_config['dropout']}: acting and the learner's "
            "recompute would draw different dropout masks, so the learner would train a policy that did not act"
        )
