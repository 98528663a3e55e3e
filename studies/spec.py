"""A study file: the tasks, a base agent config, the models with the setting that sizes each one's memory, the seeds.

    [study]
    task = "corridor"                      # a task or any gymnasium id; or tasks = ["...", "..."], one cell set each
    config = "../corridor_long.toml"       # the base agent config, relative to this file (optional)
    steps = 3_000_000
    seeds = [0, 1, 2]
    eval_episodes = 200                    # held-out episodes per cell, the same evaluation as --eval
    memory_window = 0.25                   # mean memory over this last fraction of training
    set = ["train.num_envs=64"]            # --set overrides for every cell (optional)

    [models.transformer_xl]
    param = "model.transformer_xl.mem_len"
    values = [25, 50, 100, 200]

    [models.compressive]                   # several keys set together: one list of values per setting
    param = ["model.compressive.mem_len", "model.compressive.cmem_len"]
    values = [[16, 8], [32, 16]]
    set = ["model.compressive.compression_rate=2"]   # this model's own overrides (optional)

A model without ``param`` (``none``, ``lstm``) gets one setting. Beside the memory models, a study may hold
the peer ``[models.recurrent_ppo]`` (sb3-contrib's RecurrentPPO, ``runners/recurrent_ppo.py``; no param: its
LSTM is ``model.d_model`` wide). Every cell's config is resolved against its task's preset when the study is
loaded, so a bad key or env id stops the study before any cell trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import memory_models
from agents.envs import check_env_name
from runners.recurrent_ppo import CURRICULUM_ERROR
from runners.recurrent_ppo import MODEL_NAME as PEER
from runners.train_agent import preset_path
from training.config import ConfigError, load_toml, resolve

STUDY_KEYS = {"task", "tasks", "config", "steps", "seeds", "eval_episodes", "memory_window", "set", "name"}
MODEL_KEYS = {"param", "values", "set"}


@dataclass(frozen=True)
class Cell:
    """One training run of a study: task x model x memory setting x seed."""

    task: str
    model: str
    setting: tuple[tuple[str, Any], ...]  # (dotted key, value) pairs that size the memory
    seed: int
    steps: int
    config: Path | None
    overrides: tuple[str, ...]  # every --set of the cell, the memory setting's included

    @property
    def setting_label(self) -> str:
        """``mem_len=50`` or ``mem_len=16,cmem_len=8``: the memory setting by its keys' last parts."""
        if not self.setting:
            return "-"
        return ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in self.setting)

    @property
    def name(self) -> str:
        """A name that is also the cell's directory: ``corridor-transformer_xl-mem_len50-seed0``."""
        parts = [self.task, self.model]
        parts += [f"{key.rsplit('.', 1)[-1]}{value}" for key, value in self.setting]
        return re.sub(r"[^A-Za-z0-9_.=-]", "_", "-".join([*parts, f"seed{self.seed}"]))


@dataclass(frozen=True)
class Study:
    name: str
    tasks: tuple[str, ...]
    steps: int
    seeds: tuple[int, ...]
    eval_episodes: int
    memory_window: float
    cells: tuple[Cell, ...] = field(repr=False)


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{where}: {message}")


def _string_list(value: Any, where: str) -> list[str]:
    _require(
        isinstance(value, list) and all(isinstance(item, str) for item in value), where, "must be a list of strings"
    )
    return list(value)


def _settings(name: str, table: dict[str, Any], where: str) -> list[tuple[tuple[str, Any], ...]]:
    """The model's memory settings, each a tuple of (dotted key, value) pairs."""
    if "param" not in table:
        _require("values" not in table, where, "values needs a param naming the key they set")
        return [()]
    params = [table["param"]] if isinstance(table["param"], str) else table["param"]
    params = _string_list(params, f"{where}.param")
    _require(bool(params), f"{where}.param", "names no key")
    for param in params:
        _require(param.startswith("model."), f"{where}.param", f"{param!r} is not a model setting (model.<...>)")
    values = table.get("values")
    _require(isinstance(values, list) and bool(values), f"{where}.values", "must be a non-empty list")
    settings = []
    for value in values:
        row = value if len(params) > 1 else [value]
        _require(
            isinstance(row, list) and len(row) == len(params),
            f"{where}.values",
            f"{value!r} must be a list of {len(params)} values, one per param",
        )
        settings.append(tuple(zip(params, row, strict=True)))
    return settings


