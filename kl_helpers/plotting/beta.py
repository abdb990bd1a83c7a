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

from kl_helpers.plotting import COLORS, beta_color, get_ax
from kl_helpers.studies.metrics import ReliabilityBins
from kl_helpers.theory import optima

METHOD_STYLE = {  # colour, line style and marker of each regulariser across notebook 07's figures
    "forward": {
        "color": "#2e6fbf",
        "linestyle": "-",
        "marker": "o",
        "label": "forward KL(p_ref‖p_θ)",
    },
    "reverse": {
        "color": "#d35400",
        "linestyle": "--",
        "marker": "s",
        "label": "reverse KL(p_θ‖p_ref)",
    },
    "sft": {"color": COLORS["sft"], "linestyle": ":", "marker": "D", "label": "SFT (β = 0)"},
}
REFERENCE_CMAP = (
    "copper"  # colours of p_ref(y) in the closed-form figure: not viridis, which means β
)


def run_style(method: str, beta: float) -> dict[str, object]:
    """How one (method, β) is drawn wherever colour means β: the series' β colour
    (:func:`kl_helpers.plotting.beta_color`), the method's line style and marker."""
    style = METHOD_STYLE["sft" if beta == 0 else method]
    return {"color": beta_color(beta), "linestyle": style["linestyle"], "marker": style["marker"]}


