"""Numbers for JSON: one rule for every result's ``to_dict`` and every viewer payload.

* float32 (and float16) values are written with 9 significant digits, enough for the same
  float32 to come back bit for bit (``np.float32(json_value) == value``);
* float64 and Python floats are written as they are (their ``repr`` round-trips);
* NaN and ±inf become ``null``: JSON has neither, and ``json.dumps(allow_nan=False)`` refuses them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_SHORT = (np.float32, np.float16)


def json_float(x, *, single: bool = False) -> float | None:
    """One number: ``None`` when not finite; 9 significant digits when ``single`` (a float32 value)."""
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(f"{v:.9g}") if single or isinstance(x, _SHORT) else v


def json_floats(values) -> Any:
    """An array (or list) of floats as nested lists of the same shape, by :func:`json_float`'s rule."""
    a = np.asarray(values)
    if a.dtype.kind != "f":
        return a.tolist()
    single = a.dtype in (np.float32, np.float16)
    flat = [json_float(v, single=single) for v in a.ravel().tolist()]
    if a.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(a.shape).tolist()


def json_value(v) -> Any:
    """A metadata value as JSON: plain types as they are (floats by :func:`json_float`), anything else as text."""
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, (float, np.floating)):
        return json_float(v)
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, np.integer):
        return int(v)
    return str(v)


def floats_from_json(values, dtype=np.float32) -> np.ndarray:
    """The inverse of :func:`json_floats`: nested lists with ``null`` → an array with NaN there."""
    a = np.array(values, dtype=object)
    return np.where(a == None, np.nan, a).astype(dtype)  # noqa: E711 - elementwise None test
