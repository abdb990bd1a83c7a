"""Figures for notebook 12: two implementations' training curves and their step-wise gap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from kl_helpers.plotting import get_ax


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
    ax.set_ylabel("nats")
    ax.legend(fontsize=8)
    return ax


def plot_abs_gap(
    steps: Sequence[float],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    tolerance: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """|first − second| per step for each named curve on a log axis, with the tolerance line."""
    ax = get_ax(ax)
    for name, (first, second) in curves.items():
        gap = np.abs(np.asarray(first, dtype=float) - np.asarray(second, dtype=float))
        ax.semilogy(steps, np.maximum(gap, 1e-12), marker=".", label=name)
    if tolerance is not None:
        ax.axhline(tolerance, color="k", ls=":", label=f"tolerance {tolerance:g}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("absolute difference (nats)")
    ax.legend(fontsize=8)
    return ax
