"""Figures for notebooks 01-02: PMF pairs, Gaussian pairs with their KL, KL over (μ, σ)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes

from kl_helpers.plotting import COLORS, get_ax
from kl_helpers.theory.gaussian import kl_normal, normal_pdf


def plot_pmf_pair(
    p: Sequence[float],
    q: Sequence[float],
    outcomes: Sequence[str] | None = None,
    ax: Axes | None = None,
    labels: tuple[str, str] = ("P", "Q"),
) -> Axes:
    """Side-by-side bars of two probability mass functions over the same outcomes."""
    ax = get_ax(ax)
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    x = np.arange(len(p))
    ax.bar(x - 0.2, p, width=0.4, color=COLORS["p"], label=labels[0])
    ax.bar(x + 0.2, q, width=0.4, color=COLORS["q"], label=labels[1])
    ax.set_xticks(x, outcomes if outcomes is not None else [str(i) for i in x])
    ax.set_xlabel("outcome x")
    ax.set_ylabel("probability")
    ax.legend()
    return ax


def plot_gaussian_pair(
    mu_q: float,
    sigma_q: float = 1.0,
    mu_p: float = 1.0,
    sigma_p: float = 2.0,
    ax: Axes | None = None,
    xlim: tuple[float, float] = (-7.0, 11.0),
    legend: bool = True,
) -> Axes:
    """Densities of P = N(μp, σp²) and Q = N(μq, σq²) with KL(P‖Q) in nats in the corner."""
    ax = get_ax(ax)
    x = np.linspace(*xlim, 600)
    ax.plot(
        x,
        normal_pdf(x, mu_p, sigma_p),
        color=COLORS["p"],
        lw=2,
        label=f"P = N({mu_p:g}, {sigma_p:g}²)",
    )
    ax.plot(
        x,
        normal_pdf(x, mu_q, sigma_q),
        color=COLORS["q"],
        lw=2,
        label=f"Q = N({mu_q:g}, {sigma_q:g}²)",
    )
    ax.fill_between(x, normal_pdf(x, mu_q, sigma_q), color=COLORS["q"], alpha=0.15)
    kl = kl_normal(mu_p, sigma_p, mu_q, sigma_q).item()
    peak = max(float(normal_pdf(mu_p, mu_p, sigma_p)), float(normal_pdf(mu_q, mu_q, sigma_q)))
    ax.set_ylim(0, 1.35 * peak)  # headroom: the KL text sits above both curves
    ax.text(0.02, 0.96, f"KL(P‖Q) = {kl:.4f} nats", transform=ax.transAxes, va="top", fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    if legend:
        ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_kl_vs_mu(
    mus: np.ndarray,
    mu_p: float = 1.0,
    sigma_p: float = 2.0,
    sigma_q: float = 1.0,
    marks: Sequence[float] = (),
    ax: Axes | None = None,
) -> Axes:
    """KL(N(μp, σp²)‖N(μ, σq²)) in nats as μ moves, with chosen μ values marked."""
    ax = get_ax(ax)
    values = kl_normal(mu_p, sigma_p, torch.as_tensor(mus, dtype=torch.float64), sigma_q).numpy()
    ax.plot(mus, values, color=COLORS["q"], lw=2)
    for m in marks:
        v = kl_normal(mu_p, sigma_p, m, sigma_q).item()
        ax.plot([m], [v], "o", color=COLORS["p"])
        ax.annotate(f"μ={m:g}: {v:.4f}", (m, v), textcoords="offset points", xytext=(6, -12))
    ax.set_xlabel("mean μ of Q")
    ax.set_ylabel("KL(P‖Q) [nats]")
    return ax


def plot_kl_heatmap(
    mus: np.ndarray,
    sigmas: np.ndarray,
    mu_p: float = 1.0,
    sigma_p: float = 2.0,
    ax: Axes | None = None,
) -> Axes:
    """KL(P‖N(μ, σ²)) in nats over a (μ, σ) grid, log-coloured, with its minimum marked."""
    from matplotlib.colors import LogNorm

    ax = get_ax(ax)
    mu_grid, sigma_grid = np.meshgrid(mus, sigmas)
    kl = kl_normal(mu_p, sigma_p, torch.as_tensor(mu_grid), torch.as_tensor(sigma_grid)).numpy()
    mesh = ax.pcolormesh(
        mus, sigmas, np.maximum(kl, 1e-3), norm=LogNorm(), cmap="viridis", shading="auto"
    )
    ax.figure.colorbar(mesh, ax=ax, label="KL(P‖Q) [nats]")
    ax.plot([mu_p], [sigma_p], "*", color="white", ms=14, label="minimum: Q = P")
    ax.set_xlabel("mean μ of Q")
    ax.set_ylabel("standard deviation σ of Q")
    ax.legend(loc="upper right", fontsize=8)
    return ax
