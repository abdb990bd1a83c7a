"""Figures for notebooks 10 (RLHF with a KL penalty) and 11 (Best-of-N and the exact optimum).

KL(π_θ‖π_ref) is per response, in nats. Where a colour stands for a β, pass
``kl_helpers.plotting.beta_color(β)`` through ``colors`` (name -> colour), so that a β has the
same colour in every panel and notebook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from kl_helpers.plotting import get_ax

KL_LABEL = "KL(π_θ‖π_ref) per response (nats)"

Colors = Mapping[str, object] | None  # name -> any matplotlib colour; None: the default cycle


def plot_eval_trace(
    evals: Mapping[str, Sequence[Mapping[str, float]]], metric: str, ylabel: str,
    ax: Axes | None = None, colors: Colors = None,
) -> Axes:  # fmt: skip
    """``metric`` of each run's held-out evaluations (dicts with a ``"step"``) against the step;
    ``colors`` gives a run's colour by its name."""
    ax = get_ax(ax)
    for name, rows in evals.items():
        color = (colors or {}).get(name)
        ax.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="o", ms=4,
                label=name, color=color)  # fmt: skip
    ax.set_xlabel("policy updates")
    ax.set_ylabel(ylabel)
    if len(evals) > 1:
        ax.legend(fontsize=8, loc="best")
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
    colors: Colors = None,
    bon_errors: Sequence[float] | None = None,
) -> Axes:
    """Reward (``ylabel``) against KL: one point per RL run (with ``colors``, name -> colour, each
    in its colour and named in the legend; without, named next to the point), with ±1
    standard-error bars from ``errors`` (name -> (KL se, value se)), the Best-of-N curve
    (measured KL, ±``bon_errors`` on the value; hollow markers at the bound log N − (N−1)/N when
    ``bon_bound`` is given), the exact KL-regularised optimum ``optimum`` = (KLs, values) over β,
    and a vertical line at ``kl_cap`` (log M). The legend goes where it covers the least data."""
    ax = get_ax(ax)
    for name, (kl, value) in points.items():
        color = (colors or {}).get(name)
        ax.scatter([kl], [value], s=50, zorder=3, color=color, label=name if colors else None)
        if errors and name in errors:
            xerr, yerr = errors[name]
            ax.errorbar([kl], [value], xerr=[xerr], yerr=[yerr], fmt="none", ecolor=color or "grey",
                        lw=1, alpha=0.7)  # fmt: skip
        if not colors:
            ax.annotate(name, (kl, value), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if optimum is not None:
        ax.plot(*optimum, "-", color="tab:green", lw=2, label="optimum π_ref·exp(r/β)/Z over β")
    if kl_cap is not None:
        ax.axvline(kl_cap, color="grey", ls=":", lw=1, label="log M: the pool's largest KL")
    ax.plot(bon_kl, bon_value, "k-s", ms=5, lw=1, label="Best-of-N from π_ref (measured KL)")
    if bon_errors is not None:
        ax.errorbar(bon_kl, bon_value, yerr=np.asarray(bon_errors, dtype=float), fmt="none",
                    ecolor="k", lw=0.8, capsize=2)  # fmt: skip
    for n, kl, value in zip(bon_ns, bon_kl, bon_value, strict=True):
        ax.annotate(f"N={n}", (kl, value), textcoords="offset points", xytext=(4, -11), fontsize=7)
    if bon_bound is not None:
        ax.plot(bon_bound, bon_value, "ks", mfc="none", ms=6, ls=":", lw=0.8,
                label="Best-of-N at its bound log N − (N−1)/N")  # fmt: skip
    ax.set_xlabel(KL_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="best")
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
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_value_vs_kl(
    paths: Mapping[str, tuple[Sequence[float], Sequence[float]]], ylabel: str,
    ax: Axes | None = None, colors: Colors = None, markers_only: Sequence[str] = (),
) -> Axes:  # fmt: skip
    """One line per run or method: a score (``ylabel``) against KL(π_θ‖π_ref) along it; the
    names in ``markers_only`` are drawn as points (e.g. one point per β), ``colors`` by name."""
    ax = get_ax(ax)
    for name, (kl, value) in paths.items():
        style = {"ls": "none", "ms": 7} if name in markers_only else {"ms": 4}
        ax.plot(kl, value, marker="o", label=name, color=(colors or {}).get(name), **style)
    ax.set_xlabel(KL_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_sweep_vs_kl(
    trace: Sequence[Mapping[str, float]],
    points: Mapping[float, Mapping[str, float]],
    metric: str,
    ylabel: str,
    ax: Axes | None = None,
    baseline: float | None = None,
    trace_label: str = "β = 0, every evaluation",
) -> Axes:
    """``metric`` against KL(π_θ‖π_ref): one run's evaluations (``trace``, dicts with ``kl`` and
    ``metric``) as a line in β = 0's colour, one point per β (``points``: β -> dict with ``kl``,
    ``metric`` and their ``<key>_se``, drawn with ±1 SE bars) in ``beta_color(β)``, and a dotted
    line at ``baseline`` (π_ref's value). The KL axis is symlog (linear below 1 nat)."""
    from kl_helpers.plotting import beta_color

    ax = get_ax(ax)
    ax.plot([e["kl"] for e in trace], [e[metric] for e in trace], "-o", ms=4,
            color=beta_color(0.0), alpha=0.6, label=trace_label)  # fmt: skip
    for beta, p in points.items():
        ax.errorbar([p["kl"]], [p[metric]], xerr=[p.get("kl_se", 0.0)],
                    yerr=[p.get(f"{metric}_se", 0.0)], fmt="s", ms=7, capsize=2,
                    color=beta_color(beta), label=f"β = {beta:g}")  # fmt: skip
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls=":", lw=1, label="π_ref")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel(KL_LABEL)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="best")
    return ax
