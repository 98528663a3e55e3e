"""Checkpoints that a crash cannot corrupt, that load as data only, and the RNG states an exact resume needs.

A checkpoint is loaded with ``torch.load(..., weights_only=True)``: it may hold tensors, plain Python
data and the project's own memory-state dataclasses, nothing that runs code. NumPy values (RNG
states, a data stream's arrays) are stored through ``to_plain`` as tensors and restored by ``from_plain``.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import re
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import memory_models
from memory_models import MemoryState
from training.errors import RunStopped

NDARRAY_TAG = "__ndarray__"  # to_plain's marker for a NumPy array stored as a tensor


class CheckpointError(ValueError):
    """A file that cannot be read as a checkpoint of the runner that asked for it."""


class DiskFullError(RunStopped):
    """A checkpoint did not fit on the disk; the previous one is intact."""


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temp files that saves of ``path`` interrupted by a crash (kill -9, power loss) left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f"{_temp_prefix(path)}*.tmp") if p.is_file()]
    for temp in stale:
        temp.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically.

    The payload is serialised in memory, written to a temporary file in the same folder, flushed
    to disk, and only then renamed over ``path``: a crash or a full disk mid-write leaves the
    previous checkpoint intact. Temp files that earlier crashed saves left are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # in memory first: torch's zip writer turns a failed disk write into a vague error
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(buffer.getbuffer())
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except OSError as error:
        Path(tmp_name).unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"the last good checkpoint {str(path)!r} is kept" if path.exists() else "no checkpoint was kept"
            raise DiskFullError(
                f"no space left on the disk for checkpoint {str(path)!r} ({buffer.getbuffer().nbytes / 2**20:.1f} MB); "
                f"{kept}; free some space and continue with --resume"
            ) from error
        raise
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _subclasses(cls: type) -> Iterable[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def memory_state_classes() -> list[type]:
    """Every memory model's state class: the only objects besides plain data a checkpoint may hold."""
    for name in memory_models.MODEL_NAMES:
        memory_models.model_class(name)  # imports the model's module, which defines its state class
    return [MemoryState, *_subclasses(MemoryState)]


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", safe_classes: Iterable[type] = ()
) -> dict[str, Any]:
    """The payload at ``path``, loaded as data only (``weights_only``); ``safe_classes`` are more dataclasses
    the caller's checkpoints hold. Anything else gets one ``CheckpointError`` line saying what the file is."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is an empty file, not a checkpoint")
    try:
        with torch.serialization.safe_globals([*memory_state_classes(), *safe_classes]):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises anything from KeyError to RuntimeError on a file it cannot parse
        raise CheckpointError(_unreadable(path, error)) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(payload).__name__}, not a checkpoint's dict")
    return payload


def _unreadable(path: Path, error: Exception) -> str:
    """One line on why torch could not load ``path`` as data."""
    if not zipfile.is_zipfile(path):
        return f"{str(path)!r} is not a checkpoint: not a file written by torch.save (or a truncated one)"
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    if isinstance(error, pickle.UnpicklingError) and found:
        return (
            f"checkpoint {str(path)!r} holds more than tensors and plain data ({found.group(1)}), so it is not "
            "loaded: loading it could run code"
        )
    text = str(error).strip()
    first = text.splitlines()[0][:200] if text else type(error).__name__
    return f"{str(path)!r} is not a readable checkpoint (truncated or damaged?): {first}"


def describe_checkpoint(payload: dict[str, Any]) -> str:
    """What a loaded checkpoint is, in a few words, for messages about the wrong kind of file."""
    if {"env_name", "model_name", "policy"} <= set(payload):
        return f"a train_agent.py checkpoint ({payload['env_name']}, {payload['model_name']})"
    if {"step", "model", "scheduler"} <= set(payload):
        made_by = f" ({payload['task']}, {payload['model_name']})" if {"task", "model_name"} <= set(payload) else ""
        return f"a train_lm.py checkpoint{made_by}"
    keys = ", ".join(sorted(map(str, payload))[:6])
    return f"a file of {len(payload)} entries ({keys}) that no runner of this project wrote"


def to_plain(value: Any) -> Any:
    """``value`` with every NumPy array turned into a tagged tensor and NumPy scalars into Python ones."""
    if isinstance(value, np.ndarray):
        # uint16 and uint32 (the NumPy RNG's key) widen to int64: torch's legacy serialisation, which
        # all_gather_object uses, has no storage type for them
        widened = value.astype(np.int64) if value.dtype in (np.uint16, np.uint32) else value.copy()
        return {NDARRAY_TAG: torch.from_numpy(widened), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(item) for item in value)
    return value


def from_plain(value: Any) -> Any:
    """The inverse of ``to_plain``."""
    if isinstance(value, dict):
        if NDARRAY_TAG in value:
            return value[NDARRAY_TAG].numpy().astype(np.dtype(value["dtype"]))
        return {key: from_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_plain(item) for item in value)
    return value


def rng_states() -> dict[str, Any]:
    """Every global RNG a run draws from: Python, NumPy, torch CPU and, when present, CUDA; all plain data."""
    states = {"python": random.getstate(), "numpy": to_plain(np.random.get_state()), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(from_plain(states["numpy"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
