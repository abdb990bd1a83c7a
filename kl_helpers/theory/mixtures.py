"""Forward vs reverse KL fits of a unimodal Q to a two-mode P, in nats.

Continuous case: P is a 1-D Gaussian mixture, Q = N(μ, σ²) is fitted by gradient descent on
(μ, log σ); KL between Q and the mixture has no closed form, so it is computed by trapezoidal
quadrature on a fixed grid, in log space (logsumexp), which cannot produce NaN.
Discrete case: P is a table over K classes, Q = softmax(logits(θ)) for a small family of logits.
``forward`` means KL(P‖Q) (expectation under the target P), ``reverse`` means KL(Q‖P)
(expectation under the model Q). Introduced in notebook 03.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from kl_helpers._validate import as_float_tensor, check_positive, check_probabilities
from kl_helpers.divergences import kl_from_logits

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# The two-mode target P
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianMixture:
    """A 1-D Gaussian mixture Σ_k w_k N(μ_k, σ_k²); σ are standard deviations."""

    weights: tuple[float, ...] = (0.4, 0.6)  # mixing weights, sum to 1
    means: tuple[float, ...] = (-3.0, 3.0)  # well separated: 6 standard deviations apart
    sigmas: tuple[float, ...] = (1.0, 1.0)  # component standard deviations

    def __post_init__(self) -> None:
        n = len(self.weights)
        if n == 0 or len(self.means) != n or len(self.sigmas) != n:
            raise ValueError(
                "weights, means and sigmas must be non-empty and of equal length, got "
                f"{len(self.weights)}, {len(self.means)}, {len(self.sigmas)}"
            )
        check_probabilities(torch.tensor(self.weights, dtype=torch.float64), "weights")
        check_positive(torch.tensor(self.sigmas, dtype=torch.float64), "sigmas")

    def log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per unit of x, by logsumexp over the components; same shape as ``x``."""
        x = as_float_tensor(x)
        w, mu, sd = (
            torch.tensor(v, dtype=x.dtype) for v in (self.weights, self.means, self.sigmas)
        )
        z = (x.unsqueeze(-1) - mu) / sd
        comp = -0.5 * z**2 - torch.log(sd) - LOG_SQRT_2PI + torch.log(w)
        return torch.logsumexp(comp, dim=-1)


def normal_log_pdf(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; μ, σ²) per unit of x; arguments broadcast."""
    return -0.5 * ((x - mu) / sigma) ** 2 - torch.log(sigma) - LOG_SQRT_2PI


def moment_match(mixture: GaussianMixture) -> tuple[float, float]:
    """Closed-form argmin of KL(P‖N(μ, σ²)): the mixture's mean and standard deviation."""
    w, mu, sd = (
        torch.tensor(v, dtype=torch.float64)
        for v in (mixture.weights, mixture.means, mixture.sigmas)
    )
    mean = (w * mu).sum()
    var = (w * (sd**2 + mu**2)).sum() - mean**2
    return float(mean), float(var.sqrt())


def quadrature_grid(lo: float = -30.0, hi: float = 30.0, n: int = 3001) -> torch.Tensor:
    """A fixed float64 grid for trapezoidal quadrature (default spacing 0.02)."""
    if not hi > lo or n < 3:
        raise ValueError(f"need hi > lo and n >= 3, got lo={lo}, hi={hi}, n={n}")
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def _kl_on_grid(log_a: torch.Tensor, log_b: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """∫ a (log a − log b) dx by the trapezoid rule over the last dim; 0·log 0 counts as 0."""
    a = log_a.exp()
    integrand = torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a))
    return torch.trapezoid(integrand, grid, dim=-1)


def _gaussian_and_mixture(
    mixture: GaussianMixture, mu: object, sigma: object, grid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grid = quadrature_grid() if grid is None else grid
    mu = as_float_tensor(mu)
    sigma = as_float_tensor(sigma, like=mu)
    check_positive(sigma.detach(), "sigma")
    mu, sigma = torch.broadcast_tensors(mu, sigma)
    log_q = normal_log_pdf(grid, mu.unsqueeze(-1), sigma.unsqueeze(-1))
    log_p = mixture.log_pdf(grid).to(log_q.dtype)
    return log_p, log_q, grid


MASS_TOLERANCE = 1e-3  # how far from 1 the weighting density's mass on the grid may be


def _check_mass(log_w: torch.Tensor, grid: torch.Tensor, what: str) -> None:
    """ValueError unless the density the KL integrates against has mass 1 on the grid (within
    ``MASS_TOLERANCE``): otherwise the trapezoid rule cannot give that KL."""
    mass = torch.trapezoid(log_w.detach().exp(), grid, dim=-1)
    bad = (mass - 1).abs() > MASS_TOLERANCE
    if bad.any():
        raise ValueError(
            f"{what} has mass {float(mass[bad].flatten()[0]):.6g} on the quadrature grid "
            f"[{float(grid[0]):g}, {float(grid[-1]):g}] (step {float(grid[1] - grid[0]):g}), "
            "not 1: "
            "it lies (partly) outside the grid or is narrower than its step; use a grid that "
            f"covers and resolves it ({int(bad.sum())} of {bad.numel()} cases)"
        )


def kl_mixture_to_normal(
    mixture: GaussianMixture, mu: object, sigma: object, grid: torch.Tensor | None = None
) -> torch.Tensor:
    """Forward KL(P‖Q), P the mixture, Q = N(μ, σ²), in nats; μ, σ broadcast (batch of Qs).

    ValueError when the grid does not hold P (its mass on the grid is off 1 by more than
    ``MASS_TOLERANCE``); any μ and σ > 0 are fine (log q is exact)."""
    log_p, log_q, grid = _gaussian_and_mixture(mixture, mu, sigma, grid)
    _check_mass(log_p, grid, "the mixture P")
    return _kl_on_grid(log_p, log_q, grid)


def kl_normal_to_mixture(
    mixture: GaussianMixture, mu: object, sigma: object, grid: torch.Tensor | None = None
) -> torch.Tensor:
    """Reverse KL(Q‖P), Q = N(μ, σ²), P the mixture, in nats; weights are Q's density.

    ValueError when the grid does not hold Q (its mass on the grid is off 1 by more than
    ``MASS_TOLERANCE``): Q outside the grid, or σ below about the grid's step."""
    log_p, log_q, grid = _gaussian_and_mixture(mixture, mu, sigma, grid)
    _check_mass(log_q, grid, "Q = N(μ, σ²)")
    return _kl_on_grid(log_q, log_p, grid)


# "forward" minimises KL(P‖Q) (mass-covering), "reverse" minimises KL(Q‖P) (mode-seeking).
CONTINUOUS_OBJECTIVES: dict[str, Callable[..., torch.Tensor]] = {
    "forward": kl_mixture_to_normal,
    "reverse": kl_normal_to_mixture,
}

# The same directions as (weight, other) log-density pairs, for the fit's inner loop.
_ORDER: dict[str, Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "forward": lambda log_p, log_q: (log_p, log_q),
    "reverse": lambda log_p, log_q: (log_q, log_p),
}

# Optimisers: full-batch and deterministic given the start.
OPTIMISERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}


@dataclass(frozen=True)
class FitConfig:
    """How a fit runs: objective direction, optimiser, step size and number of steps."""

    direction: str = "forward"  # "forward" = KL(P‖Q), "reverse" = KL(Q‖P)
    optimiser: str = "adam"  # key of OPTIMISERS; Adam copes with the very different scales
    lr: float = 0.1  # step size in (μ, log σ) units
    steps: int = 500  # full-batch steps; the path keeps steps + 1 points


@dataclass
class FitResult:
    """A fit's optimisation path: params (steps+1, n_params) and the objective in nats."""

    params: torch.Tensor
    losses: torch.Tensor
    config: FitConfig
    names: tuple[str, ...] = field(default=("mu", "sigma"))

    @property
    def final(self) -> dict[str, float]:
        """The last point of the path, by parameter name."""
        return {n: float(v) for n, v in zip(self.names, self.params[-1], strict=True)}


def _check_config(config: FitConfig, directions: dict) -> None:
    if config.direction not in directions:
        raise ValueError(
            f"unknown direction {config.direction!r}; choose from {sorted(directions)}"
        )
    if config.optimiser not in OPTIMISERS:
        raise ValueError(
            f"unknown optimiser {config.optimiser!r}; choose from {sorted(OPTIMISERS)}"
        )
    if config.steps < 1 or config.lr <= 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={config.steps}, lr={config.lr}")


