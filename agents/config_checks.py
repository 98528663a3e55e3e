"""Checks of the agent config's tables that the trainer's own ``[train]`` checks do not cover.

``train_agent.py`` runs them before it builds anything, so a bad value stops the run with one line
instead of a ZeroDivisionError after the first update, with a run directory already written.
"""

from __future__ import annotations

from typing import Any


def check_agent_config(config: dict[str, Any]) -> None:
    """ValueErrors naming the first bad value of the ``[log]``, ``[agent]`` and ``[train]`` cost settings."""
    log = config["log"]
    for key in ("every_updates", "checkpoint_every_updates", "eval_every_updates"):
        if log[key] < 1:
            raise ValueError(f"log.{key} must be at least 1 (updates between two of them), got {log[key]}")
    if log["eval_episodes"] < 0:
        raise ValueError(f"log.eval_episodes must be 0 (no evaluation) or more, got {log['eval_episodes']}")
    if config["agent"]["embed_dim"] < 1:
        raise ValueError(f"agent.embed_dim must be at least 1, got {config['agent']['embed_dim']}")
    for key in ("entropy_cost", "value_cost"):
        if config["train"][key] < 0:
            value = config["train"][key]
            raise ValueError(f"train.{key} must be 0 or more (a negative cost rewards the opposite), got {value}")
