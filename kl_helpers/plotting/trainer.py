"""Figures for notebook 12: two implementations' training curves and their step-wise gap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from kl_helpers.plotting import get_ax

GAP_FLOOR = 1e-12  # an exact 0 gap is drawn here, so that it shows on a log axis


def _legend_outside(ax: Axes) -> None:
    """The legend to the right of the plotting area, so it covers no data (``tight_layout``
    makes room for it)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_curve_pair(
    steps: Sequence[float],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    names: tuple[str, str] = ("engine", "Trainer"),
    ax: Axes | None = None,
) -> Axes:
    """Each named curve from two runs: the first solid, the second dashed on top (nats)."""
    ax = get_ax(ax)
    for name, (first, second) in curves.items():
        line = ax.plot(steps, first, lw=2.5, alpha=0.6, label=f"{name} · {names[0]}")[0]
        ax.plot(steps, second, "--", color=line.get_color(), label=f"{name} · {names[1]}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss or KL (nats)")
    _legend_outside(ax)
    return ax


def plot_abs_gap(
    steps: Sequence[float],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    tolerance: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """|first − second| per step for each named curve on a log axis (an exact 0 drawn at
    ``GAP_FLOOR``), with the tolerance line."""
    ax = get_ax(ax)
    for name, (first, second) in curves.items():
        gap = np.abs(np.asarray(first, dtype=float) - np.asarray(second, dtype=float))
        ax.semilogy(steps, np.maximum(gap, GAP_FLOOR), marker=".", label=name)
    if tolerance is not None:
        ax.axhline(tolerance, color="k", ls=":", label=f"tolerance {tolerance:g} nats")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"|difference| (nats; 0 drawn at {GAP_FLOOR:g})")
    _legend_outside(ax)
    return ax