def _descend(
    theta: torch.Tensor,
    objective: Callable[[torch.Tensor], torch.Tensor],
    to_params: Callable[[torch.Tensor], torch.Tensor],
    config: FitConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run full-batch descent on ``theta``; return the stacked params and losses per step."""
    theta = theta.clone().requires_grad_(True)
    opt = OPTIMISERS[config.optimiser]([theta], lr=config.lr)
    params, losses = [], []
    for step in range(config.steps + 1):
        loss = objective(theta)
        if not torch.isfinite(loss):
            raise ValueError(
                f"the objective is {loss.item()} at step {step}: a KL direction that puts weight "
                "where the other distribution is 0 cannot be descended"
            )
        params.append(to_params(theta.detach()))
        losses.append(loss.detach())
        if step == config.steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.stack(params), torch.stack(losses)


def fit_gaussian(
    mixture: GaussianMixture,
    start: tuple[float, float],
    config: FitConfig = FitConfig(),
    grid: torch.Tensor | None = None,
) -> FitResult:
    """Fit N(μ, σ²) to the mixture from ``start`` = (μ0, σ0) by descent on (μ, log σ).

    ``config.direction`` picks KL(P‖Q) ("forward") or KL(Q‖P) ("reverse"); the returned path
    holds (μ, σ) after every step. Deterministic: no sampling, float64 throughout.
    """
    _check_config(config, CONTINUOUS_OBJECTIVES)
    mu0, sigma0 = start
    if not sigma0 > 0:
        raise ValueError(f"start sigma must be > 0, got {sigma0}")
    grid = quadrature_grid() if grid is None else grid
    log_p = mixture.log_pdf(grid)  # fixed target: computed once, not at every step
    order = _ORDER[config.direction]
    theta0 = torch.tensor([mu0, math.log(sigma0)], dtype=torch.float64)

    def objective(t: torch.Tensor) -> torch.Tensor:
        log_q = normal_log_pdf(grid, t[0], t[1].exp())
        return _kl_on_grid(*order(log_p, log_q), grid)

    def to_params(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[0], t[1].exp()])

    params, losses = _descend(theta0, objective, to_params, config)
    return FitResult(params=params, losses=losses, config=config)


def kl_landscape(
    mixture: GaussianMixture,
    direction: str,
    mus: torch.Tensor,
    sigmas: torch.Tensor,
    grid: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL in ``direction`` on the (σ, μ) mesh: shape (len(sigmas), len(mus)), in nats."""
    if direction not in CONTINUOUS_OBJECTIVES:
        raise ValueError(
            f"unknown direction {direction!r}; choose from {sorted(CONTINUOUS_OBJECTIVES)}"
        )
    s, m = torch.meshgrid(as_float_tensor(sigmas), as_float_tensor(mus), indexing="ij")
    return CONTINUOUS_OBJECTIVES[direction](mixture, m, s, grid)


# --------------------------------------------------------------------------------------------
# The discrete contrast: a softmax over K classes
# --------------------------------------------------------------------------------------------
def unimodal_logits(theta: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Logits −(k − c)²/(2 s²) for classes k = 0..K−1, θ = (c, log s): one-peaked softmax."""
    k = torch.arange(n_classes, dtype=theta.dtype)
    return -0.5 * ((k - theta[0]) / theta[1].exp()) ** 2


def free_logits(theta: torch.Tensor, n_classes: int) -> torch.Tensor:
    """θ are the K logits themselves: the softmax can be any full-support distribution.
    ValueError unless θ's last dimension has K entries (a 0-d θ included)."""
    if theta.ndim == 0:
        raise ValueError(f"free logits need {n_classes} parameters, got a 0-d theta")
    if theta.shape[-1] != n_classes:
        raise ValueError(f"free logits need {n_classes} parameters, got {theta.shape[-1]}")
    return theta


# Families of Q = softmax(logits(θ)).
DISCRETE_FAMILIES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "unimodal": unimodal_logits,
    "free": free_logits,
}

# kl_from_logits(a, b) = KL(softmax a‖softmax b): forward puts P first, reverse puts Q first.
DISCRETE_OBJECTIVES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "forward": lambda p_logits, q_logits: kl_from_logits(p_logits, q_logits),
    "reverse": lambda p_logits, q_logits: kl_from_logits(q_logits, p_logits),
}


def fit_softmax(
    p: torch.Tensor,
    start: torch.Tensor | tuple[float, ...],
    family: str = "unimodal",
    config: FitConfig = FitConfig(),
) -> FitResult:
    """Fit Q = softmax(family(θ)) to the table ``p`` (K,) from θ = ``start``.

    Minimises KL(P‖Q) ("forward") or KL(Q‖P) ("reverse") in nats. Zeros in ``p`` are allowed
    (log p = −inf); the reverse KL is then +inf for any full-support Q. The path holds the
    class probabilities of Q after every step, shape (steps + 1, K).
    """
    _check_config(config, DISCRETE_OBJECTIVES)
    if family not in DISCRETE_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(DISCRETE_FAMILIES)}")
    p = as_float_tensor(p)
    if p.ndim != 1:
        raise ValueError(
            f"p must be one table of K class probabilities, got shape {tuple(p.shape)}"
        )
    check_probabilities(p, "p")
    n = p.shape[0]
    logits_of = DISCRETE_FAMILIES[family]
    objective = DISCRETE_OBJECTIVES[config.direction]
    p_logits = torch.log(p)  # -inf where p = 0; kl_from_logits handles it
    theta0 = torch.as_tensor(start, dtype=torch.float64)
    logits_of(theta0, n)  # validates the parameter count

    def to_params(t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits_of(t, n), dim=-1)

    params, losses = _descend(
        theta0, lambda t: objective(p_logits, logits_of(t, n)), to_params, config
    )
    names = tuple(f"q{k}" for k in range(n))
    return FitResult(params=params, losses=losses, config=config, names=names)
