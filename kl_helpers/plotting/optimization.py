"""Figures for notebook 05 (KL in optimisation): β trade-offs, π* against β, KL estimators, ELBO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes

from kl_helpers.plotting import COLORS, get_ax


def _np(x: object) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def plot_beta_tradeoff(
    betas: Sequence[float],
    task_losses: Mapping[str, Sequence[float]],
    kls: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
) -> Axes:
    """Task loss (x) against KL to the reference (y) per β, one line per regulariser, in nats.

    Each regulariser's KL is in its own direction: name the direction in the ``kls`` keys.
    """
    ax = get_ax(ax)
    for i, (name, losses) in enumerate(task_losses.items()):
        x, y = _np(losses), _np(kls[name])
        line = ax.plot(x, y, marker="o", label=name)[0]
        # alternate sides (above right, below left) so labels collide neither with each other
        # nor with a falling curve
        offset, align = ((5, 4), "left") if i % 2 == 0 else ((-5, -12), "right")
        for b, xi, yi in zip(betas, x, y, strict=True):
            ax.annotate(
                f"β={b:g}",
                (xi, yi),
                textcoords="offset points",
                xytext=offset,
                ha=align,
                fontsize=8,
                color=line.get_color(),
            )
    ax.set_xlabel("task loss −log p_θ(y) (nats)")
    ax.set_ylabel("KL to the reference, in the legend's direction (nats)")
    ax.set_title("β trades task loss against closeness to the reference")
    ax.legend()
    return ax


def plot_policies(
    policies: Mapping[str, Sequence[float]],
    responses: Sequence[str],
    ax: Axes | None = None,
    colors: Mapping[str, object] | None = None,
) -> Axes:
    """Grouped bars of several distributions over the same responses (e.g. π_ref and π* per β).

    ``colors`` (name -> colour) fixes a bar's colour, e.g. ``beta_color(β)`` for each π*, so that
    a β keeps its colour across panels; names it lacks take the default cycle.
    ValueError for no policies or a policy whose length is not the number of responses.
    """
    if not policies:
        raise ValueError("policies is empty: nothing to draw")
    for name, probs in policies.items():
        if _np(probs).shape != (len(responses),):
            raise ValueError(
                f"policy {name!r} has shape {_np(probs).shape}, expected ({len(responses)},): "
                "one probability per response"
            )
    ax = get_ax(ax)
    colors = colors or {}
    n = len(policies)
    width = 0.8 / n
    x = np.arange(len(responses))
    for i, (name, probs) in enumerate(policies.items()):
        offset = (i - (n - 1) / 2) * width
        ax.bar(x + offset, _np(probs), width=width, color=colors.get(name), label=name)
    ax.set_xticks(x, list(responses))
    ax.set_xlabel("response")
    ax.set_ylabel("probability")
    ax.set_title("Closed-form optimum π* ∝ π_ref·exp(r/β)")
    ax.legend(fontsize=8)
    return ax


def plot_ascent_gaps(
    histories: Mapping[str, torch.Tensor],
    optima: Mapping[str, float],
    ax: Axes | None = None,
    floor: float = 1e-12,
    colors: Mapping[str, object] | None = None,
) -> Axes:
    """Gap J* − J(π_t) to the closed-form optimum along gradient ascent, log scale, in nats.

    Gaps below ``floor`` (float64 round-off) are drawn at the floor. ``colors`` (name -> colour)
    fixes a curve's colour (e.g. ``beta_color(β)``); names it lacks take the default cycle.
    """
    ax = get_ax(ax)
    colors = colors or {}
    for name, history in histories.items():
        gap = np.maximum(optima[name] - _np(history), floor)
        ax.semilogy(np.arange(len(gap)), gap, color=colors.get(name), label=name)
    _floor_line(ax, floor)
    ax.set_xlabel("gradient-ascent step")
    ax.set_ylabel("J* − J(π_t) (nats)")
    ax.set_title("Gradient ascent reaches the closed-form optimum")
    ax.legend(fontsize=8)
    return ax


def plot_estimator_distributions(
    estimates: Mapping[str, torch.Tensor],
    exact: float,
    ax: Axes | None = None,
    bins: int = 60,
) -> Axes:
    """Histograms of repeated KL estimates (one per estimator) with the exact KL as a line.

    ValueError for no estimators, an estimator with no finite estimate, or ``bins`` < 1; when
    every estimate is the same number the bins span it ± max(1e-6·|value|, 1e-6)."""
    values = {k: _np(v).reshape(-1) for k, v in estimates.items()}
    if not values or any(not np.isfinite(v).any() for v in values.values()):
        raise ValueError("estimates needs at least one estimator with a finite estimate")
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    ax = get_ax(ax)
    values = {k: v[np.isfinite(v)] for k, v in values.items()}
    lo = min(v.min() for v in values.values())
    hi = max(v.max() for v in values.values())
    if hi == lo:  # one value: numpy's bins must increase, and be wide enough to divide by
        half = max(abs(lo) * 1e-6, 1e-6)
        lo, hi = lo - half, hi + half
    bins = int(bins)
    edges = np.linspace(lo, hi, bins + 1)
    for name, v in values.items():
        ax.hist(v, bins=edges, histtype="step", lw=1.5, density=True, label=name)
    ax.axvline(exact, color=COLORS["reference"], ls="--", label=f"exact KL = {exact:.4f}")
    ax.set_xlabel("estimate of KL(π_θ‖π_ref) (nats)")
    ax.set_ylabel("density")
    ax.set_title("Sample-based KL estimators")
    ax.legend(fontsize=8)
    return ax


def plot_elbo_history(
    elbo: torch.Tensor,
    log_evidence: float,
    ax: Axes | None = None,
) -> Axes:
    """ELBO along gradient ascent with the exact log p(x) it approaches from below, in nats.

    ``elbo`` is 1-D (a tensor, array or list; ValueError otherwise)."""
    if _np(elbo).ndim != 1:
        raise ValueError(f"elbo must be 1-D (one value per step), got shape {_np(elbo).shape}")
    ax = get_ax(ax)
    ax.plot(np.arange(len(elbo)), _np(elbo), color=COLORS["q"], label="ELBO(q_t)")
    ax.axhline(log_evidence, color=COLORS["p"], ls="--", label=f"log p(x) = {log_evidence:.4f}")
    ax.set_xlabel("gradient-ascent step")
    ax.set_ylabel("nats")
    ax.set_title("Maximising the ELBO")
    ax.legend()
    return ax


def plot_kl_gap(
    gap: torch.Tensor,
    ax: Axes | None = None,
    label: str = "log p(x) − ELBO = KL(q‖p(z|x))",
    floor: float = 1e-12,
) -> Axes:
    """A gap ≥ 0 (e.g. KL(q_t‖posterior)) per step on a log scale, in nats; clipped at ``floor``."""
    ax = get_ax(ax)
    values = np.maximum(_np(gap), floor)
    ax.semilogy(np.arange(len(values)), values, color=COLORS["q"], label=label)
    _floor_line(ax, floor)
    ax.set_xlabel("gradient-ascent step")
    ax.set_ylabel("nats (log scale)")
    ax.set_title("The gap the ELBO closes is a KL")
    ax.legend()
    return ax


def _floor_line(ax: Axes, floor: float) -> None:
    """Mark the floor: a curve flat on it is at or below round-off, not exactly ``floor``."""
    label = f"plotting floor {floor:g} (gap ≤ round-off)"
    ax.axhline(floor, color="0.5", ls=":", lw=1, label=label)
