"""Figures for notebook 06: loss histories (the article's Figure D) and predicted class
distributions (its Figure E), drawn from ``kl_helpers.engine.results.RunResult`` objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes

from kl_helpers.divergences import entropy
from kl_helpers.engine.results import RunResult
from kl_helpers.plotting import COLORS, beta_color, get_ax

# Roles in the class-distribution figure: the frozen reference, plain SFT, and one KL run each.
ROLE_COLORS = {
    "reference": COLORS["reference"],
    "SFT": "#7f7f7f",
    "FKL": "#2e6fbf",
    "RKL": "#e08a1e",
}
LOSS_PARTS = ("total", "task", "kl")  # which LossHistory curve to draw


def beta_colors(betas: Sequence[float], cmap: str = "viridis") -> dict[float, tuple]:
    """Each β's colour in the series' palette (:func:`kl_helpers.plotting.beta_color`)."""
    return {b: beta_color(b, cmap) for b in betas}


def plot_loss_histories(
    sft: RunResult,
    runs: Sequence[RunResult],
    part: str = "total",
    ax: Axes | None = None,
    yscale: str = "linear",
) -> Axes:
    """Per-step loss (nats) of SFT (black dotted) and of each KL run (coloured by β).

    ``part``: "total" (the loss each run minimised: task + β·KL), "task" (cross-entropy) or
    "kl" (the run's own KL term; forward KL(p_ref‖p_θ) for SFT, where it is only a monitor).
    Colour is β in the series' palette, and each run's β is also written at the right end of its
    line, outside the Axes (nearby βs have nearby colours); ``yscale`` is the y axis' scale.
    """
    if part not in LOSS_PARTS:
        raise ValueError(f"part must be one of {LOSS_PARTS}, got {part!r}")
    ax = get_ax(ax)
    colors = beta_colors([r.config.beta for r in runs])
    ends = []
    for run in sorted(runs, key=lambda r: r.config.beta):
        values = getattr(run.history, part)
        ax.plot(values, color=colors[run.config.beta], lw=1.4, label=f"β = {run.config.beta:g}")
        ends.append((values[-1], f"β = {run.config.beta:g}", colors[run.config.beta]))
    sft_values = getattr(sft.history, "kl_forward" if part == "kl" else part)
    ax.plot(sft_values, color=COLORS["sft"], ls=":", lw=2, label="SFT")
    ends.append((sft_values[-1], "SFT", COLORS["sft"]))
    ax.set_yscale(yscale)
    ax.set_xlabel("optimizer step (1 step = 1 epoch here)")
    ax.set_ylabel(f"{part} loss (nats)" if part != "kl" else "KL term (nats)")
    label_line_ends(ax, ends)
    return ax


def label_line_ends(
    ax: Axes, ends: Sequence[tuple[float, str, object]], min_gap: float = 0.055
) -> list:
    """Write each ``(y, text, color)`` just right of the Axes at the height of ``y`` (the value a
    line ends on), moved apart to at least ``min_gap`` (a fraction of the Axes' height) so that
    no two overlap; returns the Text objects. Call it after the scale and the data are set."""
    ax.autoscale_view()
    to_axes = ax.transData + ax.transAxes.inverted()
    placed = sorted((to_axes.transform((0.0, y))[1], text, color) for y, text, color in ends)
    heights = [h for h, _, _ in placed]
    for i in range(1, len(heights)):  # push up whatever sits too close to the one below it
        heights[i] = max(heights[i], heights[i - 1] + min_gap)
    overflow = heights[-1] - 1.0 if heights else 0.0
    if overflow > 0:  # then shift the whole stack down, keeping the gaps
        heights = [h - overflow for h in heights]
    return [
        ax.text(
            1.01,
            h,
            text,
            color=color,
            transform=ax.transAxes,
            fontsize=8,
            va="center",
            clip_on=False,
        )
        for h, (_, text, color) in zip(heights, placed, strict=True)
    ]


def plot_class_distribution(
    dists: Mapping[str, torch.Tensor | Sequence[float]],
    label_names: Sequence[str],
    ax: Axes | None = None,
    legend: bool = True,
) -> Axes:
    """Grouped bars: each named model's class probabilities (one distribution per model), each bar
    labelled with its value; ``legend=False`` leaves the legend to the figure."""
    ax = get_ax(ax)
    names = list(dists)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(label_names))
    for i, name in enumerate(names):
        p = np.asarray(torch.as_tensor(dists[name], dtype=torch.float64))
        color = ROLE_COLORS.get(name.split(" ")[0])
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, p, width, label=name, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, list(label_names))
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("class")
    ax.set_ylabel("predicted probability")
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def role_distributions(
    reference_run: RunResult,
    sft: RunResult,
    fkl: RunResult,
    rkl: RunResult,
    which: str = "mean",
) -> dict[str, torch.Tensor]:
    """Class distributions for the figure: ``which`` = "mean" (over all texts) or
    "test:<i>" (held-out text i). Keys name the role and, for KL runs, β."""

    def pick(run: RunResult, kind: str) -> torch.Tensor:
        if which == "mean":
            return run.all_probs(kind).mean(0)
        if which.startswith("test:"):
            return run.prob(kind, "test")[int(which.split(":")[1])]
        raise ValueError(f"which must be 'mean' or 'test:<i>', got {which!r}")

    return {
        "reference": pick(reference_run, "reference"),
        "SFT": pick(sft, "final"),
        f"FKL β={fkl.config.beta:g}": pick(fkl, "final"),
        f"RKL β={rkl.config.beta:g}": pick(rkl, "final"),
    }


def plot_collapse_vs_beta(
    runs: Sequence[RunResult],
    metric: str = "max_prob",
    split: str = "test",
    ax: Axes | None = None,
) -> Axes:
    """Mean max probability (or entropy, nats) of the final predictions on ``split`` vs β,
    for forward and reverse KL, with plain SFT and the reference as horizontal lines."""
    if metric not in ("max_prob", "entropy"):
        raise ValueError(f"metric must be 'max_prob' or 'entropy', got {metric!r}")
    ax = get_ax(ax)
    column = f"{metric}_{split}"
    sft = [r for r in runs if r.config.method == "sft"]
    for method, name in (("forward", "FKL"), ("reverse", "RKL")):
        chosen = sorted((r for r in runs if r.config.method == method), key=lambda r: r.config.beta)
        if chosen:
            betas = [r.config.beta for r in chosen]
            values = [r.summary(split)[column] for r in chosen]
            ax.plot(betas, values, "o-", color=ROLE_COLORS[name], label=f"SFT + {name}")
    if sft:
        ax.axhline(sft[0].summary(split)[column], color=COLORS["sft"], ls=":", label="SFT")
        ref = sft[0].prob("reference", split)
        ref_value = ref.max(-1).values.mean() if metric == "max_prob" else entropy(ref).mean()
        ref_value = float(ref_value)
        ax.axhline(ref_value, color=ROLE_COLORS["reference"], ls="--", label="reference")
    ax.set_xlabel("β")
    ax.set_ylabel("mean max probability" if metric == "max_prob" else "mean entropy (nats)")
    ax.legend(fontsize=8, loc="best")
    return ax
