"""Bregman and Jensen divergences from convex generators F, in nats where F is an entropy.

B_F(x, y) = F(x) − F(y) − ⟨∇F(y), x − y⟩: the gap at x between F and its tangent at y.
J_F^α(x, y) = αF(x) + (1 − α)F(y) − F(αx + (1 − α)y): the Jensen gap (Burbea–Rao for α = ½).
With F = negative entropy Σ x log x, B_F(P, Q) = KL(P‖Q) on the simplex (the generalised KL
Σ x log(x/y) − x + y on positive vectors), and J_F^½(P, Q) = Jensen–Shannon(P, Q).
With F = logsumexp on logits θ, B_F(θ_p, θ_q) = KL(Q‖P): the reverse KL is a Bregman divergence
in the natural (logit) coordinates. Introduced in notebook 04.

The built-in generators evaluate B_F coordinate by coordinate in a form that does not cancel
(½(x − y)², y·φ((x − y)/y) with series for small ratios, a centred form of KL for logits), so a
divergence near 0 or between large vectors keeps its relative precision; F(x) − F(y) − ⟨∇F(y),
x − y⟩ as written loses everything there (½‖x − y‖² = 7169 for 1 at x ≈ 2e10). Jensen gaps are
α·B_F(x, m) + (1 − α)·B_F(y, m) with m = αx + (1 − α)y, the same identity. A generator given
without ``divergence`` falls back to the formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kl_helpers._validate import as_float_tensor, check_same_shape, real


@dataclass(frozen=True)
class BregmanGenerator:
    """A strictly convex F on a domain of vectors (last dim), its gradient, and a domain check."""

    name: str
    F: Callable[[torch.Tensor], torch.Tensor]  # sums over the last dim
    grad: Callable[[torch.Tensor], torch.Tensor]  # same shape as the input
    check: Callable[[torch.Tensor, str], None]  # raises ValueError outside the domain
    formula: str
    # B_F(x, y) over the last dim without cancellation (None: the defining formula)
    divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def _finite(x: torch.Tensor, name: str) -> None:
    if torch.isnan(x).any() or torch.isinf(x).any():
        raise ValueError(f"{name} must be finite (no NaN or inf) for this generator")


def _nonnegative(x: torch.Tensor, name: str) -> None:
    if torch.isnan(x).any() or (x < 0).any() or torch.isinf(x).any():
        raise ValueError(f"{name} must be finite and >= 0 for negative entropy, got {x.tolist()}")


def _positive(x: torch.Tensor, name: str) -> None:
    if torch.isnan(x).any() or (x <= 0).any() or torch.isinf(x).any():
        raise ValueError(f"{name} must be finite and > 0 for Itakura-Saito, got {x.tolist()}")


def _logits(x: torch.Tensor, name: str) -> None:
    if torch.isnan(x).any() or (x == torch.inf).any():
        raise ValueError(f"{name} must be logits: no NaN and no +inf (-inf masks a class)")
    if (x == -torch.inf).all(dim=-1).any():
        raise ValueError(f"{name} has a row whose logits are all -inf")


_SERIES_AT = 0.1  # |u| below which the ratio functions below are summed as series
_TERMS = range(2, 22)  # u^k for k = 2..21: the tail is below 1e-19 relative at |u| = 0.1


def _series(u: torch.Tensor, coefficient: Callable[[int], float]) -> torch.Tensor:
    """Σ_k coefficient(k)·u^k over _TERMS at |u| < _SERIES_AT (0 elsewhere)."""
    small = torch.where(u.abs() < _SERIES_AT, u, torch.zeros_like(u))
    total = torch.zeros_like(u)
    for k in reversed(_TERMS):
        total = (total + coefficient(k)) * small
    return total * small ** (_TERMS[0] - 1)


def _log_ratio(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log(x/y) for x, y > 0: of the ratio where it is a normal float (exact to rounding), else
    log x − log y (x/y over- or underflows)."""
    ratio = x / y
    normal = (ratio > torch.finfo(ratio.dtype).tiny) & torch.isfinite(ratio)
    safe = torch.where(normal, ratio, torch.ones_like(ratio))
    return torch.where(normal, torch.log(safe), torch.log(x) - torch.log(y))


