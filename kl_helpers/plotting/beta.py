"""Figures for notebook 07 (how strong should β be?): closed-form optima, the β sweep, calibration.

Each helper takes ``ax=None``, draws, and returns the Axes; probabilities are unitless, losses and
KL divergences are in nats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from kl_helpers.plotting import COLORS, get_ax
from kl_helpers.studies.metrics import ReliabilityBins
from kl_helpers.theory import optima

METHOD_STYLE = {  # colour and line style of each regulariser across notebook 07's figures
    "forward": {"color": "#2e6fbf", "linestyle": "-", "label": "forward KL(r‖π)"},
    "reverse": {"color": "#d35400", "linestyle": "--", "label": "reverse KL(π‖r)"},
    "sft": {"color": COLORS["sft"], "linestyle": ":", "label": "SFT (β = 0)"},
}


def plot_label_probability_vs_beta(
    betas: Sequence[float],
    r_ys: Sequence[float],
    ax: Axes | None = None,
    mark_crossings: bool = True,
) -> Axes:
    """Optimal label probability π*_y against β (log axis) for both regularisers and each r_y.

    Forward KL solid, reverse KL dashed, one colour per r_y; a dot where the two cross.
    """
    import matplotlib as mpl

    ax = get_ax(ax)
    betas = np.asarray(betas, dtype=float)
    cmap = mpl.colormaps["viridis"]
    for i, r_y in enumerate(r_ys):
        color = cmap(i / max(len(r_ys) - 1, 1) * 0.9)
        for method in optima.METHODS:
            p = optima.label_probability(method, r_y, betas).numpy()
            style = METHOD_STYLE[method]
            ax.plot(betas, p, color=color, linestyle=style["linestyle"])
        ax.plot([], [], color=color, label=f"r_y = {r_y:g}")
        b = optima.crossing_beta(r_y) if mark_crossings else math.inf
        if math.isfinite(b) and betas.min() <= b <= betas.max():
            ax.plot([b], [optima.forward_kl_label_probability(r_y, b)], "o", color=color, ms=6)
    for method in optima.METHODS:
        style = METHOD_STYLE[method]
        ax.plot([], [], color="grey", linestyle=style["linestyle"], label=style["label"])
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("β (log scale)")
    ax.set_ylabel("optimal label probability π*_y")
    ax.set_title("Closed-form optima: label probability against β")
    ax.legend(fontsize=8, ncol=2)
    return ax


def plot_crossing_beta(
    r_ys: Sequence[float], ax: Axes | None = None, band: tuple[float, float] | None = (0.1, 0.9)
) -> Axes:
    """β at which the two optima give the label equal probability, against r_y in (0, 1/2).

    Below the curve the reverse-KL optimum is sharper, above it the forward-KL one; ``band``
    shades a β range (the article's 0.1–0.9).
    """
    ax = get_ax(ax)
    r = np.asarray([x for x in r_ys if 0 < x < 0.5], dtype=float)
    b = np.array([optima.crossing_beta(x) for x in r])
    ax.plot(r, b, color="black", label="crossing β*(r_y)")
    top = max(b.max(), 10.0) * 3
    ax.fill_between(r, b, top, color=METHOD_STYLE["forward"]["color"], alpha=0.12)
    ax.fill_between(r, 1e-3, b, color=METHOD_STYLE["reverse"]["color"], alpha=0.12)
    ax.axvline(0.5, color="grey", linewidth=0.8)
    ax.text(0.02, 0.9, "forward KL sharper", transform=ax.transAxes, fontsize=9)
    ax.text(0.55, 0.08, "reverse KL sharper", transform=ax.transAxes, fontsize=9)
    if band is not None:
        ax.axhspan(*band, color="grey", alpha=0.15, label=f"β ∈ [{band[0]:g}, {band[1]:g}]")
    ax.set_yscale("log")
    ax.set_ylim(1e-2, top)
    ax.set_xlim(0, 0.6)
    ax.set_xlabel("reference probability of the label r_y")
    ax.set_ylabel("crossing β (log scale)")
    ax.set_title("Which optimum is sharper, by r_y and β")
    ax.legend(fontsize=8, loc="center right")
    return ax


def plot_theory_vs_trained(
    table: pd.DataFrame, ax: Axes | None = None, tolerance: float | None = None
) -> Axes:
    """Trained label probability (y) against the closed-form prediction (x), per method.

    ``table`` has columns ``method``, ``predicted`` and ``trained`` (one row per example and
    run); ``tolerance`` draws the band |trained − predicted| ≤ tolerance around the diagonal.
    """
    ax = get_ax(ax)
    grid = np.linspace(0, 1, 2)
    ax.plot(grid, grid, color="grey", linewidth=1, label="trained = closed form")
    if tolerance is not None:
        ax.fill_between(grid, grid - tolerance, grid + tolerance, color="grey", alpha=0.15)
    for method, rows in table.groupby("method", sort=True):
        style = METHOD_STYLE[method]
        ax.scatter(
            rows["predicted"], rows["trained"], s=18, color=style["color"], label=style["label"]
        )
    ax.set_xlim(0.2, 1.01)
    ax.set_ylim(0.2, 1.01)
    ax.set_xlabel("closed-form optimum π*_y")
    ax.set_ylabel("trained model's p(y) (eval mode)")
    ax.set_title("Train sentences: trained vs closed-form label probability")
    ax.legend(fontsize=8)
    return ax


def _stats(rows: pd.DataFrame, metric: str, spread: str) -> pd.DataFrame:
    g = rows.groupby("beta")[metric]
    out = pd.DataFrame({"mean": g.mean()})
    if spread == "std":
        s = g.std(ddof=1).fillna(0.0)
        out["lo"], out["hi"] = out["mean"] - s, out["mean"] + s
    else:
        out["lo"], out["hi"] = g.min(), g.max()
    return out


def plot_metric_vs_beta(
    table: pd.DataFrame,
    metric: str,
    ylabel: str,
    ax: Axes | None = None,
    spread: str = "minmax",
) -> Axes:
    """Mean of ``metric`` over seeds against β (log axis) per method, with a band over seeds.

    ``table`` has columns ``method`` ("sft", "forward", "reverse"), ``beta``, ``seed``, ``metric``.
    SFT (β = 0, shared by both) is a horizontal line with its own band. ``spread``: "minmax"
    (the band spans the seeds) or "std" (± one standard deviation).
    """
    if spread not in ("minmax", "std"):
        raise ValueError(f"spread must be 'minmax' or 'std', got {spread!r}")
    ax = get_ax(ax)
    for method in ("forward", "reverse"):
        rows = table[(table["method"] == method) & np.isfinite(table["beta"])]
        if rows.empty:
            continue
        s = _stats(rows, metric, spread)
        style = METHOD_STYLE[method]
        ax.plot(
            s.index,
            s["mean"],
            marker="o",
            ms=4,
            color=style["color"],
            linestyle=style["linestyle"],
            label=style["label"],
        )
        ax.fill_between(s.index, s["lo"], s["hi"], color=style["color"], alpha=0.18)
    sft = table[table["method"] == "sft"]
    if not sft.empty:
        s = _stats(sft.assign(beta=0.0), metric, spread).iloc[0]
        style = METHOD_STYLE["sft"]
        ax.axhline(
            s["mean"], color=style["color"], linestyle=style["linestyle"], label=style["label"]
        )
        ax.axhspan(s["lo"], s["hi"], color=style["color"], alpha=0.08)
    ax.set_xscale("log")
    kl_rows = table[table["method"].isin(["forward", "reverse"])]
    betas = sorted(b for b in kl_rows["beta"].unique() if 0 < b < math.inf)
    ax.set_xticks(betas, [f"{b:g}" for b in betas])
    ax.minorticks_off()
    ax.set_xlabel("β (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} against β ({'min–max' if spread == 'minmax' else '±1 sd'} over seeds)")
    ax.legend(fontsize=8)
    return ax


def plot_tradeoff(
    points: pd.DataFrame,
    x: str,
    y: str,
    xlabel: str,
    ylabel: str,
    ax: Axes | None = None,
) -> Axes:
    """Each (method, β) as a point (x, y) with its β written beside it; frontier points ringed.

    ``points`` has columns ``method``, ``beta``, ``x``, ``y`` and a boolean ``frontier``
    (see ``kl_helpers.studies.beta_sweep.pareto_frontier``); the frontier is joined by a grey line.
    """
    ax = get_ax(ax)
    for method, rows in points.groupby("method", sort=True):
        style = METHOD_STYLE[method]
        rows = rows.sort_values("beta")
        ax.plot(
            rows[x],
            rows[y],
            marker="o",
            ms=5,
            color=style["color"],
            linestyle=style["linestyle"],
            label=style["label"],
        )
        for _, row in rows.iterrows():
            ax.annotate(
                f"β={row['beta']:g}",
                (row[x], row[y]),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
                color=style["color"],
            )
    front = points[points["frontier"]].sort_values(x)
    ax.plot(
        front[x],
        front[y],
        color="grey",
        linewidth=3,
        alpha=0.35,
        zorder=0,
        label="frontier (no point better in both)",
    )
    ax.scatter(front[x], front[y], s=120, facecolors="none", edgecolors="black", linewidths=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Trade-off: task loss against KL to the reference (β beside each point)")
    ax.legend(fontsize=8)
    return ax


def plot_reliability(bins: Mapping[str, ReliabilityBins], ax: Axes | None = None) -> Axes:
    """Reliability diagram: accuracy against mean confidence per confidence bin, per model.

    Marker area grows with the number of predictions in the bin; the diagonal is perfect
    calibration.
    """
    ax = get_ax(ax)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="perfect calibration")
    for i, (name, b) in enumerate(bins.items()):
        used = (b.count > 0).numpy()
        conf = b.confidence.numpy()[used]
        acc = b.accuracy.numpy()[used]
        share = b.count.numpy()[used] / b.count.sum().item()
        line = ax.plot(conf, acc, marker=None, label=name, zorder=2 + i)[0]
        ax.scatter(conf, acc, s=20 + 400 * share, color=line.get_color(), alpha=0.6, zorder=2 + i)
    ax.set_xlim(0.3, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("confidence (max probability), bin mean")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("Reliability diagram on the held-out test split")
    ax.legend(fontsize=8, loc="lower right")
    return ax
