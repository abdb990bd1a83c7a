"""kl_helpers.theory.rlhf against naive float64 sums: objective, closed-form optimum, KL
estimators."""

import math

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.divergences import kl_divergence
from kl_helpers.theory.rlhf import (
    KL_ESTIMATORS,
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

REF = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.1], dtype=torch.float64)
R = torch.tensor([1.0, 0.6, 0.3, -0.2, -1.0], dtype=torch.float64)


def naive_objective(pi, ref, r, beta):
    return sum(
        p * rr - beta * (p * math.log(p / q) if p > 0 else 0.0)
        for p, q, rr in zip(pi, ref, r, strict=True)
    )


def naive_optimum(ref, r, beta):
    w = [q * math.exp(rr / beta) for q, rr in zip(ref, r, strict=True)]
    return [v / sum(w) for v in w]


def test_objective_matches_naive_sum():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5], dtype=torch.float64)
    pi = torch.softmax(logits, 0).tolist()
    for beta in (0.1, 1.0, 7.0):
        value = kl_regularised_reward(logits, REF.log(), R, beta)
        assert value.item() == pytest.approx(naive_objective(pi, REF.tolist(), R.tolist(), beta))


@pytest.mark.parametrize("beta", [0.2, 1.0, 3.0, 30.0])
def test_optimal_policy_matches_naive_normalisation(beta):
    expected = torch.tensor(naive_optimum(REF.tolist(), R.tolist(), beta), dtype=torch.float64)
    assert_close(optimal_policy(REF, R, beta), expected)


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_optimal_value_is_the_maximum(beta):
    star = optimal_policy(REF, R, beta)
    value = optimal_value(REF, R, beta)
    assert_close(value, kl_regularised_reward(star.log(), REF.log(), R, beta))
    g = torch.Generator().manual_seed(1)
    for _ in range(50):  # any other policy scores lower (Gibbs' variational principle)
        logits = 3 * torch.randn(5, generator=g, dtype=torch.float64)
        assert kl_regularised_reward(logits, REF.log(), R, beta) <= value + 1e-12


def test_small_beta_collapses_on_best_response_without_overflow():
    for beta in (1e-3, 1e-6, 1e-300):
        star = optimal_policy(REF, R, beta)
        assert torch.isfinite(star).all()
        assert_close(star, torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64))
    assert optimal_value(REF, R, 1e-6).item() == pytest.approx(R.max().item(), abs=1e-4)


def test_large_beta_stays_at_reference():
    assert_close(optimal_policy(REF, R, math.inf), REF)
    assert_close(optimal_policy(REF, R, 1e8), REF)
    assert optimal_value(REF, R, math.inf).item() == pytest.approx((REF * R).sum().item())
    big = optimal_value(REF, R, 1e6).item()
    assert big == pytest.approx((REF * R).sum().item(), abs=1e-5)


def test_zero_reference_probability_stays_zero():
    ref = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    r = torch.tensor([10.0, 0.0, 1.0], dtype=torch.float64)
    star = optimal_policy(ref, r, 0.1)
    assert star[0].item() == 0.0 and torch.isfinite(star).all()
    fit = fit_policy(ref, r, 0.5, steps=3000)
    assert torch.isfinite(fit.history).all() and torch.isfinite(fit.probs).all()
    assert_close(fit.probs, optimal_policy(ref, r, 0.5), atol=1e-6, rtol=0)


@pytest.mark.parametrize("beta", [0.05, 0.3, 1.0, 10.0])
def test_gradient_ascent_reaches_closed_form(beta):
    fit = fit_policy(REF, R, beta)
    assert_close(fit.probs, optimal_policy(REF, R, beta), atol=1e-3, rtol=0)
    assert fit.history[-1].item() == pytest.approx(optimal_value(REF, R, beta).item(), abs=1e-3)
    assert fit.history[-1] >= fit.history[0]


