"""Variational inference on a conjugate Gaussian model, in nats.

Model: z ~ N(μ0, σ0²), x_i | z ~ N(z, σ²) i.i.d. for i = 1..n. The posterior p(z|x) is Gaussian,
log p(x) is exact, and for a Gaussian q(z) = N(m, s²) the ELBO is a closed form with
ELBO(q) = log p(x) − KL(q‖p(z|x)) (expectation under q). Introduced in notebook 05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kl_helpers._validate import as_float_tensor, check_positive
from kl_helpers.theory.gaussian import kl_normal

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianModel:
    """Prior N(prior_mean, prior_std²) on z; each observation x_i ~ N(z, noise_std²)."""

    prior_mean: float = 0.0
    prior_std: float = 2.0
    noise_std: float = 1.0

    def __post_init__(self) -> None:
        if not (self.prior_std > 0 and self.noise_std > 0):
            raise ValueError(
                f"prior_std and noise_std must be > 0, got {self.prior_std}, {self.noise_std}"
            )


def _data(x: object) -> torch.Tensor:
    x = as_float_tensor(x)
    if x.ndim != 1 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty 1-D tensor of observations, got {tuple(x.shape)}")
    return x


def posterior(model: GaussianModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior p(z|x) = N(mean, std²): precisions add, means average by precision.

    Finite for any σ0, σ > 0: where a precision overflows float64 (σ0 or σ below ~1e-154, the
    limits σ → 0), the weights are taken in log space (σ → 0 gives the data mean, σ0 → 0 the
    prior mean)."""
    x = _data(x)
    precision = 1 / model.prior_std**2 + x.numel() / model.noise_std**2
    mean = (model.prior_mean / model.prior_std**2 + x.sum() / model.noise_std**2) / precision
    if math.isfinite(precision) and torch.isfinite(mean):
        return mean, torch.as_tensor(precision, dtype=x.dtype).rsqrt()
    log_a = -2 * math.log(model.prior_std)  # log prior precision
    log_b = math.log(x.numel()) - 2 * math.log(model.noise_std)  # log data precision
    w_prior = torch.sigmoid(torch.tensor(log_a - log_b, dtype=x.dtype))
    w_data = torch.sigmoid(torch.tensor(log_b - log_a, dtype=x.dtype))
    mean = w_prior * model.prior_mean + w_data * (x.sum() / x.numel())
    top = max(log_a, log_b)
    log_precision = top + math.log1p(math.exp(min(log_a, log_b) - top))  # float64 logaddexp
    return mean, torch.tensor(math.exp(-0.5 * log_precision), dtype=x.dtype)


def log_joint(model: GaussianModel, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) = log p(z) + Σ log p(x_i|z) for each entry of ``z``, in nats."""
    x, z = _data(x), as_float_tensor(z)
    log_prior = -0.5 * (LOG_2PI + 2 * math.log(model.prior_std)) - (z - model.prior_mean) ** 2 / (
        2 * model.prior_std**2
    )
    sq = ((x - z.unsqueeze(-1)) ** 2).sum(dim=-1)
    log_lik = -0.5 * x.numel() * (LOG_2PI + 2 * math.log(model.noise_std)) - sq / (
        2 * model.noise_std**2
    )
    return log_prior + log_lik


def log_evidence(model: GaussianModel, x: torch.Tensor) -> torch.Tensor:
    """Exact log p(x) = log p(x, z) − log p(z|x), the same at any z (here the posterior mean)."""
    mean, std = posterior(model, x)
    log_post_at_mean = -0.5 * LOG_2PI - torch.log(std)
    return log_joint(model, x, mean) - log_post_at_mean


def elbo(
    model: GaussianModel, x: torch.Tensor, q_mean: torch.Tensor, q_std: torch.Tensor
) -> torch.Tensor:
    """ELBO(q) = E_q[log p(x, z)] + H(q) for q = N(q_mean, q_std²), closed form, in nats.

    Differentiable in ``q_mean`` and ``q_std`` (which must be > 0); broadcasts over them.
    """
    x = _data(x)
    q_mean, q_std = as_float_tensor(q_mean, like=x), as_float_tensor(q_std, like=x)
    check_positive(q_std, "q_std")
    n, var = x.numel(), q_std**2
    e_log_prior = -0.5 * (LOG_2PI + 2 * math.log(model.prior_std)) - (
        (q_mean - model.prior_mean) ** 2 + var
    ) / (2 * model.prior_std**2)
    sq = ((x - q_mean.unsqueeze(-1)) ** 2).sum(dim=-1)
    e_log_lik = -0.5 * n * (LOG_2PI + 2 * math.log(model.noise_std)) - (sq + n * var) / (
        2 * model.noise_std**2
    )
    entropy_q = 0.5 * (LOG_2PI + 1) + torch.log(q_std)
    return e_log_prior + e_log_lik + entropy_q


def kl_to_posterior(
    model: GaussianModel, x: torch.Tensor, q_mean: torch.Tensor, q_std: torch.Tensor
) -> torch.Tensor:
    """KL(q‖p(z|x)) for q = N(q_mean, q_std²), expectation under q, in nats."""
    mean, std = posterior(model, x)
    return kl_normal(q_mean, q_std, mean, std)


@dataclass(frozen=True)
class ElboFit:
    """ELBO maximisation result: histories per step and the final q = N(mean, std²)."""

    elbo: torch.Tensor  # (steps,) ELBO before each update, nats
    mean: torch.Tensor  # (steps + 1,) q's mean along the path
    std: torch.Tensor  # (steps + 1,) q's standard deviation along the path


def fit_elbo(
    model: GaussianModel,
    x: torch.Tensor,
    init_mean: float = 0.0,
    init_std: float = 1.0,
    steps: int = 300,
    step_size: float = 0.1,
) -> ElboFit:
    """Maximise the ELBO over (m, log s) by plain gradient ascent; returns the path.

    Steps are ``step_size`` times 1/curvature at the optimum: 1/precision for m, ½ for log s
    (``step_size`` = 1 would jump there at once; in (0, 2) it converges geometrically).
    """
    x = _data(x)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if init_std <= 0:
        raise ValueError(f"init_std must be > 0, got {init_std}")
    if not 0 < step_size < 2:
        raise ValueError(f"step_size must be in (0, 2), got {step_size}")
    _, post_std = posterior(model, x)
    lr_mean, lr_log_std = step_size * float(post_std**2), step_size * 0.5
    m = torch.tensor(float(init_mean), dtype=x.dtype, requires_grad=True)
    log_s = torch.tensor(math.log(init_std), dtype=x.dtype, requires_grad=True)
    history = torch.empty(steps, dtype=x.dtype)
    means, stds = [m.detach().clone()], [log_s.detach().exp()]
    for step in range(steps):
        value = elbo(model, x, m, log_s.exp())
        history[step] = value.detach()
        g_m, g_s = torch.autograd.grad(value, (m, log_s))
        with torch.no_grad():
            m += lr_mean * g_m
            log_s += lr_log_std * g_s
        means.append(m.detach().clone())
        stds.append(log_s.detach().exp())
    return ElboFit(elbo=history, mean=torch.stack(means), std=torch.stack(stds))
