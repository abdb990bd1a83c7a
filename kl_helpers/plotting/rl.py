"""Figures for notebook 10 (RLHF with a KL penalty); KL(π‖π_ref) is per response, in nats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from kl_helpers.plotting import get_ax

KL_LABEL = "KL(π‖π_ref) per response (nats)"


def plot_eval_trace(
    evals: Mapping[str, Sequence[Mapping[str, float]]], metric: str, ylabel: str,
    ax: Axes | None = None,
) -> Axes:  # fmt: skip
    """``metric`` of each run's held-out evaluations (dicts with a ``"step"``) against the step."""
    ax = get_ax(ax)
    for name, rows in evals.items():
        ax.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="o", ms=4, label=name)
    ax.set_xlabel("policy updates")
    ax.set_ylabel(ylabel)
    if len(evals) > 1:
        ax.legend(fontsize=8)
    return ax


def plot_frontier(
    points: Mapping[str, tuple[float, float]],
    bon_kl: Sequence[float],
    bon_value: Sequence[float],
    bon_ns: Sequence[int],
    ylabel: str,
    ax: Axes | None = None,
    bon_bound: Sequence[float] | None = None,
    optimum: tuple[Sequence[float], Sequence[float]] | None = None,
    kl_cap: float | None = None,
    errors: Mapping[str, tuple[float, float]] | None = None,
) -> Axes:
    """Reward (``ylabel``) against KL: one labelled point per RL run (with ±1 standard-error
    bars from ``errors``: name -> (KL se, value se)), the Best-of-N curve (measured KL; hollow
    markers at the bound log N − (N−1)/N when ``bon_bound`` is given), the exact KL-regularised
    optimum ``optimum`` = (KLs, values) over β, and a vertical line at ``kl_cap`` (log M)."""
    ax = get_ax(ax)
    for name, (kl, value) in points.items():
        ax.scatter([kl], [value], s=50, zorder=3)
        if errors and name in errors:
            xerr, yerr = errors[name]
            ax.errorbar([kl], [value], xerr=[xerr], yerr=[yerr], fmt="none", ecolor="grey", lw=1)
        ax.annotate(name, (kl, value), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if optimum is not None:
        ax.plot(*optimum, "-", color="tab:green", lw=2, label="optimum π_ref·exp(r/β)/Z over β")
    if kl_cap is not None:
        ax.axvline(kl_cap, color="grey", ls=":", lw=1, label="log M: the pool's largest KL")
    ax.plot(bon_kl, bon_value, "k-s", ms=5, lw=1, label="Best-of-N from π_ref (measured KL)")
    for n, kl, value in zip(bon_ns, bon_kl, bon_value, strict=True):
        ax.annotate(f"N={n}", (kl, value), textcoords="offset points", xytext=(4, -11), fontsize=7)
    if bon_bound is not None:
        ax.plot(bon_bound, bon_value, "ks", mfc="none", ms=6, ls=":", lw=0.8,
                label="Best-of-N at its bound log N − (N−1)/N")  # fmt: skip
    ax.set_xlabel(KL_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def plot_bon_kl(
    ns: Sequence[int], measured: Mapping[str, Sequence[float]] | Sequence[float],
    bound: Sequence[float], ax: Axes | None = None,
) -> Axes:  # fmt: skip
    """Best-of-N's KL to the reference against the bound, vs N: one line per entry of
    ``measured`` (label -> KL per N; a plain sequence is labelled "measured over the pool")."""
    ax = get_ax(ax)
    ax.plot(ns, bound, "k--", marker="o", mfc="none", label="bound log N − (N−1)/N")
    if not isinstance(measured, Mapping):
        measured = {"measured over the pool": measured}
    for label, values in measured.items():
        ax.plot(ns, np.asarray(values, dtype=float), marker="s", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (responses drawn from π_ref, best kept)")
    ax.set_ylabel("KL(π_BoN‖π_ref) (nats)")
    ax.legend(fontsize=8)
    return ax


def plot_value_vs_kl(
    paths: Mapping[str, tuple[Sequence[float], Sequence[float]]], ylabel: str,
    ax: Axes | None = None,
) -> Axes:  # fmt: skip
    """One line per run or method: a score (``ylabel``) against KL(π‖π_ref) along it."""
    ax = get_ax(ax)
    for name, (kl, value) in paths.items():
        ax.plot(kl, value, marker="o", ms=4, label=name)
    ax.set_xlabel(KL_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax
