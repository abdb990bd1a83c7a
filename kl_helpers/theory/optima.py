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

from kl_helpers._validate import as_float_tensor, check_probabilities
from kl_helpers.divergences import kl_divergence

METHODS: tuple[str, ...] = ("forward", "reverse")
_XTOL = 1e-14  # brentq tolerance in logit space (absolute) for the reverse-KL label probability


# --------------------------------------------------------------------------- input checks
def _check_beta(beta: float, allow_zero: bool = True) -> float:
    """Return ``beta`` as a float; raise unless it is ≥ 0 (or > 0) and not NaN (∞ is allowed)."""
    try:
        beta = float(beta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"beta must be a number, got {beta!r}") from err
    if math.isnan(beta) or beta < 0 or (beta == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"beta must be {bound}, got {beta}")
    return beta


def _check_label_probability(r_y: float, low_open: bool, name: str = "r_y") -> float:
    """Return ``r_y`` as a float; raise unless it is a probability (0 excluded if ``low_open``)."""
    try:
        r_y = float(r_y)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {r_y!r}") from err
    if math.isnan(r_y) or r_y > 1 or r_y < 0 or (low_open and r_y == 0):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a probability in {interval}, got {r_y}")
    return r_y


def _check_example(reference: object, label: int) -> tuple[torch.Tensor, int]:
    """Validate a 1-D reference distribution (float64) and an in-range integer label."""
    r = as_float_tensor(reference).to(torch.float64)
    if r.ndim != 1:
        raise ValueError(f"reference must be one distribution (1-D), got shape {tuple(r.shape)}")
    if r.numel() < 2:
        raise ValueError(f"reference needs at least 2 classes, got {r.numel()}")
    check_probabilities(r, "reference")
    if isinstance(label, bool) or int(label) != label:
        raise ValueError(f"label must be an integer class index, got {label!r}")
    label = int(label)
    if not 0 <= label < r.numel():
        raise ValueError(f"label must be in [0, {r.numel() - 1}], got {label}")
    return r, label


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
    return brentq(g, z_lo, z_hi, xtol=_XTOL, rtol=4 * np.finfo(float).eps, maxiter=200)


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
    """Per-example −log π_y + β·KL, nats: KL(r‖π) for "forward", KL(π‖r) for "reverse"."""
    r, label = _check_example(reference, label)
    beta = _check_beta(beta)
    pi = as_float_tensor(pi, like=r)
    task = -torch.log(pi[..., label])
    if beta == 0:
        return task
    kl = kl_divergence(r, pi) if _method(method) == "forward" else kl_divergence(pi, r)
    return task + beta * kl


# --------------------------------------------------------------------------- where they cross
def _crossing_gap(beta: float, r_y: float) -> float:
    """logit(p_fkl) − logit(r_y) − 1/(β·p_fkl): > 0 iff the forward optimum is sharper at β.

    With p_fkl = (1 + β r)/(1 + β) this is log(1 + 1/(β r)) − (1 + β)/(β (1 + β r)); the reverse
    equation's left side minus its right side, evaluated at the forward optimum, which is
    increasing in p, so its sign says on which side of the reverse optimum p_fkl lies.
    """
    return math.log1p(1.0 / (beta * r_y)) - (1.0 + beta) / (beta * (1.0 + beta * r_y))


def sharper_method(r_y: float, beta: float) -> str:
    """Which optimum puts more mass on the label at (r_y, β): "reverse", "forward" or "tie"."""
    p_f = forward_kl_label_probability(r_y, beta)
    p_r = reverse_kl_label_probability(r_y, beta)
    if math.isclose(p_f, p_r, rel_tol=1e-12, abs_tol=1e-15):
        return "tie"
    return "reverse" if p_r > p_f else "forward"


def crossing_beta(r_y: float) -> float:
    """β > 0 where the forward and reverse label probabilities are equal; ∞ if r_y ≥ 1/2.

    For r_y < 1/2 the reverse optimum is sharper for β below the crossing and the forward one
    above it (large-β expansion: the gap ≈ (1/(2 r_y) − 1)/(β² r_y)); for r_y ≥ 1/2 the
    reverse optimum is sharper at every β > 0.
    """
    r_y = _check_label_probability(r_y, low_open=True)
    if r_y >= 0.5:
        return math.inf
    lo, hi = 1e-3, 1.0
    while _crossing_gap(lo, r_y) >= 0:  # the gap is ≈ −1/β < 0 as β → 0
        lo /= 10.0
    while _crossing_gap(hi, r_y) <= 0:
        hi *= 2.0
        if hi > 1e15:
            raise ValueError(f"r_y = {r_y} is too close to 1/2 to locate the crossing in float64")
    log_b = brentq(
        lambda t: _crossing_gap(math.exp(t), r_y), math.log(lo), math.log(hi), xtol=1e-13
    )
    return math.exp(log_b)


def crossing_reference_probability(beta: float) -> float:
    """r_y in (0, 1/2) at which the two optima give the label equal probability at this β > 0."""
    beta = _check_beta(beta, allow_zero=False)
    if math.isinf(beta):
        return 0.5
    # The gap is positive (forward sharper) below the crossing r_y and negative above it.
    lo, hi = 1e-300, 0.5
    if _crossing_gap(beta, lo) <= 0:
        raise ValueError(f"beta = {beta} is too small: the crossing r_y underflows float64")
    if _crossing_gap(beta, hi) >= 0:
        raise ValueError(f"beta = {beta} is too large: the crossing r_y is 1/2 within float64")
    return brentq(lambda r: _crossing_gap(beta, r), lo, hi, xtol=1e-15, rtol=1e-14)
