"""Plot helpers by topic; each takes ``ax=None``, draws, and returns the Axes.

Nothing is changed at import time; :func:`use_style` applies the series' look when called
(``kl_helpers.notebook.setup.setup_notebook`` calls it).

- ``gaussians`` (01, 02), ``fitting`` (03), ``family`` (04), ``optimization`` (05)
- ``experiment`` (06), ``beta`` (07), ``retention`` (08), ``token_kl`` (09), ``rl`` (10),
  ``trainer`` (11)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

# Colours used for the same roles across the series.
COLORS = {"p": "#c0392b", "q": "#2e6fbf", "reference": "#c0392b", "sft": "#222222"}


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
