"""Input checks shared by the scaling modules: real, finite, positive numbers."""

from __future__ import annotations

import numpy as np


def _numbers(name: str, value: object) -> np.ndarray:
    """`value` as a float array, else TypeError naming `name` (no strings, bools or objects)."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}")
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be a number or an array of numbers, got {type(value).__name__} "
            f"of dtype {array.dtype}"
        )
    return array.astype(float)


def positive_array(name: str, values: object) -> np.ndarray:
    """`values` as a 1-D float array of finite positive numbers, else ValueError naming `name`."""
    array = _numbers(name, values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must hold finite positive numbers (fits work in log space)")
    return array


def positive(name: str, value: object) -> np.ndarray:
    """`value` (scalar or array) as a float array of finite positive numbers."""
    array = _numbers(name, value)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be finite and positive, got {value!r}")
    return array


def scalar_or_array(array: np.ndarray) -> float | np.ndarray:
    """A 0-d array as a Python float, any other array unchanged."""
    return float(array) if array.ndim == 0 else array
