"""KL between univariate Gaussians: closed form and numerical integration, in nats.

Introduced in notebook 02 (the article's worked example P = N(1, 2²), Q = N(μ, 1)).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, stats

from kl_helpers._validate import as_float_tensor, check_positive, real

_SERIES_AT = 0.1  # |u| below which e^u − 1 − u is summed as its Taylor series (no cancellation)
_SERIES_TERMS = 16  # u^k/k! for k = 2..17: the tail is below 1e-17 relative at |u| = 0.1


def _expm1_minus(u: torch.Tensor) -> torch.Tensor:
    """e^u − 1 − u to full relative precision, also for |u| ≪ 1 where it is ≈ u²/2."""
    small = u.abs() < _SERIES_AT
    us = torch.where(small, u, torch.zeros_like(u))
    series = torch.zeros_like(u)
    for k in range(_SERIES_TERMS + 1, 1, -1):  # Horner: u²(1/2! + u(1/3! + u(...)))
        series = series * us + 1.0 / math.factorial(k)
    series = series * us * us
    return torch.where(small, series, torch.expm1(u) - u)


def _check_finite(value: torch.Tensor, name: str) -> None:
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got {value.tolist()}")


def kl_normal(
    mu_p: torch.Tensor | float,
    sigma_p: torch.Tensor | float,
    mu_q: torch.Tensor | float,
    sigma_q: torch.Tensor | float,
) -> torch.Tensor:
    """KL(N(μp, σp²)‖N(μq, σq²)) = log(σq/σp) + (σp² + (μp−μq)²)/(2σq²) − ½, in nats.

    Arguments broadcast; σ are standard deviations (not variances) and must be > 0 and finite, μ
    finite (ValueError otherwise). Computed from the ratios σp/σq and (μp−μq)/σq, so σ² may
    overflow or underflow the dtype (σ = 1e±200 in float64, 1e±30 in float32) and a KL near 0 keeps
    its relative precision: ½·(e^u − 1 − u) + ½·((μp−μq)/σq)² with u = 2·log(σp/σq).
    """
    mu_p, sigma_p, mu_q, sigma_q = (as_float_tensor(v) for v in (mu_p, sigma_p, mu_q, sigma_q))
    check_positive(sigma_p, "sigma_p")
    check_positive(sigma_q, "sigma_q")
    for value, name in ((mu_p, "mu_p"), (sigma_p, "sigma_p"), (mu_q, "mu_q"), (sigma_q, "sigma_q")):
        _check_finite(value, name)
    u = 2 * (torch.log(sigma_p) - torch.log(sigma_q))
    shift = (mu_p - mu_q) / sigma_q
    return 0.5 * _expm1_minus(u) + 0.5 * shift**2


def _scalar(value: object, name: str, positive: bool = False) -> float:
    """``value`` as one finite float (> 0 if ``positive``); ValueError naming it otherwise."""
    value = real(value, name)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {'> 0 and ' if positive else ''}finite, got {value}")
    return value


def kl_normal_numeric(mu_p: float, sigma_p: float, mu_q: float, sigma_q: float) -> float:
    """KL(P‖Q) for two normals by adaptive quadrature of p(x)·log(p(x)/q(x)), in nats.

    Each argument is one finite number (σ > 0); ValueError otherwise. The integral is taken over
    z = (x − μp)/σp in [−40, 40], with μp − μq formed once, so a shift that is small beside |μ|
    (μ = 1e20 and 1e20 + 1e5) is not lost to the rounding of x; quadrature's absolute error is
    about 1e-10 nats, so a KL near 0 is 0 only to that precision.
    """
    mu_p, mu_q = _scalar(mu_p, "mu_p"), _scalar(mu_q, "mu_q")
    sigma_p = _scalar(sigma_p, "sigma_p", positive=True)
    sigma_q = _scalar(sigma_q, "sigma_q", positive=True)
    ratio, shift = sigma_p / sigma_q, (mu_p - mu_q) / sigma_q
    log_ratio = math.log(sigma_q) - math.log(sigma_p)

    def integrand(z: float) -> float:
        # log p(x) − log q(x) at x = μp + σp·z, with x never formed
        log_pq = log_ratio - 0.5 * z * z + 0.5 * (ratio * z + shift) ** 2
        return math.exp(stats.norm.logpdf(z)) * log_pq

    points = [0.0]
    z_q = -shift / ratio  # where x = μq, the mode of q
    if math.isfinite(z_q) and -40 < z_q < 40:
        points.append(z_q)
    value, _ = integrate.quad(integrand, -40.0, 40.0, points=points, limit=200)
    return float(value)


def normal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Density of N(μ, σ²) at ``x`` (per unit of x); μ one finite number and σ one finite number
    > 0 (ValueError otherwise); ``x`` anything NumPy reads as an array of reals."""
    mu = _scalar(mu, "mu")
    sigma = _scalar(sigma, "sigma", positive=True)
    return stats.norm(mu, sigma).pdf(np.asarray(x, dtype=np.float64))