def _legend_outside(ax: Axes, **kwargs) -> None:
    """The legend to the right of the Axes, where it covers no data."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def plot_label_probability_vs_beta(
    betas: Sequence[float],
    r_ys: Sequence[float],
    ax: Axes | None = None,
    mark_crossings: bool = True,
) -> Axes:
    """Optimal label probability p*(y) against β (log axis) for both regularisers and each
    reference label probability p_ref(y) in ``r_ys``.

    Forward KL solid, reverse KL dashed, one colour per p_ref(y) (``REFERENCE_CMAP``, so that
    the series' β colours keep their meaning); a dot where the two cross.
    """
    import matplotlib as mpl

    ax = get_ax(ax)
    betas = np.asarray(betas, dtype=float)
    cmap = mpl.colormaps[REFERENCE_CMAP]
    for i, r_y in enumerate(r_ys):
        color = cmap(0.1 + 0.8 * i / max(len(r_ys) - 1, 1))
        for method in optima.METHODS:
            p = optima.label_probability(method, r_y, betas).numpy()
            style = METHOD_STYLE[method]
            ax.plot(betas, p, color=color, linestyle=style["linestyle"])
        ax.plot([], [], color=color, label=f"p_ref(y) = {r_y:g}")
        b = optima.crossing_beta(r_y) if mark_crossings else math.inf
        if math.isfinite(b) and betas.min() <= b <= betas.max():
            ax.plot([b], [optima.forward_kl_label_probability(r_y, b)], "o", color=color, ms=6)
    for method in optima.METHODS:
        style = METHOD_STYLE[method]
        ax.plot([], [], color="grey", linestyle=style["linestyle"], label=style["label"])
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("β (log scale)")
    ax.set_ylabel("optimal label probability p*(y)")
    ax.set_title("Closed-form optima: label probability against β")
    ax.legend(fontsize=8, loc="center left")  # the empty corner: small β, low probability
    return ax


def plot_crossing_beta(
    r_ys: Sequence[float], ax: Axes | None = None, band: tuple[float, float] | None = (0.1, 0.9)
) -> Axes:
    """β at which the two optima give the label equal probability, against p_ref(y) in (0, 1/2).

    Below the curve the reverse-KL optimum is sharper, above it the forward-KL one; ``band``
    shades a β range (the article's 0.1–0.9).
    """
    ax = get_ax(ax)
    r = np.asarray([x for x in r_ys if 0 < x < 0.5], dtype=float)
    b = np.array([optima.crossing_beta(x) for x in r])
    ax.plot(r, b, color="black", label="crossing β*(p_ref(y))")
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
    ax.set_xlabel("reference probability of the label, p_ref(y)")
    ax.set_ylabel("crossing β (log scale)")
    ax.set_title("Which optimum is sharper, by p_ref(y) and β")
    ax.legend(fontsize=8, loc="center right")
    return ax


def plot_theory_vs_trained(
    table: pd.DataFrame, ax: Axes | None = None, tolerance: float | None = None
) -> Axes:
    """Trained label probability (y) against the closed-form prediction (x).

    ``table`` has columns ``method``, ``beta``, ``predicted`` and ``trained`` (one row per example
    and run): colour is β (the series' palette), the marker the method. ``tolerance`` draws the
    band |trained − predicted| ≤ tolerance around the diagonal. The legend sits right of the Axes.
    """
    ax = get_ax(ax)
    grid = np.linspace(0, 1, 2)
    ax.plot(grid, grid, color="grey", linewidth=1, label="trained = closed form")
    if tolerance is not None:
        ax.fill_between(
            grid,
            grid - tolerance,
            grid + tolerance,
            color="grey",
            alpha=0.15,
            label=f"± {tolerance:g}",
        )
    for (method, beta), rows in table.groupby(["method", "beta"], sort=True):
        style = run_style(method, beta)
        ax.scatter(
            rows["predicted"],
            rows["trained"],
            s=22,
            color=style["color"],
            marker=style["marker"],
            edgecolors="white",
            linewidths=0.4,
        )
    for method in sorted(table["method"].unique()):
        ax.scatter(
            [],
            [],
            color="grey",
            marker=METHOD_STYLE[method]["marker"],
            label=METHOD_STYLE[method]["label"],
        )
    for beta in sorted(table["beta"].unique()):
        ax.scatter([], [], color=beta_color(beta), marker="o", label=f"β = {beta:g}")
    low = max(
        0.0, math.floor(20 * min(table["predicted"].min(), table["trained"].min())) / 20 - 0.05
    )
    ax.set_xlim(low, 1.01)  # from just below the lowest point: the points, not empty space
    ax.set_ylim(low, 1.01)
    ax.set_xlabel("closed-form optimum p*(y)")
    ax.set_ylabel("trained model's p_θ(y) (eval mode)")
    ax.set_title("Training sentences: trained vs closed form")
    _legend_outside(ax)
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
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_tradeoff(
    points: pd.DataFrame,
    x: str,
    y: str,
    xlabel: str,
    ylabel: str,
    ax: Axes | None = None,
    legend: bool = True,
) -> Axes:
    """Each (method, β) as a point (x, y): colour is β (the series' palette), the marker and the
    thin line joining a method's points are the method's; frontier points ringed.

    ``points`` has columns ``method``, ``beta``, ``x``, ``y`` and a boolean ``frontier``
    (see ``kl_helpers.studies.beta_sweep.pareto_frontier``); the frontier is joined by a grey line.
    No text is written beside the points (close points would overlap); the legend, right of the
    Axes, names the methods and the β colours (``legend=False``: none, e.g. for a figure's
    first panel).
    """
    ax = get_ax(ax)
    for method, rows in points.groupby("method", sort=True):
        style = METHOD_STYLE[method]
        rows = rows.sort_values("beta")
        ax.plot(
            rows[x],
            rows[y],
            color=style["color"],
            linestyle=style["linestyle"],
            linewidth=1,
            alpha=0.7,
        )
        ax.plot(
            [],
            [],
            color=style["color"],
            linestyle=style["linestyle"],
            marker=style["marker"],
            markerfacecolor="grey",
            markeredgecolor="grey",
            label=style["label"],
        )
        for _, row in rows.iterrows():
            drawn = run_style(method, row["beta"])
            ax.scatter(
                [row[x]],
                [row[y]],
                s=36,
                color=drawn["color"],
                marker=drawn["marker"],
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
            )
    for beta in sorted(points["beta"].unique()):
        sft = beta == 0
        ax.scatter(
            [],
            [],
            s=36,
            color=beta_color(beta),
            marker=METHOD_STYLE["sft"]["marker"] if sft else "o",
            label="β = 0 (SFT)" if sft else f"β = {beta:g}",
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
    ax.scatter(
        front[x], front[y], s=130, facecolors="none", edgecolors="black", linewidths=1, zorder=4
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Task loss against KL to the reference")
    if legend:
        _legend_outside(ax)
    return ax


def plot_reliability(
    bins: Mapping[str, ReliabilityBins],
    ax: Axes | None = None,
    styles: Mapping[str, Mapping[str, object]] | None = None,
) -> Axes:
    """Reliability diagram: accuracy against mean confidence per confidence bin, per model.

    Marker area grows with the number of predictions in the bin; the diagonal is perfect
    calibration. ``styles`` maps a model's name to its ``color``/``linestyle``/``marker`` (e.g.
    :func:`run_style`, so that colour means β as in the rest of the series); matplotlib's cycle
    otherwise.
    """
    ax = get_ax(ax)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="perfect calibration")
    for i, (name, b) in enumerate(bins.items()):
        style = dict((styles or {}).get(name, {}))
        marker = style.pop("marker", "o")
        used = (b.count > 0).numpy()
        conf = b.confidence.numpy()[used]
        acc = b.accuracy.numpy()[used]
        share = b.count.numpy()[used] / b.count.sum().item()
        line = ax.plot(conf, acc, label=name, zorder=2 + i, **style)[0]
        ax.scatter(
            conf,
            acc,
            s=20 + 400 * share,
            color=line.get_color(),
            marker=marker,
            alpha=0.6,
            zorder=2 + i,
        )
    ax.set_xlim(0.3, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("confidence (max probability), bin mean")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("Reliability diagram on the held-out test split")
    ax.legend(fontsize=8, loc="lower right")
    return ax
