"""Tables as the notebooks print them: rounded, so that a re-run prints the same text."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd


def tidy(df: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """A copy of ``df`` with its numeric columns rounded to ``decimals`` and ``-0.0`` written
    as ``0.0`` (a value that rounds to zero from below would otherwise print as ``-0.0`` on one
    machine and ``0.0`` on another). Other columns and ``df`` itself are left unchanged.
    Values too large to scale by 10**decimals (past ~1e308 / 10**decimals; integers in float64
    already) are kept as they are, not turned into ±inf. ``decimals`` may be any integer type
    (NumPy's too). ValueError for a negative ``decimals`` or one that is not an integer."""
    if isinstance(decimals, (bool, np.bool_)) or not isinstance(decimals, numbers.Integral):
        raise ValueError(f"decimals must be an integer >= 0, got {decimals!r}")
    if decimals < 0:
        raise ValueError(f"decimals must be an integer >= 0, got {decimals!r}")
    decimals = int(decimals)
    out = df.copy()
    numeric = out.select_dtypes("number").columns
    values = out[numeric]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is undone below
        rounded = values.round(decimals)
    overflowed = rounded.isin([np.inf, -np.inf]) & ~values.isin([np.inf, -np.inf])
    out[numeric] = rounded.mask(overflowed, values) + 0.0
    return out
