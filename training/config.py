"""Configs are TOML tables; a runner's preset is the schema that files and overrides must fit.

A runner loads its preset (every key with its default), merges a user's ``--config FILE`` onto it,
then ``--set section.key=value`` overrides. A key the preset does not have, or a value of another
type, stops the run at once with a message naming the key and the valid choices. A table the preset
leaves empty is open: it takes any keys (the generic preset's ``[env]``, keyword arguments for an outside
env's ``gymnasium.make``, which only that env can check).
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file or override that does not fit the runner's schema."""


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; give the path of a .toml file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {str(path)!r} is not a text (UTF-8) TOML file: byte {error.start} cannot be decoded"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from error


def _check_type(key: str, default: Any, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if isinstance(default, bool) or isinstance(value, bool):
        if type(default) is not type(value):
            raise ConfigError(f"{key} must be {type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ConfigError(f"{key} must be {type(default).__name__}, got {value!r}")
    return value


def merge(base: dict[str, Any], update: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``base`` with ``update``'s values; every key of ``update`` must exist in ``base`` with the same type,
    except in a table that ``base`` leaves empty (an open table)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key {name!r}; valid keys here: {', '.join(sorted(base))}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} is a table of settings, got {value!r}")
            merged[key] = copy.deepcopy(value) if base[key] == {} else merge(base[key], value, prefix=f"{name}.")
        else:
            merged[key] = _check_type(name, base[key], value)
    return merged


def _parse_value(text: str) -> Any:
    """A TOML literal (1e-4, true, [1, 2], "x"); anything else is taken as a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "env.num_envs=8"]`` -> ``{"train": {"lr": 1e-4}, "env": {"num_envs": 8}}``."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        *sections, leaf = key.strip().split(".")
        table = nested
        for section in sections:
            table = table.setdefault(section, {})
        table[leaf] = _parse_value(text.strip())
    return nested


def _overlay(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """``lower`` with ``upper``'s values on top, table by table, unchecked."""
    result = copy.deepcopy(lower)
    for key, value in upper.items():
        both_tables = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = _overlay(result[key], value) if both_tables else copy.deepcopy(value)
    return result


def resolve(preset: str | Path, config_file: str | Path | None = None, overrides: list[str] = ()) -> dict[str, Any]:
    """The preset, then the user's config file, then the overrides, checked against the preset together (so an
    open table takes keys from both)."""
    user = load_toml(config_file) if config_file is not None else {}
    return merge(load_toml(preset), _overlay(user, parse_overrides(list(overrides))))
