"""Parameter and action checks that fail with a ValueError naming the parameter and the allowed range."""

import numbers

import numpy as np


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high] (high None: no upper bound), else a ValueError naming `name`."""
    allowed = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")
    return int(value)


def check_not_above(low_name: str, low: int, high_name: str, high: int) -> None:
    """A ValueError unless low <= high, naming both parameters."""
    if low > high:
        raise ValueError(f"{low_name} must be at most {high_name} ({high}), got {low}")


def check_action(action: object, n_actions: int) -> int:
    """`action` as an int in [0, n_actions), else a ValueError naming the allowed range."""
    if type(action) is int and 0 <= action < n_actions:  # the common case, kept cheap
        return action
    scalar = np.asarray(action)
    if scalar.shape != () or not np.issubdtype(scalar.dtype, np.integer) or not 0 <= scalar < n_actions:
        raise ValueError(f"action must be an integer in [0, {n_actions - 1}], got {action!r}")
    return int(scalar)