def test_optimise_logits_descends_a_quadratic():
    target = torch.tensor([1.0, -2.0], dtype=torch.float64)
    fit = optimise_logits(lambda z: ((z - target) ** 2).sum(), torch.zeros(2, dtype=torch.float64))
    assert_close(fit.logits, target)
    with pytest.raises(ValueError, match="scalar"):
        optimise_logits(lambda z: z, torch.zeros(2), steps=1)


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan])
def test_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        optimal_policy(REF, R, beta)
    with pytest.raises(ValueError, match="beta"):
        kl_regularised_reward(REF.log(), REF.log(), R, beta)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="sum to 1"):
        optimal_policy(torch.tensor([0.5, 0.6]), torch.tensor([0.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="shape"):
        optimal_policy(REF, R[:3], 1.0)
    with pytest.raises(ValueError, match="finite"):
        optimal_policy(REF, torch.full((5,), math.inf, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match="steps"):
        fit_policy(REF, R, 1.0, steps=0)


# ------------------------------------------------------------------ sample-based estimators
PI = optimal_policy(REF, R, 1.0)


def test_estimators_per_sample_match_naive_formulas():
    samples = torch.tensor([0, 1, 2, 3, 4, 0])
    est = kl_estimates(PI, REF, samples)
    for i, x in enumerate(samples.tolist()):
        ratio = REF[x].item() / PI[x].item()
        assert est["k1"][i].item() == pytest.approx(-math.log(ratio))
        assert est["k2"][i].item() == pytest.approx(0.5 * math.log(ratio) ** 2)
        assert est["k3"][i].item() == pytest.approx((ratio - 1) - math.log(ratio))


def test_exact_moments_k1_k3_unbiased_k2_biased():
    exact = kl_divergence(PI, REF).item()
    moments = exact_estimator_moments(PI, REF)
    assert moments["k1"][0] == pytest.approx(exact, abs=1e-12)
    assert moments["k3"][0] == pytest.approx(exact, abs=1e-12)
    assert abs(moments["k2"][0] - exact) > 1e-4
    naive_var = sum(
        p * (-math.log(q / p) - exact) ** 2 for p, q in zip(PI.tolist(), REF.tolist(), strict=True)
    )
    assert moments["k1"][1] == pytest.approx(naive_var)


def test_k2_k3_are_non_negative_k1_is_not():
    g = torch.Generator().manual_seed(0)
    est = kl_estimates(PI, REF, sample_responses(PI, 5000, g))
    assert (est["k2"] >= 0).all() and (est["k3"] >= 0).all()
    assert (est["k1"] < 0).any()


def test_sampling_frequencies_and_determinism():
    n = 200_000
    a = sample_responses(PI, n, torch.Generator().manual_seed(3))
    b = sample_responses(PI, n, torch.Generator().manual_seed(3))
    c = sample_responses(PI, n, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    freq = torch.bincount(a, minlength=5).double() / n
    se = (PI * (1 - PI) / n).sqrt()
    assert ((freq - PI).abs() < 5 * se).all()
    # A zero-probability response is never drawn.
    zero = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    assert (sample_responses(zero, 10_000, torch.Generator().manual_seed(0)) != 1).all()


def test_monte_carlo_table_agrees_with_exact_moments():
    n_samples, n_repeats = 8, 4000
    table = estimator_table(PI, REF, n_samples=n_samples, n_repeats=n_repeats, seed=0)
    assert list(table.index) == list(KL_ESTIMATORS)
    for name in KL_ESTIMATORS:
        row = table.loc[name]
        se = math.sqrt(row["exact variance"] / n_repeats)
        assert abs(row["MC bias"] - row["exact bias"]) < 5 * se
        assert row["MC variance"] == pytest.approx(row["exact variance"], rel=0.15)
    reps = estimator_repetitions(PI, REF, n_samples=n_samples, n_repeats=n_repeats, seed=0)
    assert reps["k1"].shape == (n_repeats,)
    with pytest.raises(ValueError, match="n_repeats"):
        estimator_table(PI, REF, n_repeats=1)


@pytest.mark.parametrize(
    "logits",
    [
        [1e4, -1e4, 0.0, 0.0, 0.0],
        [-1e4, 1e4, 1e4, -1e4, 0.0],
        [0.0, -math.inf, 1.0, 2.0, -math.inf],
    ],
)
def test_objective_extreme_and_masked_logits_give_no_nan(logits):
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    value = kl_regularised_reward(z, REF.log(), R, 0.5)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    pi = torch.softmax(z.detach(), 0).tolist()
    assert value.item() == pytest.approx(naive_objective(pi, REF.tolist(), R.tolist(), 0.5))