def _squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x - y) ** 2).sum(-1)


def _generalised_kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ x log(x/y) − x + y = Σ y·[(1 + u) log(1 + u) − u], u = (x − y)/y; x = 0 gives y and
    y = 0 < x gives +inf."""
    both = (x > 0) & (y > 0)
    ys = torch.where(both, y, torch.ones_like(y))
    xs = torch.where(both, x, torch.ones_like(x))
    u = (xs - ys) / ys
    near = y * _series(u, lambda k: (-1) ** k / (k * (k - 1)))
    far = xs * _log_ratio(xs, ys) - xs + ys
    inner = torch.where(u.abs() < _SERIES_AT, near, far)
    value = torch.where(both, inner, torch.where(x > 0, torch.full_like(x, math.inf), y))
    return value.sum(-1)


def _itakura_saito(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ x/y − log(x/y) − 1 = Σ u − log(1 + u), u = (x − y)/y."""
    u = (x - y) / y
    near = _series(u, lambda k: (-1) ** k / k)
    far = u - _log_ratio(x, y)
    return torch.where(u.abs() < _SERIES_AT, near, far).sum(-1)


def _reverse_kl_of_logits(theta_p: torch.Tensor, theta_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax θ_q‖softmax θ_p) as a sum of non-negative terms: with d = θ_q − θ_p,
    c = log Σ p·e^d (= log1p(Σ p·expm1(d)) for small d) and t = d − c (so q = p·e^t),
    KL = Σ p·φ(t), φ(t) = 1 − e^t(1 − t) = Σ_{k≥2} (k − 1)t^k/k!; nothing cancels, so a KL near
    0 keeps its relative precision whatever the size of the logits. −inf logits mask classes:
    +inf where q has mass p lacks, φ(−∞) = 1 where p has mass q lacks."""
    log_p = torch.log_softmax(theta_p, dim=-1)
    both = (theta_p > -math.inf) & (theta_q > -math.inf)
    d = torch.where(both, theta_q - theta_p, torch.zeros_like(theta_q))
    p = log_p.exp()
    small = (torch.where(both, d.abs(), torch.zeros_like(d)) < 1).all(-1, keepdim=True)
    d_small = torch.where(small, d, torch.zeros_like(d))
    c_small = torch.log1p(torch.where(both, p * torch.expm1(d_small), -p).sum(-1, keepdim=True))
    c_large = torch.logsumexp(torch.where(both, log_p + d, -math.inf), dim=-1, keepdim=True)
    t = d - torch.where(small, c_small, c_large)
    near = p * _series(t, lambda k: (k - 1) / math.factorial(k))
    t_far = torch.where(t.abs() < _SERIES_AT, torch.zeros_like(t), t)
    far = p + torch.exp(log_p + t_far) * (t_far - 1)
    term = torch.where(t.abs() < _SERIES_AT, near, far)
    term = torch.where(both, term, torch.where(theta_p > -math.inf, p, torch.zeros_like(p)))
    kl = term.sum(-1)
    lacking = ((theta_p == -math.inf) & (theta_q > -math.inf)).any(-1)
    return torch.where(lacking, torch.full_like(kl, math.inf), kl)


def squared_euclidean_generator() -> BregmanGenerator:
    """F(x) = ½‖x‖²: B_F(x, y) = ½‖x − y‖²."""
    return BregmanGenerator(
        "squared_euclidean",
        lambda x: 0.5 * (x**2).sum(-1),
        lambda x: x,
        _finite,
        "½‖x‖²",
        _squared_euclidean,
    )


def negative_entropy_generator() -> BregmanGenerator:
    """F(x) = Σ x log x on x ≥ 0: B_F(x, y) = Σ x log(x/y) − x + y (generalised KL, nats)."""
    return BregmanGenerator(
        "negative_entropy",
        lambda x: torch.special.xlogy(x, x).sum(-1),
        lambda x: torch.log(x) + 1,
        _nonnegative,
        "Σ x log x",
        _generalised_kl,
    )


def burg_entropy_generator() -> BregmanGenerator:
    """F(x) = −Σ log x on x > 0: B_F(x, y) = Σ x/y − log(x/y) − 1 (Itakura–Saito)."""
    return BregmanGenerator(
        "itakura_saito",
        lambda x: -torch.log(x).sum(-1),
        lambda x: -1 / x,
        _positive,
        "−Σ log x",
        _itakura_saito,
    )


def log_partition_generator() -> BregmanGenerator:
    """F(θ) = log Σ exp θ on logits: B_F(θ_p, θ_q) = KL(softmax θ_q‖softmax θ_p), nats."""
    return BregmanGenerator(
        "log_partition",
        lambda x: torch.logsumexp(x, dim=-1),
        lambda x: torch.softmax(x, dim=-1),
        _logits,
        "log Σ exp θ",
        _reverse_kl_of_logits,
    )


# The family as a table: name -> factory.
BREGMAN_GENERATORS: dict[str, Callable[[], BregmanGenerator]] = {
    "squared_euclidean": squared_euclidean_generator,
    "negative_entropy": negative_entropy_generator,
    "itakura_saito": burg_entropy_generator,
    "log_partition": log_partition_generator,
}


def get_bregman_generator(name: str) -> BregmanGenerator:
    """Look up a convex generator by name."""
    if name not in BREGMAN_GENERATORS:
        raise ValueError(
            f"unknown Bregman generator {name!r}; choose from {sorted(BREGMAN_GENERATORS)}"
        )
    return BREGMAN_GENERATORS[name]()


def _prepare(x: object, y: object, gen: BregmanGenerator | str) -> tuple:
    gen = get_bregman_generator(gen) if isinstance(gen, str) else gen
    x = as_float_tensor(x)
    y = as_float_tensor(y, like=x)
    check_same_shape(x, y, ("x", "y"))
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (the coordinates)")
    gen.check(x, "x")
    gen.check(y, "y")
    return x, y, gen


def bregman_divergence(
    x: torch.Tensor, y: torch.Tensor, gen: BregmanGenerator | str
) -> torch.Tensor:
    """B_F(x, y) = F(x) − F(y) − ⟨∇F(y), x − y⟩ over the last dim (tangent taken at y).

    Coordinates where x = y, or where ∇F(y) = 0 and x − y is infinite (a masked logit), add
    nothing to the inner product, so boundary points give inf or a finite value, never NaN.
    """
    x, y, gen = _prepare(x, y, gen)
    if gen.divergence is not None:
        return gen.divergence(x, y)
    g = gen.grad(y)
    diff = x - y
    skip = (x == y) | ((g == 0) & diff.isinf())
    inner = torch.where(
        skip, torch.zeros_like(diff), g * torch.where(skip, torch.ones_like(diff), diff)
    )
    return gen.F(x) - gen.F(y) - inner.sum(-1)


def jensen_divergence(
    x: torch.Tensor, y: torch.Tensor, gen: BregmanGenerator | str, alpha: float = 0.5
) -> torch.Tensor:
    """Skew Jensen gap J_F^α(x, y) = αF(x) + (1 − α)F(y) − F(αx + (1 − α)y), α in (0, 1).

    Evaluated as α·B_F(x, m) + (1 − α)·B_F(y, m), m = αx + (1 − α)y (equal for any F), so it keeps
    its precision wherever B_F does, less the rounding of m: a relative error of about
    1e-16·|x|/(min(α, 1 − α)·|x − y|). ``alpha`` is one real number (ValueError otherwise).
    """
    a = real(alpha, "alpha")
    if not 0 < a < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    x, y, gen = _prepare(x, y, gen)
    if gen.divergence is None:
        return a * gen.F(x) + (1 - a) * gen.F(y) - gen.F(a * x + (1 - a) * y)
    m = a * x + (1 - a) * y
    return a * bregman_divergence(x, m, gen) + (1 - a) * bregman_divergence(y, m, gen)


def jensen_bregman_divergence(
    x: torch.Tensor, y: torch.Tensor, gen: BregmanGenerator | str
) -> torch.Tensor:
    """½B_F(x, m) + ½B_F(y, m) with m = (x + y)/2; equals the Jensen gap J_F^½(x, y)."""
    x, y, gen = _prepare(x, y, gen)
    m = 0.5 * (x + y)
    return 0.5 * bregman_divergence(x, m, gen) + 0.5 * bregman_divergence(y, m, gen)
