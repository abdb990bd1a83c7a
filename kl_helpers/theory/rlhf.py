"""KL-regularised objectives over a small discrete set of outcomes, in nats.

The RLHF objective J(π) = E_π[r] − β·KL(π‖π_ref) (expectation under the policy π), its closed-form
maximiser π* ∝ π_ref·exp(r/β), gradient ascent on logits, and the sample-based estimators
k1, k2, k3 of KL(π‖π_ref). ``optimise_logits`` is generic (notebook 05 also uses it for the
single-example SFT loss; its closed forms are in ``kl_helpers.theory.optima``). Introduced in
notebook 05.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from kl_helpers._validate import (
    as_float_tensor,
    check_probabilities,
    check_same_shape,
    integer,
    kl_weight,
    real,
)
from kl_helpers.divergences import kl_divergence, kl_from_logits


def _check_beta(beta: float) -> float:
    """Return ``beta`` as a float; raise unless it is > 0 (``math.inf`` is allowed)."""
    return kl_weight(beta)


def _rewards_like(rewards: object, ref: torch.Tensor) -> torch.Tensor:
    """``rewards`` as ``ref``'s dtype: the same shape, or one row ``(K,)`` repeated for a batch
    ``(..., K)``; any other shape (a (1,) against (K,), say) is a ValueError naming both."""
    rewards = as_float_tensor(rewards, like=ref).to(ref.dtype)
    if ref.ndim > 1 and rewards.shape == ref.shape[-1:]:
        rewards = rewards.expand_as(ref)
    check_same_shape(rewards, ref, ("rewards", "ref_probs"))
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite")
    return rewards


def _best_supported(ref: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """max r over the responses π_ref supports, per row (keepdim)."""
    return rewards.masked_fill(ref <= 0, -math.inf).amax(dim=-1, keepdim=True)


def kl_regularised_reward(
    logits: torch.Tensor, ref_logits: torch.Tensor, rewards: torch.Tensor, beta: float
) -> torch.Tensor:
    """J = Σ π r − β·KL(π‖π_ref) with π = softmax(logits), π_ref = softmax(ref_logits), in nats.

    Rewards are in nats too (so that r/β is a log-probability shift). Last dim = responses;
    returns shape ``logits.shape[:-1]``. Differentiable in ``logits``; the reference is detached.
    Each input may be a tensor, a NumPy array or a list.
    """
    beta = _check_beta(beta)
    if math.isinf(beta):
        raise ValueError("beta = inf makes the objective −inf unless π = π_ref; use a finite beta")
    logits = as_float_tensor(logits)
    ref_logits = as_float_tensor(ref_logits, like=logits)
    rewards = _rewards_like(rewards, logits)
    expected = (F.softmax(logits, dim=-1) * rewards).sum(dim=-1)
    return expected - beta * kl_from_logits(logits, ref_logits.detach())


def optimal_policy(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """π* = π_ref·exp(r/β) / Z over the last dim, in log space: softmax(log π_ref + r/β).

    β → 0 puts all mass on the best response(s) that π_ref supports (also where r/β overflows,
    down to the smallest subnormal β); β = ``math.inf`` returns π_ref.
    """
    beta = _check_beta(beta)
    ref = as_float_tensor(ref_probs)
    check_probabilities(ref, "ref_probs")
    rewards = _rewards_like(rewards, ref)
    if math.isinf(beta):
        return ref.clone()
    shift = rewards / beta
    if not torch.isfinite(shift).all():  # tiny β: shift by the best supported reward first
        shift = ((rewards - _best_supported(ref, rewards)) / beta).masked_fill(ref <= 0, 0.0)
    return F.softmax(torch.log(ref) + shift, dim=-1)


def optimal_value(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """max_π J(π) = β·log Σ π_ref exp(r/β) (a soft maximum of the rewards), in nats: from the best
    reward π_ref supports (β → 0) to E_π_ref[r] (β → ∞; ``math.inf`` gives it exactly).

    Computed as m + β·log1p(Σ π_ref·expm1((r − m)/β)) with m the best supported reward and π_ref
    normalised, so huge β (1e16) and subnormal β stay accurate.
    """
    beta = _check_beta(beta)
    ref = as_float_tensor(ref_probs)
    check_probabilities(ref, "ref_probs")
    rewards = _rewards_like(rewards, ref)
    if math.isinf(beta):
        return (ref * rewards).sum(dim=-1)
    best = _best_supported(ref, rewards)
    weights = ref / ref.sum(dim=-1, keepdim=True)
    terms = torch.where(ref > 0, weights * torch.expm1((rewards - best) / beta), 0.0)
    return best.squeeze(-1) + beta * torch.log1p(terms.sum(dim=-1))


@dataclass(frozen=True)
class LogitsFit:
    """Result of optimising logits: objective per step, final logits and probabilities."""

    history: torch.Tensor  # (steps,) objective value before each update, in nats
    logits: torch.Tensor  # final logits (detached)
    probs: torch.Tensor  # softmax(final logits)


def _learning_rate(lr: object) -> float:
    value = real(lr, "lr")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"lr must be > 0 and finite, got {lr!r}")
    return value


def optimise_logits(
    objective: Callable[[torch.Tensor], torch.Tensor],
    init_logits: torch.Tensor,
    steps: int = 2000,
    lr: float = 0.5,
    maximise: bool = False,
) -> LogitsFit:
    """Plain gradient descent (or ascent) on logits of a scalar ``objective``; keeps the history.

    ``steps`` is an int ≥ 1 and ``lr`` one finite number > 0 (ValueError otherwise);
    ``init_logits`` may be a tensor (integer ones are read as float64), an array or a list.
    """
    steps = integer(steps, "steps")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    lr = _learning_rate(lr)
    logits = as_float_tensor(init_logits).detach().clone().requires_grad_(True)
    sign = -1.0 if maximise else 1.0
    history = torch.empty(steps, dtype=logits.dtype)
    for step in range(steps):
        value = objective(logits)
        if value.ndim != 0:
            raise ValueError(f"objective must return a scalar, got shape {tuple(value.shape)}")
        history[step] = value.detach()
        (grad,) = torch.autograd.grad(sign * value, logits)
        with torch.no_grad():
            logits -= lr * grad
    final = logits.detach()
    return LogitsFit(history=history, logits=final, probs=F.softmax(final, dim=-1))


def fit_policy(
    ref_probs: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    steps: int = 4000,
    lr: float | None = None,
    init_logits: torch.Tensor | None = None,
) -> LogitsFit:
    """Maximise E_π[r] − β·KL(π‖π_ref) by gradient ascent on π's logits (start: π_ref).

    The default step ``lr = 2 / (β + max r − min r)`` bounds the curvature of both terms, so the
    ascent is stable for any β; small β converge slowest (the optimum sits near a vertex). β = ∞
    raises ValueError (the optimum is π_ref itself; :func:`optimal_policy` gives it).
    """
    beta = _check_beta(beta)
    if math.isinf(beta):
        raise ValueError("beta = inf: the optimum is ref_probs itself (optimal_policy gives it)")
    ref = as_float_tensor(ref_probs)
    check_probabilities(ref, "ref_probs")
    ref_logits = torch.log(ref)
    rewards = _rewards_like(rewards, ref)
    if lr is None:
        lr = 2.0 / (beta + float(rewards.max() - rewards.min()))
    # Responses with π_ref = 0 get logit −inf and stay there (any π > 0 on them has KL = +inf).
    start = ref_logits if init_logits is None else as_float_tensor(init_logits, like=ref)
    check_same_shape(start, ref, ("init_logits", "ref_probs"))
    return optimise_logits(
        lambda z: kl_regularised_reward(z, ref_logits, rewards, beta),
        start,
        steps=steps,
        lr=lr,
        maximise=True,
    )


# ---------------------------------------------------------------------------------------------
# Sample-based estimators of KL(π‖π_ref) with log ρ = log π_ref(x) − log π(x), x ~ π.
# Each maps log ρ (per sample) to a per-sample estimate; the mean over samples estimates the KL.
# ---------------------------------------------------------------------------------------------


def _k1(log_rho: torch.Tensor) -> torch.Tensor:
    return -log_rho


def _k2(log_rho: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_rho**2


def _k3(log_rho: torch.Tensor) -> torch.Tensor:
    return torch.expm1(log_rho) - log_rho


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": _k1,  # −log ρ: unbiased, can be negative, high variance
    "k2": _k2,  # ½(log ρ)²: biased (exact only to second order), low variance, ≥ 0
    # (ρ − 1) − log ρ, ≥ 0: unbiased where π_ref's support lies within π's (E_π[ρ − 1] = 0);
    # otherwise biased by E_π[ρ − 1] = π_ref(supp π) − 1 < 0
    "k3": _k3,
}


def sample_responses(probs: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` indices from a 1-D ``probs`` by inverse CDF on seeded uniforms; shape ``(n,)``.

    ``n`` is an int (Python, NumPy or a 0-d tensor; ValueError for 2.0 or True). An index whose
    probability is 0 is never drawn.
    """
    n = integer(n, "n")
    probs = as_float_tensor(probs)
    check_probabilities(probs, "probs")
    if probs.ndim != 1:
        raise ValueError(f"probs must be 1-D, got shape {tuple(probs.shape)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cdf = torch.cumsum(probs, dim=0)
    u = torch.rand(n, generator=generator, dtype=cdf.dtype) * cdf[-1]
    idx = torch.searchsorted(cdf, u, right=True)
    last = int(torch.nonzero(probs > 0).max())  # the last index with mass
    return idx.clamp(max=last)


def kl_estimates(
    probs: torch.Tensor, ref_probs: torch.Tensor, samples: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample k1, k2, k3 estimates of KL(π‖π_ref) for responses ``samples`` drawn from π.

    ``samples`` are integer indices into ``probs`` (a tensor, array or list); ValueError for a
    float index or one out of range. A sample where π_ref = 0 gives +inf (so does the KL).
    """
    probs = as_float_tensor(probs)
    ref = as_float_tensor(ref_probs, like=probs)
    check_same_shape(probs, ref, ("probs", "ref_probs"))
    samples = torch.as_tensor(samples)
    if samples.is_floating_point() or samples.dtype == torch.bool:
        raise ValueError(f"samples must be integer indices, got dtype {samples.dtype}")
    if samples.numel() and (samples.min() < 0 or samples.max() >= probs.shape[-1]):
        raise ValueError(
            f"samples must index the {probs.shape[-1]} responses, got {samples.min().item()}.."
            f"{samples.max().item()}"
        )
    log_rho = torch.log(ref[samples]) - torch.log(probs[samples])
    return {name: fn(log_rho) for name, fn in KL_ESTIMATORS.items()}


def exact_estimator_moments(
    probs: torch.Tensor, ref_probs: torch.Tensor
) -> dict[str, tuple[float, float]]:
    """Exact (mean, variance) of each per-sample estimator under x ~ π, summed over responses.

    Where π_ref = 0 on π's support every estimator is +inf there: mean and variance are +inf.
    """
    probs = as_float_tensor(probs)
    ref = as_float_tensor(ref_probs, like=probs)
    check_same_shape(probs, ref, ("probs", "ref_probs"))
    check_probabilities(probs, "probs")
    check_probabilities(ref, "ref_probs")
    support = probs > 0
    p, log_rho = probs[support], torch.log(ref[support]) - torch.log(probs[support])
    out = {}
    for name, fn in KL_ESTIMATORS.items():
        k = fn(log_rho)
        mean = (p * k).sum()
        if torch.isinf(mean):
            out[name] = (float(mean), math.inf)
            continue
        out[name] = (float(mean), float((p * (k - mean) ** 2).sum()))
    return out


def estimator_repetitions(
    probs: torch.Tensor,
    ref_probs: torch.Tensor,
    n_samples: int = 16,
    n_repeats: int = 2000,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per-repetition estimates of KL(π‖π_ref): each averages ``n_samples`` draws x ~ π (seeded).

    Returns ``{name: (n_repeats,) tensor}`` for every estimator in ``KL_ESTIMATORS``, in nats.
    ``n_samples``, ``n_repeats`` and ``seed`` are ints (ValueError for 2.0 or True).
    """
    n_samples, n_repeats = integer(n_samples, "n_samples"), integer(n_repeats, "n_repeats")
    seed = integer(seed, "seed")
    if n_repeats < 2:
        raise ValueError(f"n_repeats must be >= 2, got {n_repeats}")
    probs = as_float_tensor(probs)
    generator = torch.Generator().manual_seed(seed)
    samples = sample_responses(probs, n_samples * n_repeats, generator)
    per_sample = kl_estimates(probs, ref_probs, samples)
    return {k: v.reshape(n_repeats, n_samples).mean(dim=1) for k, v in per_sample.items()}


def estimator_table(
    probs: torch.Tensor,
    ref_probs: torch.Tensor,
    n_samples: int = 16,
    n_repeats: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Bias and variance of k1/k2/k3 against the exact KL(π‖π_ref), in nats.

    Monte Carlo columns summarise :func:`estimator_repetitions` (mean, bias and variance of the
    repetition averages); the exact bias and exact variance Var[k]/n_samples are sums over the
    responses, for comparison.
    """
    probs = as_float_tensor(probs)
    ref = as_float_tensor(ref_probs, like=probs)
    exact_kl = float(kl_divergence(probs, ref))
    moments = exact_estimator_moments(probs, ref)
    reps = estimator_repetitions(probs, ref, n_samples, n_repeats, seed)
    rows = []
    for name, estimates in reps.items():
        mean = float(estimates.mean())
        rows.append(
            {
                "estimator": name,
                "exact KL": exact_kl,
                "MC mean": mean,
                "MC bias": mean - exact_kl,
                "MC variance": float(estimates.var()),
                "exact bias": moments[name][0] - exact_kl,
                "exact variance": moments[name][1] / n_samples,
            }
        )
    return pd.DataFrame(rows).set_index("estimator")
