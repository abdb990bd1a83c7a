"""Figures for notebook 03: forward vs reverse KL fits and their optimisation paths.

One colour per fitted Q in every panel: pass the same ``colors`` (label -> colour) to each helper.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from kl_helpers.theory.mixtures import GaussianMixture, normal_log_pdf

TARGET_COLOR = "0.75"  # the target P (grey), so that the colours are left to the fits


def plot_gaussian_fits(
    mixture: GaussianMixture,
    fits: Mapping[str, tuple[float, float]],
    x: np.ndarray | None = None,
    ax: Axes | None = None,
    colors: Mapping[str, object] | None = None,
) -> Axes:
    """The two-mode density P and each fitted N(μ, σ²) (label -> (μ, σ)) on one axis.

    ``colors`` (label -> colour) fixes each fit's colour; labels it lacks take the default cycle.
    """
    ax = ax or plt.gca()
    colors = colors or {}
    x = np.linspace(-8, 8, 801) if x is None else x
    xt = torch.as_tensor(x, dtype=torch.float64)
    ax.fill_between(x, mixture.log_pdf(xt).exp().numpy(), color=TARGET_COLOR, label="P (two modes)")
    peak = float(mixture.log_pdf(xt).exp().max())
    for label, (mu, sigma) in fits.items():
        mu_t, sigma_t = (
            torch.tensor(mu, dtype=torch.float64),
            torch.tensor(sigma, dtype=torch.float64),
        )
        q = normal_log_pdf(xt, mu_t, sigma_t).exp().numpy()
        peak = max(peak, float(q.max()))
        ax.plot(x, q, lw=2, color=colors.get(label), label=f"{label}: μ={mu:.2f}, σ={sigma:.2f}")
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
    colors: Mapping[str, object] | None = None,
    linestyles: Mapping[str, str] | None = None,
) -> Axes:
    """Contours of a KL (nats) over (μ, σ), values shaped (len(sigmas), len(mus)), with paths.

    The contours are grey (light = small KL), so colour is left to the paths: ``colors`` and
    ``linestyles`` (label -> style) fix a path's look, by default one colour per path. Each path
    is a (steps+1, 2) tensor of (μ, σ); its start is a circle and its end a star, drawn on top of
    everything and smaller for each later path, so paths that end together stay visible. The
    legend sits below the axes, off the contours.
    """
    ax = ax or plt.gca()
    colors, linestyles = colors or {}, linestyles or {}
    levels = np.quantile(values.numpy(), np.linspace(0.0, 0.9, 16))
    cs = ax.contourf(
        mus.numpy(), sigmas.numpy(), values.numpy(), levels=levels, cmap="Greys", extend="max"
    )
    plt.colorbar(cs, ax=ax, label="KL (nats)")
    defaults = ["tab:red", "tab:orange", "tab:purple", "k"]
    for i, (label, path) in enumerate(paths.items()):
        color = colors.get(label, defaults[i % len(defaults)])
        p = path.numpy()
        ax.plot(p[:, 0], p[:, 1], color=color, lw=2, ls=linestyles.get(label, "-"), label=label)
        ax.plot(p[0, 0], p[0, 1], "o", color=color, ms=6, mec="k", zorder=5)
        ax.plot(p[-1, 0], p[-1, 1], "*", color=color, ms=max(16 - 5 * i, 6), mec="k", zorder=5)
    ax.set(xlabel="μ (mean of Q)", ylabel="σ (std of Q)", title=title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    return ax


def plot_discrete_fits(
    p: torch.Tensor,
    fits: Mapping[str, torch.Tensor],
    ax: Axes | None = None,
    colors: Mapping[str, object] | None = None,
) -> Axes:
    """Grouped bars: the target table P and each fitted softmax Q (label -> probabilities).

    ``colors`` (label -> colour) fixes each fit's colour; labels it lacks take the default cycle.
    ``p`` and each fit are 1-D of one length (tensors, arrays or lists; ValueError otherwise).
    """
    p = np.asarray(torch.as_tensor(p, dtype=torch.float64).detach().cpu())
    tables = {k: np.asarray(torch.as_tensor(q, dtype=torch.float64).detach().cpu())
              for k, q in fits.items()}  # fmt: skip
    for name, q in {"p": p, **tables}.items():
        if q.ndim != 1 or q.shape != p.shape:
            raise ValueError(f"{name} must be 1-D like p {p.shape}, got shape {q.shape}")
    ax = ax or plt.gca()
    colors = colors or {}
    k = np.arange(p.shape[-1])
    width = 0.8 / (len(fits) + 1)
    ax.bar(k - 0.4 + width / 2, p, width, color=TARGET_COLOR, label="P (two modes)")
    for i, (label, q) in enumerate(tables.items(), start=1):
        ax.bar(k - 0.4 + width * (i + 0.5), q, width, color=colors.get(label), label=label)
    ax.set(xlabel="class k", ylabel="probability", title="Softmax Q fitted to a two-mode P")
    ax.set_xticks(k)
    top = max(float(p.max()), *(float(q.max()) for q in tables.values()))
    ax.set_ylim(0, 1.35 * top)  # headroom: the legend sits above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return ax
