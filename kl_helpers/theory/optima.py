"""Closed-form optima of the KL-regularised SFT objective for one example, in nats.

For one example with label ``y`` and a frozen reference distribution ``r`` over the classes, a model
free to put any distribution π on the probability simplex minimises

- forward KL: −log π_y + β·KL(r‖π) (expectation under the reference), whose optimum is
  π* = (onehot(y) + β·r)/(1 + β): label smoothing towards the reference with weight β/(1+β);
- reverse KL: −log π_y + β·KL(π‖r) (expectation under the model), whose optimum keeps the non-label
  classes proportional to r and gives the label the probability p solving
  logit(p) = logit(r_y) + 1/(β·p).

β = 0 gives onehot(y) for both; β = ∞ gives r. The label probability depends on r only through
r_y. The two curves p(β) cross once when r_y < 1/2 (reverse is sharper below the crossing β,
forward above it) and never when r_y ≥ 1/2 (reverse is sharper at every β > 0).
Introduced in notebook 07.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import brentq

from kl_helpers._validate import (
    as_float_tensor,
    check_probabilities,
    integer,
    kl_weight,
    real,
)
from kl_helpers.divergences import kl_divergence

METHODS: tuple[str, ...] = ("forward", "reverse")
_XTOL = 1e-14  # brentq tolerance in logit space (absolute) for the reverse-KL label probability
_RTOL = 4 * np.finfo(float).eps  # the smallest relative tolerance brentq takes


# --------------------------------------------------------------------------- input checks
def _check_beta(beta: float, allow_zero: bool = True) -> float:
    """Return ``beta`` as a float; raise unless it is one number ≥ 0 (or > 0), not NaN and not a
    bool or a string (∞ is allowed)."""
    return kl_weight(beta, allow_zero=allow_zero)


def _check_label_probability(r_y: float, low_open: bool, name: str = "r_y") -> float:
    """Return ``r_y`` as a float; raise unless it is a probability (0 excluded if ``low_open``)."""
    r_y = real(r_y, name)
    if math.isnan(r_y) or r_y > 1 or r_y < 0 or (low_open and r_y == 0):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a probability in {interval}, got {r_y}")
    return r_y


def _check_example(reference: object, label: int) -> tuple[torch.Tensor, int]:
    """Validate a 1-D reference distribution (float64, normalised to sum to 1 exactly: a float32
    table sums to 1 only within ~1e-7) and an in-range integer label (an int, a NumPy int or a 0-d
    integer tensor; not a bool or a float such as 1.0)."""
    r = as_float_tensor(reference).to(torch.float64)
    if r.ndim != 1:
        raise ValueError(f"reference must be one distribution (1-D), got shape {tuple(r.shape)}")
    if r.numel() < 2:
        raise ValueError(f"reference needs at least 2 classes, got {r.numel()}")
    check_probabilities(r, "reference")
    try:
        label = integer(label, "label")
    except ValueError:
        raise ValueError(f"label must be an integer class index, got {label!r}") from None
    if not 0 <= label < r.numel():
        raise ValueError(f"label must be in [0, {r.numel() - 1}], got {label}")
    return r / r.sum(), label


# --------------------------------------------------------------------------- label probabilities
def forward_kl_label_probability(r_y: float, beta: float) -> float:
    """Label probability of the forward-KL optimum, (1 + β·r_y)/(1 + β); r_y at β = ∞."""
    r_y = _check_label_probability(r_y, low_open=False)
    beta = _check_beta(beta)
    if math.isinf(beta):
        return r_y
    return (1.0 + beta * r_y) / (1.0 + beta)


def reverse_kl_label_logit(r_y: float, beta: float) -> float:
    """logit p of the reverse-KL optimum: the root of z = logit(r_y) + (1 + e^(−z))/β.

    The map g(z) = z − logit(r_y) − (1 + e^(−z))/β increases in z, and 1/p ≥ 1 gives the bracket
    [z0, z0 + e^(−z0)/β] with z0 = logit(r_y) + 1/β: g(z0) ≤ 0 ≤ g(z0 + e^(−z0)/β). Solving in
    logit space keeps full precision when p is within 1e-16 of 1 (small β). +∞ at β = 0 or r_y = 1.
    """
    r_y = _check_label_probability(r_y, low_open=True)
    beta = _check_beta(beta)
    if beta == 0 or r_y == 1:
        return math.inf
    base = math.log(r_y) - math.log1p(-r_y)
    if math.isinf(beta):
        return base
    z_lo = base + 1.0 / beta
    z_hi = z_lo + math.exp(-z_lo) / beta
    if z_hi == z_lo:  # e^(−z0)/β is below float resolution: z0 is the root
        return z_lo

    def g(z: float) -> float:
        return z - base - (1.0 + math.exp(-z)) / beta

    if g(z_lo) >= 0:
        return z_lo
    if g(z_hi) <= 0:
        return z_hi
    # The bracket can be ~1e299 wide (r_y = 1e-300, β = 1): Brent falls back to bisection there,
    # about 1000 halvings before it closes in.
    return brentq(g, z_lo, z_hi, xtol=_XTOL, rtol=4 * np.finfo(float).eps, maxiter=5000)


def reverse_kl_label_probability(r_y: float, beta: float) -> float:
    """Label probability p of the reverse-KL optimum: logit(p) = logit(r_y) + 1/(β·p)."""
    z = reverse_kl_label_logit(r_y, beta)
    return 1.0 if math.isinf(z) else 1.0 / (1.0 + math.exp(-z))


LABEL_PROBABILITY: dict[str, Callable[[float, float], float]] = {
    "forward": forward_kl_label_probability,
    "reverse": reverse_kl_label_probability,
}


def _method(method: str) -> str:
    if method not in LABEL_PROBABILITY:
        raise ValueError(f"method must be one of {sorted(LABEL_PROBABILITY)}, got {method!r}")
    return method


def label_probability(method: str, r_y: object, beta: object) -> torch.Tensor:
    """Optimal label probability for ``method`` ("forward"/"reverse"), broadcast; float64."""
    fn = LABEL_PROBABILITY[_method(method)]
    r_arr, b_arr = np.broadcast_arrays(np.asarray(r_y, np.float64), np.asarray(beta, np.float64))
    out = np.array([fn(r, b) for r, b in zip(r_arr.ravel(), b_arr.ravel(), strict=True)])
    return torch.as_tensor(out.reshape(r_arr.shape), dtype=torch.float64)


def label_probability_grid(method: str, r_ys: object, betas: object) -> torch.Tensor:
    """Table of optimal label probabilities, shape ``(len(r_ys), len(betas))``; float64."""
    r = np.asarray(r_ys, np.float64).reshape(-1, 1)
    b = np.asarray(betas, np.float64).reshape(1, -1)
    return label_probability(method, r, b)


# --------------------------------------------------------------------------- full optima
def forward_kl_optimum(reference: object, label: int, beta: float) -> torch.Tensor:
    """argmin over the simplex of −log π_y + β·KL(r‖π): (onehot(y) + β·r)/(1 + β); float64."""
    r, label = _check_example(reference, label)
    beta = _check_beta(beta)
    if math.isinf(beta):
        return r.clone()
    onehot = torch.zeros_like(r)
    onehot[label] = 1.0
    return (onehot + beta * r) / (1.0 + beta)


def reverse_kl_optimum(reference: object, label: int, beta: float) -> torch.Tensor:
    """argmin over the simplex of −log π_y + β·KL(π‖r); non-label classes ∝ r; float64."""
    r, label = _check_example(reference, label)
    beta = _check_beta(beta)
    r_y = r[label].item()
    if r_y <= 0:
        raise ValueError(
            "reverse KL needs reference[label] > 0: KL(π‖r) is finite only if π_label = 0, "
            "and then −log π_label is infinite"
        )
    p = reverse_kl_label_probability(r_y, beta)
    rest = r.clone()
    rest[label] = 0.0
    total = rest.sum()
    out = rest * ((1.0 - p) / total) if total > 0 else rest
    out[label] = p
    return out


OPTIMUM: dict[str, Callable[[object, int, float], torch.Tensor]] = {
    "forward": forward_kl_optimum,
    "reverse": reverse_kl_optimum,
}


def optimum(method: str, reference: object, label: int, beta: float) -> torch.Tensor:
    """Closed-form optimum π* for ``method`` ("forward" or "reverse"); float64, sums to 1."""
    return OPTIMUM[_method(method)](reference, label, beta)


def objective(
    method: str, pi: torch.Tensor, reference: object, label: int, beta: float
) -> torch.Tensor:
    """Per-example −log π_y + β·KL, nats: KL(r‖π) for "forward", KL(π‖r) for "reverse".

    ``pi`` is one distribution (C,) or a batch (..., C), one objective per row. β = ∞ gives
    −log π_y where π = r (KL 0) and +∞ elsewhere, the limit of the objective (not ∞·0 = NaN).
    """
    method = _method(method)
    r, label = _check_example(reference, label)
    beta = _check_beta(beta)
    pi = as_float_tensor(pi, like=r)
    if pi.ndim == 0 or pi.shape[-1] != r.numel():
        raise ValueError(
            f"pi must have the reference's {r.numel()} classes in its last dimension, got shape "
            f"{tuple(pi.shape)}"
        )
    task = -torch.log(pi[..., label])
    if beta == 0:
        return task
    r = r.to(pi.dtype).expand_as(pi)
    kl = kl_divergence(r, pi) if method == "forward" else kl_divergence(pi, r)
    if math.isinf(beta):
        return torch.where(kl == 0, task, torch.full_like(task, math.inf))
    return task + beta * kl


# --------------------------------------------------------------------------- where they cross
def _log1p_minus(x: float) -> float:
    """log(1 + x) − x/(1 + x) ≥ 0 to full relative precision (≈ x²/2 for small x)."""
    if abs(x) < 0.1:  # the alternating series Σ_{k≥2} (−1)^k (k−1)/k · x^k, no cancellation
        return sum((-1) ** k * (k - 1) / k * x**k for k in range(2, 20))
    return math.log1p(x) - x / (1.0 + x)


def _crossing_gap(beta: float, r_y: float) -> float:
    """logit(p_fkl) − logit(r_y) − 1/(β·p_fkl): > 0 iff the forward optimum is sharper at β.

    With p_fkl = (1 + β r)/(1 + β) and x = 1/(β r) this is log(1 + 1/(β r)) − (1 + β)/(β (1 + β
    r)) = [log(1 + x) − x/(1 + x)] − x/((1 + x) β); the reverse equation's left side minus its
    right side, evaluated at the forward optimum, which is increasing in p, so its sign says on
    which side of the reverse optimum p_fkl lies. The bracket is formed without cancellation
    (at large β, where both parts are ≈ 2/β², as the series Σ_{k≥2} (−1)^k x^k ((k−1)/k − r) whose
    first coefficient 1/2 − r is exact near the crossing) and, where 1/(β r) overflows, from
    logarithms.
    """
    x = 1.0 / (beta * r_y) if beta * r_y > 0 else math.inf
    if math.isinf(x) or x > 1e300:
        log_x = -math.log(beta) - math.log(r_y)
        return log_x - (1.0 + beta) / beta  # log(1 + x) − 1 − 1/β to float64 precision
    if x < 0.1:  # large β: Σ_{k≥2} (−1)^k x^k ((k−1)/k − r), with 1/2 − r exact near the root
        return sum((-1) ** k * x**k * ((k - 1) / k - r_y) for k in range(2, 21))
    return _log1p_minus(x) - x / ((1.0 + x) * beta)


def _forward_kl_label_logit(r_y: float, beta: float) -> float:
    """logit of (1 + β r)/(1 + β) = log(1 + β r) − log(β (1 − r)); +∞ at β = 0 or r = 1."""
    if beta == 0 or r_y == 1:
        return math.inf
    if math.isinf(beta):
        return math.log(r_y) - math.log1p(-r_y)
    return math.log1p(beta * r_y) - math.log(beta) - math.log1p(-r_y)


def sharper_method(r_y: float, beta: float) -> str:
    """Which optimum puts more mass on the label at (r_y, β): "reverse", "forward" or "tie".

    Compared in logit space, so a β small enough that both probabilities round to 1 (β = 1e-300)
    still has an answer; "tie" where the logits agree to 1e-12 relative (β = 0, β = ∞, r_y = 1,
    the crossing).
    """
    r_y = _check_label_probability(r_y, low_open=True)
    beta = _check_beta(beta)
    z_f = _forward_kl_label_logit(r_y, beta)
    z_r = reverse_kl_label_logit(r_y, beta)
    if z_f == z_r or math.isclose(z_f, z_r, rel_tol=1e-12, abs_tol=1e-12):
        return "tie"
    return "reverse" if z_r > z_f else "forward"


def crossing_beta(r_y: float) -> float:
    """β > 0 where the forward and reverse label probabilities are equal; ∞ if r_y ≥ 1/2.

    For r_y < 1/2 the reverse optimum is sharper for β below the crossing and the forward one
    above it (large-β expansion: the gap ≈ (1/(2 r_y) − 1)/(β² r_y)); for r_y ≥ 1/2 the
    reverse optimum is sharper at every β > 0. Found to ~1e-14 relative for every float64 r_y in
    (0, 1/2), from 1.3e-3 at r_y = 5e-324 to 6e15 at the float just below 1/2.
    """
    r_y = _check_label_probability(r_y, low_open=True)
    if r_y >= 0.5:
        return math.inf
    lo, hi = 1e-3, 1.0
    while _crossing_gap(lo, r_y) >= 0:  # the gap is ≈ −1/β < 0 as β → 0
        lo /= 10.0
        if lo < 1e-300:  # unreachable for r_y ≥ 5e-324 (the gap is < 0 at β = 1e-3)
            raise ValueError(f"no crossing beta found for r_y = {r_y}")
    while _crossing_gap(hi, r_y) <= 0:
        hi *= 2.0
        if hi > 1e300:
            raise ValueError(f"r_y = {r_y} is too close to 1/2 to locate the crossing in float64")
    log_b = brentq(
        lambda t: _crossing_gap(math.exp(t), r_y), math.log(lo), math.log(hi), xtol=1e-13
    )
    return math.exp(log_b)


def crossing_reference_probability(beta: float) -> float:
    """r_y in (0, 1/2] at which the two optima give the label equal probability at this β > 0.

    To ~1e-15 relative; 1/2 where the crossing is within half a float64 step of it (β ≳ 1e16,
    the crossing is ≈ 1/2 − 1/(3β)), and at β = ∞. ValueError where float64 cannot place it: β
    below ~1.4e-3 (the crossing r_y ≈ e^(−1−1/β)/β underflows) or so large that the gap's
    x³ = (β r_y)^(−3) underflows (β ≳ 1e107).
    """
    beta = _check_beta(beta, allow_zero=False)
    if math.isinf(beta):
        return 0.5
    # The gap is positive (forward sharper) below the crossing r_y and negative above it.
    lo, hi = 5e-324, 0.5
    if _crossing_gap(beta, lo) <= 0:
        raise ValueError(f"beta = {beta} is too small: the crossing r_y underflows float64")
    if _crossing_gap(beta, hi) >= 0:
        raise ValueError(f"beta = {beta} is too large: the crossing r_y is 1/2 within float64")
    # xtol far below the root: an absolute 1e-15 stopped at ~1e-15 whatever the root (β = 0.01:
    # 7.7e-16 for 1.4e-42); Brent then converges to rtol relative, bisecting down from 0.5.
    return brentq(lambda r: _crossing_gap(beta, r), lo, hi, xtol=1e-320, rtol=_RTOL, maxiter=5000)
