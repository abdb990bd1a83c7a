"""Tables as the notebooks print them: rounded, so that a re-run prints the same text."""

from __future__ import annotations

import pandas as pd


def tidy(df: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """A copy of ``df`` with its numeric columns rounded to ``decimals`` and ``-0.0`` written
    as ``0.0`` (a value that rounds to zero from below would otherwise print as ``-0.0`` on one
    machine and ``0.0`` on another). Other columns and ``df`` itself are left unchanged.
    ValueError for a negative ``decimals``."""
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be an integer >= 0, got {decimals!r}")
    out = df.copy()
    numeric = out.select_dtypes("number").columns
    out[numeric] = out[numeric].round(decimals) + 0.0
    return out