def _tasks(head: dict[str, Any]) -> tuple[str, ...]:
    """``task`` or ``tasks``: each a task's short name or a registered gymnasium id (``module:Id``)."""
    _require(("task" in head) != ("tasks" in head), "[study]", "needs task or tasks (one of them)")
    tasks = [head["task"]] if "task" in head else head["tasks"]
    where = "study.task" if "task" in head else "study.tasks"
    _require(
        isinstance(tasks, list) and bool(tasks) and all(isinstance(t, str) for t in tasks), where, "must name envs"
    )
    _require(len(set(tasks)) == len(tasks), where, "has repeats")
    for task in tasks:
        try:
            check_env_name(task)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
    return tuple(tasks)


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def load_study(path: str | Path) -> Study:
    """Read and check a study file; every cell's config is resolved against the task's preset."""
    path = Path(path)
    data = load_toml(path)
    _require(set(data) <= {"study", "models"}, str(path), f"unknown tables {sorted(set(data) - {'study', 'models'})}")
    head = data.get("study")
    _require(isinstance(head, dict), str(path), "needs a [study] table")
    unknown = set(head) - STUDY_KEYS
    _require(not unknown, "[study]", f"unknown keys {sorted(unknown)}; valid: {', '.join(sorted(STUDY_KEYS))}")
    tasks = _tasks(head)
    steps = head.get("steps")
    _require(isinstance(steps, int) and steps >= 1, "study.steps", f"must be a positive integer, got {steps!r}")
    seeds = head.get("seeds", [0])
    _require(
        isinstance(seeds, list) and bool(seeds) and all(isinstance(s, int) and s >= 0 for s in seeds),
        "study.seeds",
        "must be a non-empty list of non-negative integers",
    )
    _require(len(set(seeds)) == len(seeds), "study.seeds", "has repeats")
    episodes = head.get("eval_episodes", 100)
    _require(isinstance(episodes, int) and episodes >= 1, "study.eval_episodes", "must be a positive integer")
    window = head.get("memory_window", 0.25)
    _require(isinstance(window, int | float) and 0 < window <= 1, "study.memory_window", "must lie in (0, 1]")
    config = (path.parent / head["config"]).resolve() if "config" in head else None  # cells run from any folder
    common = _string_list(head.get("set", []), "study.set")
    models = data.get("models")
    _require(isinstance(models, dict) and bool(models), str(path), "needs at least one [models.<name>] table")
    cells = []
    valid = (*memory_models.MODEL_NAMES, PEER)
    for task, (model, table) in product(tasks, models.items()):
        where = f"models.{model}"
        _require(model in valid, where, f"unknown model; valid: {', '.join(valid)}")
        _require(isinstance(table, dict), where, "must be a table")
        unknown = set(table) - MODEL_KEYS
        _require(not unknown, where, f"unknown keys {sorted(unknown)}; valid: {', '.join(sorted(MODEL_KEYS))}")
        _require(model != PEER or "param" not in table, where, "the peer's memory is model.d_model: it takes no param")
        own = _string_list(table.get("set", []), f"{where}.set")
        for setting, seed in product(_settings(model, table, where), seeds):
            memory = [f"{key}={_toml_literal(value)}" for key, value in setting]
            cell = Cell(task, model, setting, seed, steps, config, tuple([*common, *own, *memory]))
            try:
                resolved = resolve(preset_path(task), config, list(cell.overrides))
            except ConfigError as error:
                raise ConfigError(f"cell {cell.name}: {error}") from None
            _require(model != PEER or not resolved["curriculum"]["stages"], f"cell {cell.name}", CURRICULUM_ERROR)
            cells.append(cell)
    names = [cell.name for cell in cells]
    _require(len(set(names)) == len(names), str(path), "two cells share a name (repeated memory values?)")
    name = head.get("name", path.stem)
    _require(isinstance(name, str) and bool(name), "study.name", "must be a non-empty string")
    return Study(name, tasks, steps, tuple(seeds), episodes, float(window), tuple(cells))
