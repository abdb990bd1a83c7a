"""KL between univariate Gaussians: closed form and numerical integration, in nats.

Introduced in notebook 02 (the article's worked example P = N(1, 2²), Q = N(μ, 1)).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, stats

from kl_helpers._validate import as_float_tensor, check_positive


def kl_normal(
    mu_p: torch.Tensor | float,
    sigma_p: torch.Tensor | float,
    mu_q: torch.Tensor | float,
    sigma_q: torch.Tensor | float,
) -> torch.Tensor:
    """KL(N(μp, σp²)‖N(μq, σq²)) = log(σq/σp) + (σp² + (μp−μq)²)/(2σq²) − ½, in nats.

    Arguments broadcast; σ are standard deviations (not variances) and must be > 0.
    """
    mu_p, sigma_p, mu_q, sigma_q = (as_float_tensor(v) for v in (mu_p, sigma_p, mu_q, sigma_q))
    check_positive(sigma_p, "sigma_p")
    check_positive(sigma_q, "sigma_q")
    return torch.log(sigma_q / sigma_p) + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2 * sigma_q**2) - 0.5


def kl_normal_numeric(mu_p: float, sigma_p: float, mu_q: float, sigma_q: float) -> float:
    """KL(P‖Q) for two normals by adaptive quadrature of p(x)·log(p(x)/q(x)), in nats."""
    if sigma_p <= 0 or sigma_q <= 0:
        raise ValueError(f"sigma must be > 0, got sigma_p={sigma_p}, sigma_q={sigma_q}")
    p, q = stats.norm(mu_p, sigma_p), stats.norm(mu_q, sigma_q)

    def integrand(x: float) -> float:
        return math.exp(p.logpdf(x)) * (p.logpdf(x) - q.logpdf(x))

    lo, hi = mu_p - 40 * sigma_p, mu_p + 40 * sigma_p
    value, _ = integrate.quad(integrand, lo, hi, points=[mu_p, mu_q], limit=200)
    return float(value)


def normal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Density of N(μ, σ²) at ``x`` (per unit of x)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return stats.norm(mu, sigma).pdf(x)
