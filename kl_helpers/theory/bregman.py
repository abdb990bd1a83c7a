"""Bregman and Jensen divergences from convex generators F, in nats where F is an entropy.

B_F(x, y) = F(x) − F(y) − ⟨∇F(y), x − y⟩: the gap at x between F and its tangent at y.
J_F^α(x, y) = αF(x) + (1 − α)F(y) − F(αx + (1 − α)y): the Jensen gap (Burbea–Rao for α = ½).
With F = negative entropy Σ x log x, B_F(P, Q) = KL(P‖Q) on the simplex (the generalised KL
Σ x log(x/y) − x + y on positive vectors), and J_F^½(P, Q) = Jensen–Shannon(P, Q).
With F = logsumexp on logits θ, B_F(θ_p, θ_q) = KL(Q‖P): the reverse KL is a Bregman divergence
in the natural (logit) coordinates. Introduced in notebook 04.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kl_helpers._validate import as_float_tensor, check_same_shape


@dataclass(frozen=True)
class BregmanGenerator:
    """A strictly convex F on a domain of vectors (last dim), its gradient, and a domain check."""

    name: str
    F: Callable[[torch.Tensor], torch.Tensor]  # sums over the last dim
    grad: Callable[[torch.Tensor], torch.Tensor]  # same shape as the input
    check: Callable[[torch.Tensor, str], None]  # raises ValueError outside the domain
    formula: str


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


def squared_euclidean_generator() -> BregmanGenerator:
    """F(x) = ½‖x‖²: B_F(x, y) = ½‖x − y‖²."""
    return BregmanGenerator(
        "squared_euclidean", lambda x: 0.5 * (x**2).sum(-1), lambda x: x, _finite, "½‖x‖²"
    )


def negative_entropy_generator() -> BregmanGenerator:
    """F(x) = Σ x log x on x ≥ 0: B_F(x, y) = Σ x log(x/y) − x + y (generalised KL, nats)."""
    return BregmanGenerator(
        "negative_entropy",
        lambda x: torch.special.xlogy(x, x).sum(-1),
        lambda x: torch.log(x) + 1,
        _nonnegative,
        "Σ x log x",
    )


def burg_entropy_generator() -> BregmanGenerator:
    """F(x) = −Σ log x on x > 0: B_F(x, y) = Σ x/y − log(x/y) − 1 (Itakura–Saito)."""
    return BregmanGenerator(
        "itakura_saito",
        lambda x: -torch.log(x).sum(-1),
        lambda x: -1 / x,
        _positive,
        "−Σ log x",
    )


def log_partition_generator() -> BregmanGenerator:
    """F(θ) = log Σ exp θ on logits: B_F(θ_p, θ_q) = KL(softmax θ_q‖softmax θ_p), nats."""
    return BregmanGenerator(
        "log_partition",
        lambda x: torch.logsumexp(x, dim=-1),
        lambda x: torch.softmax(x, dim=-1),
        _logits,
        "log Σ exp θ",
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
    """Skew Jensen gap J_F^α(x, y) = αF(x) + (1 − α)F(y) − F(αx + (1 − α)y), α in (0, 1)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    x, y, gen = _prepare(x, y, gen)
    return alpha * gen.F(x) + (1 - alpha) * gen.F(y) - gen.F(alpha * x + (1 - alpha) * y)


def jensen_bregman_divergence(
    x: torch.Tensor, y: torch.Tensor, gen: BregmanGenerator | str
) -> torch.Tensor:
    """½B_F(x, m) + ½B_F(y, m) with m = (x + y)/2; equals the Jensen gap J_F^½(x, y)."""
    x, y, gen = _prepare(x, y, gen)
    m = 0.5 * (x + y)
    return 0.5 * bregman_divergence(x, m, gen) + 0.5 * bregman_divergence(y, m, gen)
