"""Figures for notebook 09 (KL between language models token by token); all values in nats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes

from kl_helpers.plotting import get_ax


def _np(x: object) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def plot_estimator_spread(
    estimates: Mapping[str, Sequence[float]], reference: float, ax: Axes | None = None
) -> Axes:
    """One box per estimator of a response's KL (its values over sampled responses), in nats,
    with a line at ``reference`` (the mean of the exact per-token sums)."""
    ax = get_ax(ax)
    names = list(estimates)
    ax.boxplot([_np(estimates[n]) for n in names], showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.axhline(reference, color="k", ls="--", lw=1, label=f"mean of exact sums = {reference:.2f}")
    ax.set_xlabel("estimator of one response's KL(π_θ‖π_ref)")
    ax.set_ylabel("estimate per response (nats)")
    ax.set_title("Same responses, different estimators")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_token_trace(
    exact: Sequence[float], sampled: Mapping[str, Sequence[float]], ax: Axes | None = None
) -> Axes:
    """Per-token values along one response: the exact KL at each prefix and sampled estimators."""
    ax = get_ax(ax)
    t = np.arange(1, len(_np(exact)) + 1)
    ax.plot(t, _np(exact), "k-o", ms=3, label="exact KL over the vocabulary")
    for name, values in sampled.items():
        ax.plot(t, _np(values), marker=".", lw=1, label=name)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("response token t")
    ax.set_ylabel("per-token value (nats)")
    ax.set_title("One response, token by token")
    ax.legend(fontsize=8)
    return ax


def plot_gradient_errors(
    sizes: Sequence[int], errors: Mapping[str, Sequence[float]], ax: Axes | None = None
) -> Axes:
    """Mean relative error of gradient estimates against the exact ∇KL(π_θ‖π_ref) vs sample size."""
    ax = get_ax(ax)
    for name, values in errors.items():
        ax.plot(sizes, _np(values), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sampled responses per estimate")
    ax.set_ylabel("‖ĝ − ∇KL‖ / ‖∇KL‖ (mean over repeats)")
    ax.set_title("Which estimator's gradient is the reverse KL's?")
    ax.legend(fontsize=8)
    return ax


def plot_length_curves(
    lengths: Sequence[int],
    curves: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
) -> Axes:
    """A sequence-level KL penalty against the response length it is computed on, in nats."""
    ax = get_ax(ax)
    for name, values in curves.items():
        ax.plot(lengths, _np(values), marker=".", label=name)
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("KL penalty (nats)")
    ax.set_title("Sum grows with length, mean does not")
    ax.legend(fontsize=8)
    return ax


def plot_landscape(
    landscape: torch.Tensor,
    alphas: Sequence[float],
    taus: Sequence[float],
    minima: Sequence[Mapping[str, float]],
    title: str,
    ax: Axes | None = None,
) -> Axes:
    """KL over the (α, τ) grid of blended next-token distributions, with the basins' minima."""
    ax = get_ax(ax)
    values = np.log10(_np(landscape))
    mesh = ax.pcolormesh(_np(alphas), _np(taus), values, shading="auto", cmap="viridis")
    ax.figure.colorbar(mesh, ax=ax, label="log10 KL (nats)")
    for m in minima:
        ax.plot(m["alpha"], m["tau"], "r*", ms=12)
    ax.set_xlabel("α (weight of context A's logits)")
    ax.set_ylabel("temperature τ")
    ax.set_title(title)
    return ax


def plot_token_bars(
    labels: Sequence[str], dists: Mapping[str, Sequence[float]], ax: Axes | None = None
) -> Axes:
    """Grouped bars: several next-token distributions on the same tokens."""
    ax = get_ax(ax)
    n = len(dists)
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, (name, probs) in enumerate(dists.items()):
        ax.bar(x + (i - (n - 1) / 2) * width, _np(probs), width=width, label=name)
    ax.set_xticks(x, [repr(s) for s in labels], rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("next token")
    ax.set_ylabel("probability")
    ax.legend(fontsize=8)
    return ax
