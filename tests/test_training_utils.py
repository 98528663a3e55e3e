"""Configs reject what the preset does not know; checkpoints are atomic; RNG states round-trip."""

import random

import numpy as np
import pytest
import torch

from training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from training.config import ConfigError, merge, parse_overrides, resolve


@pytest.fixture
def preset(tmp_path):
    path = tmp_path / "preset.toml"
    path.write_text('[train]\nlr = 1e-4\nsteps = 100\nclip = true\n[env]\nname = "corridor"\n')
    return path


def test_overrides_parse_toml_literals_and_merge(preset):
    config = resolve(preset, overrides=["train.lr=3e-4", "train.steps=5", "env.name=portal"])
    assert config == {"train": {"lr": 3e-4, "steps": 5, "clip": True}, "env": {"name": "portal"}}


def test_int_is_accepted_for_float():
    assert merge({"lr": 0.1}, {"lr": 1}) == {"lr": 1.0}


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown config key 'train.lrr'; valid keys here: clip, lr, steps"),
        ("trian.lr=1", "unknown config key 'trian'"),
        ("train.steps=fast", "train.steps must be int"),
        ("train.clip=1", "train.clip must be bool"),
        ("train", "must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(preset, override, message):
    with pytest.raises(ConfigError, match=message):
        resolve(preset, overrides=[override])


def test_config_file_is_checked_too(preset, tmp_path):
    user = tmp_path / "user.toml"
    user.write_text("[train]\nsteps = 7\nmomentum = 0.9\n")
    with pytest.raises(ConfigError, match="train.momentum"):
        resolve(preset, config_file=user)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(preset, config_file=tmp_path / "missing.toml")


def test_a_table_the_preset_leaves_empty_takes_any_keys_from_the_file_and_the_overrides(tmp_path):
    preset = tmp_path / "preset.toml"
    preset.write_text("[env]\n[train]\nlr = 1e-4\n")
    user = tmp_path / "user.toml"
    user.write_text('[env]\nsize = 7\nmode = "fast"\n')
    config = resolve(preset, config_file=user, overrides=["env.size=9", "env.max_episode_steps=96"])
    assert config == {"env": {"size": 9, "mode": "fast", "max_episode_steps": 96}, "train": {"lr": 1e-4}}
    with pytest.raises(ConfigError, match="train.momentum"):
        resolve(preset, config_file=user, overrides=["train.momentum=0.9"])
    with pytest.raises(ConfigError, match="env is a table"):
        merge({"env": {}}, {"env": 3})


def test_nested_override_parsing():
    assert parse_overrides(["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_rng_states_round_trip():
    states = rng_states()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_states(states)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
