"""Figures for notebook 08 (does the KL penalty keep what the model knew?).

Each helper takes ``ax=None``, draws, and returns the Axes. Inputs are the rows of
``kl_helpers.studies.retention_scores.retention_table``: one per run, with ``fit_nll`` (the new
task's training NLL, nats), held-out ``accuracy`` / ``macro_f1`` (unitless), ``nll`` and
``kl_to_ref`` (nats). Bars span the min–max over seeds, markers are seed means. A figure of
several panels can draw them with ``legend=False`` and gather one legend above them with
``figure_legend``, so that no legend covers data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from kl_helpers.plotting import COLORS, get_ax
from kl_helpers.plotting.beta import METHOD_STYLE

LABELS = {  # axis label of each retention-table column, with its unit
    "fit_nll": "new-task NLL on its training sentences (nats)",
    "fit_acc": "new-task training accuracy",
    "accuracy": "held-out review accuracy",
    "macro_f1": "held-out review macro-F1",
    "nll": "held-out review NLL (nats)",
    "kl_to_ref": "held-out KL(p_ref‖p_θ) (nats)",
}
METHOD_LABELS = {  # notebook 08 writes p_θ for the fine-tuned model and p_ref for the reference
    "forward": "forward KL(p_ref‖p_θ)",
    "reverse": "reverse KL(p_θ‖p_ref)",
}
BASELINE_STYLES = ({"color": "#7f7f7f", "linestyle": "--"}, {"color": "#7f7f7f", "linestyle": "-."})
REPLAY_COLOR = "#2a9d3f"  # the replay-KL curve when one direction is drawn
KL_ON_STYLE = {
    "task": {"marker": "o", "suffix": ""},
    "replay": {"marker": "s", "suffix": ", replay"},
}


def _seed_stats(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    g = rows.groupby("beta")[columns]
    return g.mean().join(g.min(), rsuffix="_min").join(g.max(), rsuffix="_max").reset_index()


def _errorbar(ax: Axes, stats: pd.DataFrame, x: str, y: str, **style) -> None:
    xerr = np.vstack([stats[x] - stats[f"{x}_min"], stats[f"{x}_max"] - stats[x]])
    yerr = np.vstack([stats[y] - stats[f"{y}_min"], stats[f"{y}_max"] - stats[y]])
    ax.errorbar(stats[x], stats[y], xerr=xerr, yerr=yerr, capsize=2, **style)


def _levels(ax: Axes, reference: float | None, baselines: Mapping[str, float] | None) -> None:
    """The reference's level (solid) and each finite baseline's (grey, dashed / dash-dotted)."""
    if reference is not None:
        ax.axhline(reference, color=COLORS["reference"], linewidth=1, label="reference p_ref")
    for style, (name, value) in zip(BASELINE_STYLES * 4, (baselines or {}).items(), strict=False):
        if np.isfinite(value):
            ax.axhline(value, linewidth=1, label=name, **style)


def plot_retention_tradeoff(
    table: pd.DataFrame,
    task: str,
    x: str = "fit_nll",
    y: str = "accuracy",
    reference: float | None = None,
    kl_on: tuple[str, ...] = ("task",),
    annotate: bool = True,
    methods: tuple[str, ...] = ("forward", "reverse"),
    baselines: Mapping[str, float] | None = None,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Retention ``y`` against new-task fit ``x`` for every (direction in ``methods``, where the
    KL is taken), one point per β (seed mean, min–max bars), SFT as a black star; ``reference``
    and each finite value of ``baselines`` (name → level, e.g. the class prior's NLL) a level
    line; a legend where it covers least unless ``legend`` is False."""
    ax = get_ax(ax)
    rows = table[table["task"] == task]
    sft = _seed_stats(rows[rows["method"] == "sft"], [x, y])
    for where in kl_on:
        for method in methods:
            sel = rows[(rows["method"] == method) & (rows["kl_on"] == where)]
            if sel.empty:
                continue
            stats = _seed_stats(sel, [x, y]).sort_values("beta")
            style = METHOD_STYLE[method]
            if where != "task" and len(methods) == 1:  # one direction: tell the two apart by colour
                style = {**style, "color": REPLAY_COLOR, "linestyle": "-"}
            _errorbar(
                ax,
                stats,
                x,
                y,
                color=style["color"],
                linestyle=style["linestyle"],
                marker=KL_ON_STYLE[where]["marker"],
                label=METHOD_LABELS[method] + KL_ON_STYLE[where]["suffix"],
            )
            if annotate:
                for _, r in stats.iterrows():
                    ax.annotate(
                        f"{r['beta']:g}",
                        (r[x], r[y]),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color=style["color"],
                    )
    if not sft.empty:
        _errorbar(ax, sft, x, y, color=COLORS["sft"], marker="*", markersize=12, label="SFT")
    _levels(ax, reference, baselines)
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    which = " and ".join(methods)
    ax.set_title(f"{task}, {which}: kept vs new-task fit", fontsize=10)
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def plot_retention_vs_beta(
    table: pd.DataFrame,
    task: str,
    metric: str = "accuracy",
    reference: float | None = None,
    kl_on: str = "task",
    baselines: Mapping[str, float] | None = None,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Held-out ``metric`` against β (log axis) per direction, min–max band over seeds; SFT
    (β = 0) a dotted line, ``reference`` a solid one, each finite ``baselines`` value a grey
    one; a legend where it covers least unless ``legend`` is False."""
    ax = get_ax(ax)
    rows = table[table["task"] == task]
    sft = rows[rows["method"] == "sft"][metric]
    for method in ("forward", "reverse"):
        sel = rows[(rows["method"] == method) & (rows["kl_on"] == kl_on)]
        if sel.empty:
            continue
        stats = _seed_stats(sel, [metric]).sort_values("beta")
        style = METHOD_STYLE[method]
        ax.plot(
            stats["beta"],
            stats[metric],
            marker="o",
            color=style["color"],
            linestyle=style["linestyle"],
            label=METHOD_LABELS[method],
        )
        ax.fill_between(
            stats["beta"],
            stats[f"{metric}_min"],
            stats[f"{metric}_max"],
            color=style["color"],
            alpha=0.15,
        )
    if not sft.empty:
        ax.axhline(sft.mean(), color=COLORS["sft"], linestyle=":", label="SFT (β = 0)")
    _levels(ax, reference, baselines)
    ax.set_xscale("log")
    ax.set_xlabel("β (log scale)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(f"{task}: {LABELS.get(metric, metric)} against β")
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def figure_legend(fig: Figure, ncol: int | None = None) -> Legend:
    """One legend for every panel of ``fig``, above them (outside the data): each label once,
    in the order the panels first use it; the panels' own legends are removed."""
    entries: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig.legend(
        list(entries.values()),
        list(entries),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=ncol or min(len(entries), 4) or 1,
        fontsize=9,
        frameon=False,
    )
