"""Plot helpers by topic; each takes ``ax=None``, draws, and returns the Axes.

Nothing is changed at import time; :func:`use_style` applies the series' look when called
(``kl_helpers.notebook.setup.setup_notebook`` calls it).

- ``gaussians`` (01, 02), ``fitting`` (03), ``family`` (04), ``optimization`` (05)
- ``experiment`` (06), ``beta`` (07), ``retention`` (08), ``token_kl`` (09), ``rl`` (10, 11),
  ``trainer`` (12)
"""

from __future__ import annotations

import math

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

# Colours used for the same roles across the series.
COLORS = {"p": "#c0392b", "q": "#2e6fbf", "reference": "#c0392b", "sft": "#222222"}

BETA_RANGE = (1e-2, 1e2)  # β from 0.01 (dark) to 100 (light) on a log scale; β = 1 in the middle


def beta_color(beta: float, cmap: str = "viridis") -> tuple[float, float, float, float]:
    """The series' one colour for ``beta`` (RGBA), the same in every figure of every notebook.

    β is placed on a log scale over ``BETA_RANGE`` (clipped outside it) and read from ``cmap``'s
    0.05-0.9 band (weak penalty dark, strong light); β = 0 (no penalty, plain SFT or RL) is
    ``COLORS["sft"]``. ValueError for a negative or non-finite β.
    """
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if beta == 0:
        return mpl.colors.to_rgba(COLORS["sft"])
    low, high = (math.log10(b) for b in BETA_RANGE)
    x = (min(max(math.log10(beta), low), high) - low) / (high - low)
    return mpl.colormaps[cmap](0.05 + 0.85 * x)


def use_style() -> None:
    """Seaborn whitegrid theme and a modest figure resolution for notebooks."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update(
        {"figure.dpi": 90, "figure.figsize": (7.0, 4.0), "axes.titleweight": "bold"}
    )


def get_ax(ax: Axes | None) -> Axes:
    """``ax`` itself, or the current figure's Axes when ``ax`` is None."""
    return ax if ax is not None else plt.gca()
