"""kl_helpers.theory.rlhf at the edges its docstrings name (issue 30): optimal_policy and
optimal_value from a subnormal β to β = inf against 700-digit mpmath, the best reward unsupported by
π_ref, reward scales, inputs as lists/NumPy/float32/bfloat16, batched rows; the estimators' exact
moments with zeros in π against enumeration; sample_responses against the inverse CDF."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.theory.rlhf import (
    exact_estimator_moments,
    kl_regularised_reward,
    optimal_policy,
    optimal_value,
    sample_responses,
)

REF = [0.1, 0.3, 0.3, 0.2, 0.1]
R = [1.0, 0.6, 0.3, -0.2, -1.0]


def mp_optimum(ref, r, beta):
    """π* and β·log Σ π_ref e^{r/β} in 700 digits (β = inf: π_ref and E[r])."""
    with mpmath.workdps(700):  # β·log(1 − 1e-300) needs the digits
        q = [mpmath.mpf(x) for x in ref]
        q = [x / sum(q) for x in q]
        r = [mpmath.mpf(x) for x in r]
        if math.isinf(beta):
            return [float(x) for x in q], float(sum(a * b for a, b in zip(q, r, strict=True)))
        beta = mpmath.mpf(beta)
        m = max(b for a, b in zip(q, r, strict=True) if a > 0)
        w = [a * mpmath.exp((b - m) / beta) if a > 0 else 0 for a, b in zip(q, r, strict=True)]
        return [float(x / sum(w)) for x in w], float(m + beta * mpmath.log(sum(w)))


BETAS = [5e-324, 1e-310, 1e-300, 1e-3, 1.0, 1e4, 1e8, 1e12, 1e16, 1e20, 1e300, math.inf]


@pytest.mark.parametrize("beta", BETAS, ids=repr)
def test_optimum_from_a_subnormal_beta_to_infinity(beta):
    """β = 1e-310 gave NaN (r/β overflows) for the policy and inf for the value; β = 1e12 gave a
    value off by 4e-5 and β ≥ 1e16 gave 0 instead of E[r] = 0.23 (β·log of a sum that rounds to
    1)."""
    probs, value = mp_optimum(REF, R, beta)
    got = optimal_policy(REF, R, beta)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(probs, rel=1e-12, abs=1e-300)
    assert optimal_value(REF, R, beta).item() == pytest.approx(value, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("beta", [5e-324, 1e-310, 1e-9, 1.0, 1e16])
def test_best_reward_unsupported_by_the_reference(beta):
    ref, r = [0.5, 0.5, 0.0], [1.0, 2.0, 9.0]
    probs, value = mp_optimum(ref, r, beta)
    assert optimal_policy(ref, r, beta).tolist() == pytest.approx(probs, rel=1e-12)
    assert optimal_value(ref, r, beta).item() == pytest.approx(value, rel=1e-13)


@pytest.mark.parametrize("scale", [1e-300, 1e-12, 1e12, 1e300])
def test_reward_scales(scale):
    r = [scale * x for x in R]
    probs, value = mp_optimum(REF, r, 1.0)
    assert optimal_policy(REF, r, 1.0).tolist() == pytest.approx(probs, rel=1e-12, abs=1e-300)
    assert optimal_value(REF, r, 1.0).item() == pytest.approx(value, rel=1e-13, abs=1e-300)


def test_batched_rows_and_other_input_forms():
    ref = np.array([REF, [0.0, 0.5, 0.0, 0.25, 0.25]])
    got = optimal_policy(ref, torch.tensor([R, R]), 1e-310)
    assert got.shape == (2, 5)
    for row, q in zip(got.tolist(), ref.tolist(), strict=True):
        assert row == pytest.approx(mp_optimum(q, R, 1e-310)[0])
    values = optimal_value(ref, [R, R], 1e16)
    assert values.tolist() == pytest.approx([mp_optimum(q, R, 1e16)[1] for q in ref.tolist()])
    half = optimal_policy(torch.tensor(REF, dtype=torch.bfloat16), R, 0.5)
    assert half.dtype == torch.bfloat16
    assert half.double().tolist() == pytest.approx(mp_optimum(REF, R, 0.5)[0], rel=2e-2)
    f32 = optimal_value(torch.tensor(REF), R, 1e8)
    assert f32.dtype == torch.float32 and f32.item() == pytest.approx(0.23, rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan])
def test_beta_outside_its_range(beta):
    for call in (optimal_policy, optimal_value):
        with pytest.raises(ValueError, match="beta must be > 0"):
            call(REF, R, beta)
    with pytest.raises(ValueError, match="beta"):
        kl_regularised_reward(torch.zeros(5), torch.zeros(5), R, math.inf)


def test_estimator_moments_with_zeros_in_the_policy():
    p, q = [0.5, 0.0, 0.5], [0.25, 0.5, 0.25]
    got = exact_estimator_moments(p, q)
    lr = math.log(0.5)  # log ρ on the support
    k = {"k1": -lr, "k2": 0.5 * lr * lr, "k3": math.expm1(lr) - lr}
    for name, value in k.items():
        assert got[name][0] == pytest.approx(value, rel=1e-15) and got[name][1] == pytest.approx(
            0.0, abs=1e-30
        )


def test_sample_responses_is_the_inverse_cdf():
    probs = [0.0, 0.25, 0.0, 0.75]
    got = sample_responses(probs, 200, torch.Generator().manual_seed(1))
    u = torch.rand(200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert got.tolist() == [1 if x < 0.25 else 3 for x in u.tolist()]


@pytest.mark.parametrize("beta", [True, "1", None, [1.0], torch.ones(2)])
def test_beta_that_is_no_number(beta):
    """beta = True and beta = '1' were read as 1 (one kl_weight check for the package now)."""
    for fn in (optimal_policy, optimal_value):
        with pytest.raises(ValueError, match="beta must be"):
            fn(REF, R, beta)
