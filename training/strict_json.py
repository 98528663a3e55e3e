"""Metrics files in strict JSON: a bare ``NaN`` or ``Infinity`` (Python's default) is not JSON and breaks readers."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON null), in nested dicts and lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(finite_or_none(value), indent=indent, allow_nan=False)
