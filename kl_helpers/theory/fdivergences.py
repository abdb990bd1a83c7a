"""Csiszár f-divergences: a table of convex generators and one function that evaluates any of them.

Two conventions are in use, and they swap the roles of P and Q:

* ``D_f(P‖Q) = Σ q f(p/q)`` — Csiszár's / Ali–Silvey's, used by most ML texts. With it,
  f(x) = x log x gives KL(P‖Q) and f(x) = −log x gives KL(Q‖P).
* ``I_f(p:q) = Σ p f(q/p)`` — the one in Nielsen's "Elementary introduction to information
  geometry" (the article's source for Figure C). With it, f(x) = −log x gives KL(P‖Q) and
  f(x) = x log x gives KL(Q‖P). Note I_f(p:q) = D_f(Q‖P).

Zeros follow the usual limits: 0·f(0/0) = 0; q f(p/q) at q = 0 < p is p·f'(∞) with
f'(∞) = lim f(x)/x; at p = 0 < q it is q·f(0⁺). Results are +inf exactly where the limit is.
Where both are > 0 the built-in generators evaluate the perspective q f(p/q) from p and q directly
(p log(p/q) for KL, (p − q)²/q for χ², ...), so a ratio p/q that overflows float64 (q = 5e-324)
still gives the finite value; a generator given only as f falls back to q·f(p/q).
All values in nats. Introduced in notebook 04.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kl_helpers._validate import probability_pair, real

INF = math.inf


@dataclass(frozen=True)
class FGenerator:
    """A convex f on (0, ∞) with f(1) = 0, plus its two boundary limits f(0⁺) and f'(∞)."""

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]  # elementwise, for x > 0
    f_at_zero: float  # lim_{x→0⁺} f(x): the weight of q where p = 0 (under D_f)
    slope_at_inf: float  # lim_{x→∞} f(x)/x: the weight of p where q = 0 (under D_f)
    formula: str  # f(x) in words, for tables
    # q·f(p/q) from p, q > 0 without forming p/q (None: q·f(p/q) is used)
    perspective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def weighted(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """q·f(p/q) elementwise for p, q > 0."""
        if self.perspective is not None:
            return self.perspective(p, q)
        return q * self.f(p / q)


def _kl_f(x: torch.Tensor) -> torch.Tensor:
    return torch.special.xlogy(x, x)


def _reverse_kl_f(x: torch.Tensor) -> torch.Tensor:
    return -torch.log(x)


def _js_f(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.special.xlogy(x, x) - torch.special.xlogy(x + 1, (x + 1) / 2))


def _hellinger_f(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.sqrt(x) - 1) ** 2


def _tv_f(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x - 1).abs()


def _chi2_f(x: torch.Tensor) -> torch.Tensor:
    return (x - 1) ** 2


def _log_ratio(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """log(p/q) for p, q > 0: of the ratio where it is a normal float (p = 1e-300, q = 2e-300:
    log p − log q would be off by 1e-13), else log p − log q (p/q over- or underflows)."""
    ratio = p / q
    normal = (ratio > torch.finfo(ratio.dtype).tiny) & torch.isfinite(ratio)
    safe = torch.where(normal, ratio, torch.ones_like(ratio))
    return torch.where(normal, torch.log(safe), torch.log(p) - torch.log(q))


def kl_generator() -> FGenerator:
    """f(x) = x log x: D_f(P‖Q) = KL(P‖Q) (and I_f(p:q) = KL(Q‖P))."""
    return FGenerator("kl", _kl_f, 0.0, INF, "x log x", lambda p, q: p * _log_ratio(p, q))


def reverse_kl_generator() -> FGenerator:
    """f(x) = −log x: D_f(P‖Q) = KL(Q‖P) (and I_f(p:q) = KL(P‖Q))."""
    return FGenerator(
        "reverse_kl", _reverse_kl_f, INF, 0.0, "−log x", lambda p, q: q * _log_ratio(q, p)
    )


def _js_perspective(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    log_m = torch.log(p + q) - math.log(2)  # log of the mixture (p + q)/2
    return 0.5 * (p * (torch.log(p) - log_m) + q * (torch.log(q) - log_m))


def jensen_shannon_generator() -> FGenerator:
    """f(x) = ½[x log x − (x+1) log((x+1)/2)]: JS(P, Q) = ½KL(P‖M) + ½KL(Q‖M), M = (P+Q)/2."""
    half_log2 = 0.5 * math.log(2)
    return FGenerator("jensen_shannon", _js_f, half_log2, half_log2, "JS", _js_perspective)


def squared_hellinger_generator() -> FGenerator:
    """f(x) = ½(√x − 1)²: H²(P, Q) = ½ Σ (√p − √q)², in [0, 1]."""
    return FGenerator(
        "squared_hellinger",
        _hellinger_f,
        0.5,
        0.5,
        "½(√x − 1)²",
        lambda p, q: 0.5 * (torch.sqrt(p) - torch.sqrt(q)) ** 2,
    )


def total_variation_generator() -> FGenerator:
    """f(x) = ½|x − 1|: TV(P, Q) = ½ Σ |p − q|, in [0, 1]."""
    return FGenerator(
        "total_variation", _tv_f, 0.5, 0.5, "½|x − 1|", lambda p, q: 0.5 * (p - q).abs()
    )


def pearson_chi2_generator() -> FGenerator:
    """f(x) = (x − 1)²: under D_f, Pearson χ²(P‖Q) = Σ (p − q)²/q."""
    return FGenerator(
        "pearson_chi2", _chi2_f, 1.0, INF, "(x − 1)²", lambda p, q: (p - q) * ((p - q) / q)
    )


def alpha_generator(alpha: float) -> FGenerator:
    """Amari α-divergence, f(x) = (x^α − αx − (1 − α))/(α(α − 1)); α=1 → KL, α=0 → reverse KL.

    Under D_f: α = ½ gives 4·H² and α = 2 gives ½χ²(P‖Q). α = 0 and 1 are the continuous limits,
    and α near them keeps its precision: with ε = α − 1 and L = log x, x^α − αx − (1 − α) =
    x·expm1(εL) − ε(x − 1) is divided by α·ε as x·expm1(εL)/ε − (x − 1) (and likewise about 0).
    """
    a = real(alpha, "alpha")
    if not math.isfinite(a):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if a == 1.0:
        return FGenerator(
            "alpha=1",
            lambda x: _kl_f(x) - x + 1,
            1.0,
            INF,
            "x log x − x + 1",
            lambda p, q: p * _log_ratio(p, q) - p + q,
        )
    if a == 0.0:
        return FGenerator(
            "alpha=0",
            lambda x: -torch.log(x) + x - 1,
            INF,
            1.0,
            "−log x + x − 1",
            lambda p, q: q * _log_ratio(q, p) + p - q,
        )

    def perspective(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        # (p^α q^(1−α) − αp − (1 − α)q)/(α(α − 1)) about whichever of α = 1, α = 0 is nearer
        log_ratio = _log_ratio(p, q)
        if a > 0.5:
            eps = a - 1.0
            return (p * torch.expm1(eps * log_ratio) / eps - (p - q)) / a
        return (q * torch.expm1(a * log_ratio) / a - (p - q)) / (a - 1.0)

    def f(x: torch.Tensor) -> torch.Tensor:
        return perspective(x, torch.ones_like(x))

    f_at_zero = 1.0 / a if a > 0 else INF
    slope = 1.0 / (1.0 - a) if a < 1 else INF
    return FGenerator(
        f"alpha={a:g}", f, f_at_zero, slope, "(x^α − αx − (1 − α))/(α(α − 1))", perspective
    )


# The family as a table: name -> factory (only "alpha" takes a parameter).
GENERATORS: dict[str, Callable[..., FGenerator]] = {
    "kl": kl_generator,
    "reverse_kl": reverse_kl_generator,
    "jensen_shannon": jensen_shannon_generator,
    "squared_hellinger": squared_hellinger_generator,
    "total_variation": total_variation_generator,
    "pearson_chi2": pearson_chi2_generator,
    "alpha": alpha_generator,
}


def get_generator(name: str, **params: float) -> FGenerator:
    """Look up a generator by name; ``alpha`` needs ``alpha=...``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown f-divergence {name!r}; choose from {sorted(GENERATORS)}")
    try:
        return GENERATORS[name](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters {params} for {name!r}: {err}") from err


def conjugate(gen: FGenerator) -> FGenerator:
    """The Csiszár conjugate f*(x) = x f(1/x), so that D_{f*}(P‖Q) = D_f(Q‖P)."""

    def f_star(x: torch.Tensor) -> torch.Tensor:
        return x * gen.f(1 / x)

    return FGenerator(
        f"{gen.name}*",
        f_star,
        gen.slope_at_inf,
        gen.f_at_zero,
        f"x·f(1/x), f={gen.formula}",
        lambda p, q: gen.weighted(q, p),  # q·f*(p/q) = p·f(q/p)
    )


def _resolve(f: FGenerator | str, params: dict[str, float]) -> FGenerator:
    if isinstance(f, FGenerator):
        if params:
            raise ValueError(f"parameters {params} are only accepted with a generator name")
        return f
    return get_generator(f, **params)


def _q_weighted(p: torch.Tensor, q: torch.Tensor, gen: FGenerator) -> torch.Tensor:
    """Σ q f(p/q) over the last dim with the boundary limits; no NaN in value or gradient."""
    both = (p > 0) & (q > 0)
    # Safe stand-ins where a branch is masked, so neither value nor gradient sees 0/0.
    p_safe = torch.where(both, p, torch.ones_like(p))
    q_safe = torch.where(both, q, torch.ones_like(q))
    inner = torch.where(both, gen.weighted(p_safe, q_safe), torch.zeros_like(p))
    zero_p = (p == 0) & (q > 0)
    zero_q = (q == 0) & (p > 0)
    at_zero = _boundary(zero_p, q, gen.f_at_zero)
    at_inf = _boundary(zero_q, p, gen.slope_at_inf)
    return (inner + at_zero + at_inf).sum(dim=-1)


def _boundary(mask: torch.Tensor, weight: torch.Tensor, limit: float) -> torch.Tensor:
    """``weight · limit`` where ``mask``, else 0; +inf limits never meet a zero weight (no NaN)."""
    value = torch.full_like(weight, INF) if limit == INF else weight * limit
    return torch.where(mask, value, torch.zeros_like(weight))


# Conventions: name -> (how to evaluate, the formula it stands for).
CONVENTIONS: dict[
    str, tuple[Callable[[torch.Tensor, torch.Tensor, FGenerator], torch.Tensor], str]
] = {
    "D_f": (lambda p, q, g: _q_weighted(p, q, g), "D_f(P‖Q) = Σ q f(p/q)"),
    "I_f": (lambda p, q, g: _q_weighted(q, p, g), "I_f(p:q) = Σ p f(q/p)"),
}


def f_divergence(
    p: torch.Tensor,
    q: torch.Tensor,
    f: FGenerator | str,
    convention: str = "D_f",
    validate: bool = True,
    **params: float,
) -> torch.Tensor:
    """An f-divergence between tables ``p`` and ``q`` over the last dim, in nats.

    ``convention="D_f"``: Σ q f(p/q) (Csiszár; f = x log x is KL(P‖Q)).
    ``convention="I_f"``: Σ p f(q/p) (Nielsen; f = −log x is KL(P‖Q)).
    ``f`` is an :class:`FGenerator` or a name in ``GENERATORS`` (``alpha`` needs ``alpha=``).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {sorted(CONVENTIONS)}")
    gen = _resolve(f, params)
    p, q = probability_pair(p, q, validate)
    return CONVENTIONS[convention][0](p, q, gen)


def d_f(p: torch.Tensor, q: torch.Tensor, f: FGenerator | str, **params: float) -> torch.Tensor:
    """Csiszár's D_f(P‖Q) = Σ q f(p/q), in nats (f = x log x gives KL(P‖Q))."""
    return f_divergence(p, q, f, convention="D_f", **params)


def i_f(p: torch.Tensor, q: torch.Tensor, f: FGenerator | str, **params: float) -> torch.Tensor:
    """Nielsen's I_f(p:q) = Σ p f(q/p) = D_f(Q‖P), in nats (f = −log x gives KL(P‖Q))."""
    return f_divergence(p, q, f, convention="I_f", **params)
