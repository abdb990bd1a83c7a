"""kl_helpers.theory.rlhf at the edges its docstrings name (issue 30): optimal_policy and
optimal_value from a subnormal β to β = inf against 700-digit mpmath, the best reward unsupported by
π_ref, reward scales, inputs as lists/NumPy/float32/bfloat16, batched rows; the estimators' exact
moments with zeros in π against enumeration; sample_responses against the inverse CDF; LogitsFit
from optimise_logits on a quadratic whose gradient-descent path is exact in fractions (history
before each update, final logits, probs = NumPy's float64 softmax), descent and ascent, steps = 1,
frozen, detached."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.theory.rlhf import (
    LogitsFit,
    estimator_repetitions,
    estimator_table,
    exact_estimator_moments,
    fit_policy,
    kl_estimates,
    kl_regularised_reward,
    optimal_policy,
    optimal_value,
    optimise_logits,
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


def mp_objective(logits, ref_logits, rewards, beta):
    """E_π[r] − β·KL(π‖π_ref) in 50 digits (−inf logits drop a response)."""
    with mpmath.workdps(50):

        def softmax(z):
            e = [mpmath.exp(mpmath.mpf(v)) if v != -math.inf else mpmath.mpf(0) for v in z]
            return [v / sum(e) for v in e]

        p, q = softmax(logits), softmax(ref_logits)
        kl = mpmath.mpf(0)
        for a, b in zip(p, q, strict=True):
            if a > 0:
                kl += a * mpmath.log(a / b) if b > 0 else mpmath.inf
        expected = sum(a * mpmath.mpf(r) for a, r in zip(p, rewards, strict=True))
        return float(expected - mpmath.mpf(beta) * kl)


@pytest.mark.parametrize("beta", [5e-324, 1e-8, 1.0, 1e8])
def test_kl_regularised_reward_against_mpmath(beta):
    """Lists raised AttributeError ('list' object has no attribute 'dtype')."""
    cases = [
        ([0.0, 1.0, -2.0], [0.5, 0.0, 0.0], [1.0, 0.0, -1.0]),
        ([0.0, -math.inf, 1.0], [0.0, 0.0, 0.0], [1.0, 9.0, 0.0]),
        ([30.0, -30.0, 0.0], [0.0, 0.0, 0.0], [1e-300, 0.0, 1e300]),
    ]
    for logits, ref_logits, rewards in cases:
        expected = mp_objective(logits, ref_logits, rewards, beta)
        for form in (list, np.array, lambda v: torch.tensor(v, dtype=torch.float64)):
            got = kl_regularised_reward(form(logits), form(ref_logits), form(rewards), beta)
            assert got.item() == pytest.approx(expected, rel=1e-12)
    # π has mass where π_ref has none: KL = +inf, J = −inf
    assert kl_regularised_reward([0.0, 0.0], [0.0, -math.inf], [1.0, 0.0], 1.0).item() == (
        -math.inf
    )
    batch = kl_regularised_reward(torch.zeros(4, 3), torch.zeros(4, 3), [1.0, 0.0, 0.0], 2.0)
    assert batch.shape == (4,) and batch.tolist() == pytest.approx([1 / 3] * 4)


def test_fit_policy_reaches_the_closed_form():
    ref, r = [0.5, 0.3, 0.2, 0.0], [1.0, 0.0, 0.5, 9.0]
    for beta, tol in ((0.3, 1e-2), (1.0, 1e-8), (5.0, 1e-8)):  # small β converge slowest
        fit = fit_policy(ref, r, beta, steps=1000)
        assert fit.probs.tolist() == pytest.approx(mp_optimum(ref, r, beta)[0], abs=tol)
        assert fit.history.shape == (1000,)
        assert (fit.history.diff() >= -1e-15).all()  # ascent never goes down
        assert fit.history[-1].item() == pytest.approx(mp_optimum(ref, r, beta)[1], rel=tol)
    start = fit_policy(ref, r, 1.0, steps=1, init_logits=[0.0, 0.0, 0.0, -math.inf])
    assert start.history[0].item() == pytest.approx(
        mp_objective([0.0, 0.0, 0.0, -math.inf], [*np.log(ref[:3]), -math.inf], r, 1.0)
    )


def test_fit_policy_and_optimise_logits_arguments():
    """β = inf gave 'lr must be > 0, got 0.0'; steps = 2.0 and steps = True raised TypeError;
    lr = NaN gave NaN logits; list or integer init_logits raised AttributeError/RuntimeError."""
    with pytest.raises(ValueError, match="beta = inf"):
        fit_policy([0.5, 0.5], [1.0, 0.0], math.inf)
    for steps in (2.0, True, "2", 0):
        with pytest.raises(ValueError, match="steps must be"):
            optimise_logits(lambda z: (z**2).sum(), torch.ones(2), steps=steps)
    for lr in (math.nan, math.inf, 0.0, -1.0, True, "0.1"):
        with pytest.raises(ValueError, match="lr must be"):
            optimise_logits(lambda z: (z**2).sum(), torch.ones(2), steps=2, lr=lr)
    # (z²) with lr 0.25: z ← z − 0.25·2z = z/2, so after 3 steps 1 → 1/8 (exact in binary)
    for init in ([1.0, 1.0], torch.ones(2, dtype=torch.int64), np.ones(2)):
        fit = optimise_logits(lambda z: (z**2).sum(), init, steps=np.int64(3), lr=0.25)
        assert fit.logits.tolist() == [0.125, 0.125]
        assert fit.history.tolist() == [2.0, 0.5, 0.125]
    up = optimise_logits(lambda z: -(z**2).sum(), [1.0], steps=1, lr=0.25, maximise=True)
    assert up.logits.tolist() == [0.5]
    with pytest.raises(ValueError, match="objective must return a scalar"):
        optimise_logits(lambda z: z**2, [1.0, 2.0], steps=1)


def test_sampling_and_estimator_counts():
    """n = 2.0 / True, n_samples = 2.0 and n_repeats = 3.0 raised TypeError inside torch."""
    gen = torch.Generator()
    for n in (2.0, True, "2", 0):
        with pytest.raises(ValueError, match="n must be"):
            sample_responses([0.5, 0.5], n, gen)
    assert sample_responses([0.5, 0.5], np.int64(3), gen.manual_seed(0)).shape == (3,)
    with pytest.raises(ValueError, match="n_samples must be an int"):
        estimator_repetitions([0.5, 0.5], [0.25, 0.75], n_samples=2.0)
    with pytest.raises(ValueError, match="n_repeats must be an int"):
        estimator_repetitions([0.5, 0.5], [0.25, 0.75], n_repeats=3.0)
    with pytest.raises(ValueError, match="n_repeats must be >= 2"):
        estimator_repetitions([0.5, 0.5], [0.25, 0.75], n_repeats=1)


def test_estimator_repetitions_against_the_same_uniforms():
    p, q = [0.125, 0.0, 0.875], [0.25, 0.5, 0.25]
    reps = estimator_repetitions(p, q, n_samples=3, n_repeats=5, seed=7)
    u = torch.rand(15, generator=torch.Generator().manual_seed(7), dtype=torch.float64).tolist()
    drawn = [0 if x < 0.125 else 2 for x in u]
    log_rho = [math.log(q[i]) - math.log(p[i]) for i in drawn]
    per = {
        "k1": [-lr for lr in log_rho],
        "k2": [0.5 * lr * lr for lr in log_rho],
        "k3": [math.expm1(lr) - lr for lr in log_rho],
    }
    for name, values in per.items():
        expected = [math.fsum(values[3 * i : 3 * i + 3]) / 3 for i in range(5)]
        assert reps[name].tolist() == pytest.approx(expected, rel=1e-14)
    table = estimator_table(p, q, n_samples=3, n_repeats=5, seed=7)
    kl = 0.125 * math.log(0.125 / 0.25) + 0.875 * math.log(0.875 / 0.25)
    assert table["exact KL"].tolist() == pytest.approx([kl] * 3, rel=1e-14)
    assert table.loc["k1", "MC mean"] == pytest.approx(math.fsum(per["k1"]) / 15, rel=1e-14)
    assert table.loc["k1", "exact bias"] == pytest.approx(0.0, abs=1e-15)
    # k3 is unbiased only where π_ref's support lies within π's: here E_π[ρ − 1] = 0.5 − 1
    assert table.loc["k3", "exact bias"] == pytest.approx(-0.5, rel=1e-14)


def test_estimates_where_the_reference_has_no_mass():
    """The variance was NaN (inf − inf) where π_ref = 0 on π's support; float or out-of-range
    sample indices raised IndexError."""
    moments = exact_estimator_moments([0.5, 0.5], [1.0, 0.0])
    assert all(m == (math.inf, math.inf) for m in moments.values())
    got = kl_estimates([0.5, 0.5], [1.0, 0.0], [0, 1])
    assert got["k1"].tolist() == pytest.approx([-math.log(2), math.inf])
    assert got["k3"].tolist()[1] == math.inf
    with pytest.raises(ValueError, match="integer indices"):
        kl_estimates([0.5, 0.5], [0.25, 0.75], torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="must index the 2 responses"):
        kl_estimates([0.5, 0.5], [0.25, 0.75], [0, 2])
    with pytest.raises(ValueError, match="must index the 2 responses"):
        kl_estimates([0.5, 0.5], [0.25, 0.75], [-1])


# ----------------------------------------------------------------------------- LogitsFit


@pytest.mark.parametrize("maximise", [False, True])
def test_logits_fit_fields_on_an_exact_path(maximise):
    # f(l) = ½‖l − c‖² (or −f, maximised): l_{k+1} = l_k − ½(l_k − c) = c + 2^-(k+1) (l_0 − c)
    c, l0 = [Fraction(1), Fraction(-3), Fraction(1, 2)], [Fraction(0)] * 3
    target = torch.tensor([float(v) for v in c], dtype=torch.float64)
    sign = -1.0 if maximise else 1.0

    def objective(logits):
        return sign * 0.5 * ((logits - target) ** 2).sum()

    fit = optimise_logits(objective, [0.0, 0.0, 0.0], steps=5, lr=0.5, maximise=maximise)
    assert isinstance(fit, LogitsFit)
    gaps = [a - b for a, b in zip(l0, c, strict=True)]
    history = [float(sign * sum((Fraction(1, 2**k) * g) ** 2 for g in gaps) / 2) for k in range(5)]
    final = [float(b + Fraction(1, 2**5) * g) for b, g in zip(c, gaps, strict=True)]
    assert fit.history.tolist() == history and fit.history.shape == (5,)
    assert fit.logits.tolist() == final and not fit.logits.requires_grad
    e = np.exp(np.array(final) - max(final))
    assert fit.probs.tolist() == pytest.approx((e / e.sum()).tolist(), rel=1e-15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.probs = fit.logits


def test_logits_fit_after_one_step():
    fit = optimise_logits(lambda x: (x**2).sum(), torch.tensor([1.0, 2.0]), steps=1, lr=0.25)
    assert fit.history.tolist() == [5.0]  # before the only update
    assert fit.logits.tolist() == [0.5, 1.0]  # x − 0.25 · 2x
    assert fit.probs.sum().item() == pytest.approx(1.0, abs=1e-7)
