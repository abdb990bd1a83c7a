"""Figures for notebook 03: forward vs reverse KL fits and their optimisation paths."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from kl_helpers.theory.mixtures import GaussianMixture, normal_log_pdf


def plot_gaussian_fits(
    mixture: GaussianMixture,
    fits: Mapping[str, tuple[float, float]],
    x: np.ndarray | None = None,
    ax: Axes | None = None,
) -> Axes:
    """The two-mode density P and each fitted N(μ, σ²) (label -> (μ, σ)) on one axis."""
    ax = ax or plt.gca()
    x = np.linspace(-8, 8, 801) if x is None else x
    xt = torch.as_tensor(x, dtype=torch.float64)
    ax.fill_between(x, mixture.log_pdf(xt).exp().numpy(), color="0.8", label="P (two modes)")
    peak = float(mixture.log_pdf(xt).exp().max())
    for label, (mu, sigma) in fits.items():
        mu_t, sigma_t = (
            torch.tensor(mu, dtype=torch.float64),
            torch.tensor(sigma, dtype=torch.float64),
        )
        q = normal_log_pdf(xt, mu_t, sigma_t).exp().numpy()
        peak = max(peak, float(q.max()))
        ax.plot(x, q, lw=2, label=f"{label}: μ={mu:.2f}, σ={sigma:.2f}")
    ax.set(xlabel="x", ylabel="density (per unit of x)", title="Fitted Q = N(μ, σ²) against P")
    ax.set_ylim(0, 1.7 * peak)  # headroom: the legend sits above the curves, not on a peak
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return ax


def plot_kl_landscape(
    mus: torch.Tensor,
    sigmas: torch.Tensor,
    values: torch.Tensor,
    paths: Mapping[str, torch.Tensor],
    title: str,
    ax: Axes | None = None,
) -> Axes:
    """Contours of a KL (nats) over (μ, σ), values shaped (len(sigmas), len(mus)), with paths.

    Each path is a (steps+1, 2) tensor of (μ, σ); its start is a circle and its end a star, drawn
    on top of everything and smaller for each later path, so paths that end together stay visible.
    """
    ax = ax or plt.gca()
    levels = np.quantile(values.numpy(), np.linspace(0.0, 0.9, 16))
    cs = ax.contourf(
        mus.numpy(), sigmas.numpy(), values.numpy(), levels=levels, cmap="viridis_r", extend="max"
    )
    plt.colorbar(cs, ax=ax, label="KL (nats)")
    for i, ((label, path), color) in enumerate(
        zip(paths.items(), ["tab:red", "tab:orange", "w", "k"], strict=False)
    ):
        p = path.numpy()
        ax.plot(p[:, 0], p[:, 1], color=color, lw=1.5, label=label)
        ax.plot(p[0, 0], p[0, 1], "o", color=color, ms=6)
        ax.plot(p[-1, 0], p[-1, 1], "*", color=color, ms=max(16 - 5 * i, 6), mec="k", zorder=5)
    ax.set(xlabel="μ (mean of Q)", ylabel="σ (std of Q)", title=title)
    ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_discrete_fits(
    p: torch.Tensor, fits: Mapping[str, torch.Tensor], ax: Axes | None = None
) -> Axes:
    """Grouped bars: the target table P and each fitted softmax Q (label -> probabilities).

    ``p`` and each fit are 1-D of one length (tensors, arrays or lists; ValueError otherwise)."""
    p = np.asarray(torch.as_tensor(p, dtype=torch.float64).detach().cpu())
    tables = {k: np.asarray(torch.as_tensor(q, dtype=torch.float64).detach().cpu())
              for k, q in fits.items()}  # fmt: skip
    for name, q in {"p": p, **tables}.items():
        if q.ndim != 1 or q.shape != p.shape:
            raise ValueError(f"{name} must be 1-D like p {p.shape}, got shape {q.shape}")
    ax = ax or plt.gca()
    k = np.arange(p.shape[-1])
    width = 0.8 / (len(fits) + 1)
    ax.bar(k - 0.4 + width / 2, p, width, color="0.6", label="P (two modes)")
    for i, (label, q) in enumerate(tables.items(), start=1):
        ax.bar(k - 0.4 + width * (i + 0.5), q, width, label=label)
    ax.set(xlabel="class k", ylabel="probability", title="Softmax Q fitted to a two-mode P")
    ax.set_xticks(k)
    ax.legend(fontsize=8)
    return ax
