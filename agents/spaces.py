"""Observation and action spaces the agent supports, and observations as the one tensor per env it stores.

An observation that is one space (Box, Discrete, MultiDiscrete, MultiBinary) stays a tensor of that
space's shape and dtype (the project's word grids stay N x 3 x 3 x V int8). A Dict or Tuple is packed
into one float32 vector per env, its parts flattened and joined in the space's order: collection,
checkpoints, CUDA graphs and PPO's row minibatches then handle every env alike, and the encoder
(``agents/encoders.py``) unpacks the parts by their sizes. float32 holds the integers of Discrete and
uint8 parts exactly (up to 2^24).

Text parts (gymnasium's ``Text``, minigrid's ``MissionSpace``) are dropped: minigrid's mission is a
fixed sentence per env or one the image already shows (Memory's never changes), and encoding free
text would need a tokenizer of its own.

Actions: Discrete, or MultiDiscrete (one categorical per component, their logits joined along the
last axis and split by ``action_splits``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

LEAF_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_OBSERVATIONS = "Box, Discrete, MultiDiscrete, MultiBinary, and Dict or Tuple of these (Text is dropped)"
SUPPORTED_ACTIONS = "Discrete and MultiDiscrete"


def is_text(space: spaces.Space) -> bool:
    """gymnasium's Text, or any space of strings (minigrid's MissionSpace)."""
    return isinstance(space, spaces.Text) or type(space).__name__ == "MissionSpace"


def without_text(space: spaces.Space) -> spaces.Space:
    """``space`` with its Text parts removed from every Dict and Tuple; a ValueError naming an unsupported part."""
    if isinstance(space, spaces.Dict):
        kept = {key: without_text(part) for key, part in space.spaces.items() if not is_text(part)}
        if not kept:
            raise ValueError(f"observation space {space} has nothing but text; supported: {SUPPORTED_OBSERVATIONS}")
        return spaces.Dict(kept)
    if isinstance(space, spaces.Tuple):
        kept_parts = [without_text(part) for part in space.spaces if not is_text(part)]
        if not kept_parts:
            raise ValueError(f"observation space {space} has nothing but text; supported: {SUPPORTED_OBSERVATIONS}")
        return spaces.Tuple(kept_parts)
    if not isinstance(space, LEAF_SPACES):
        raise ValueError(
            f"unsupported observation space {space} ({type(space).__name__}); supported: {SUPPORTED_OBSERVATIONS}"
        )
    return space


def leaves(space: spaces.Space) -> list[spaces.Space]:
    """The leaf spaces of a (text-free) observation space, in packing order."""
    if isinstance(space, spaces.Dict | spaces.Tuple):
        parts = space.spaces.values() if isinstance(space, spaces.Dict) else space.spaces
        return [leaf for part in parts for leaf in leaves(part)]
    return [space]


def leaf_size(space: spaces.Space) -> int:
    """How many numbers one observation of leaf ``space`` packs into."""
    if isinstance(space, spaces.Discrete):
        return 1
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.prod(space.nvec.shape))
    return int(math.prod(space.shape))


def is_composite(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Dict | spaces.Tuple)


def _arrays(obs: Any, space: spaces.Space) -> list[np.ndarray]:
    """A batch of observations (numpy, leading N) as its leaves' arrays, text dropped, in packing order."""
    if isinstance(space, spaces.Dict):
        return [array for key, part in space.spaces.items() for array in _arrays(obs[key], part)]
    if isinstance(space, spaces.Tuple):
        kept = [item for item in obs if not _is_text_batch(item)]
        return [array for item, part in zip(kept, space.spaces, strict=True) for array in _arrays(item, part)]
    return [obs if isinstance(obs, Tensor) else np.asarray(obs)]


def _is_text_batch(item: Any) -> bool:
    return isinstance(item, str) or (isinstance(item, tuple | list) and bool(item) and isinstance(item[0], str))


def batch_of_one(obs: Any) -> Any:
    """One env's observation as a batch of one (a leading axis of 1 on every part)."""
    if isinstance(obs, dict):
        return {key: batch_of_one(value) for key, value in obs.items()}
    if isinstance(obs, tuple):
        return tuple(batch_of_one(value) for value in obs)
    if isinstance(obs, str):
        return (obs,)
    return np.asarray(obs)[None]


def to_tensor(obs: Any, space: spaces.Space, device: torch.device) -> Tensor:
    """A batch of observations (numpy or torch, leading N, text parts present or not) as the agent's tensor on
    ``device``; ``space`` is the text-free single-env space (``without_text``)."""
    arrays = _arrays(obs, space)
    if not is_composite(space):
        return torch.as_tensor(arrays[0], device=device)  # N x space shape, the space's dtype
    n = arrays[0].shape[0]
    flat = [torch.as_tensor(array, device=device).reshape(n, -1).to(torch.float32) for array in arrays]
    return torch.cat(flat, dim=1)  # N x sum of the leaf sizes


def action_splits(space: spaces.Space) -> tuple[int, ...] | None:
    """Logits per action component for MultiDiscrete, None for Discrete; a ValueError for anything else."""
    if isinstance(space, spaces.Discrete):
        return None
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
        return tuple(int(n) for n in space.nvec)
    raise ValueError(f"unsupported action space {space} ({type(space).__name__}); supported: {SUPPORTED_ACTIONS}")


def num_logits(space: spaces.Space) -> int:
    """The policy head's width: n for Discrete, the sum of nvec for MultiDiscrete."""
    splits = action_splits(space)
    return int(space.n) if splits is None else sum(splits)
