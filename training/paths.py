"""Output paths checked before a run starts, and run directories that two runs can never share.

The checks turn what would be a traceback after minutes of work (a parent that is a file, a folder
without write permission) into one line naming the flag, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathError(ValueError):
    """An output path that cannot be written."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a dangling symlink counts as existing)."""
    probe = path
    while not (probe.exists() or probe.is_symlink()) and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable_dir(path: str | Path, flag: str) -> None:
    """``path`` is a directory this process can write in, or one it can create."""
    path = Path(path)
    probe = _nearest_existing(path)
    if not probe.is_dir():
        where = "is a file" if probe == path else f"lies under {str(probe)!r}, which is a file"
        raise PathError(f"{flag} {str(path)!r} {where}, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PathError(f"{flag} {str(path)!r}: no permission to write in {str(probe)!r}")


def check_writable_file(path: str | Path, flag: str) -> None:
    """``path`` can be written as a file: not a directory, and its folder is writable or can be created."""
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{flag} {str(path)!r} is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise PathError(f"{flag} {str(path)!r}: no permission to overwrite it")
    parent = path.parent
    probe = _nearest_existing(parent)
    if not probe.is_dir():
        raise PathError(f"{flag} {str(path)!r} lies under {str(probe)!r}, which is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PathError(f"{flag} {str(path)!r}: no permission to write in {str(probe)!r}")


def create_run_directory(parent: str | Path, name: str) -> Path:
    """Create and return ``parent/name``, or ``name-2``, ``name-3``, ... when taken.

    ``mkdir`` without ``exist_ok`` is atomic: of two runs that reach the same name at once, exactly
    one creates it and the other moves on to the next name, so no directory is ever shared.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    suffix = 1
    while True:
        candidate = parent / (name if suffix == 1 else f"{name}-{suffix}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1
