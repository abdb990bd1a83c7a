"""Mixture KL by quadrature vs scipy.integrate.quad; fits vs closed forms; discrete fits."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.testing import assert_close

from kl_helpers.theory.gaussian import kl_normal
from kl_helpers.theory.mixtures import (
    FitConfig,
    GaussianMixture,
    fit_gaussian,
    fit_softmax,
    kl_landscape,
    kl_mixture_to_normal,
    kl_normal_to_mixture,
    moment_match,
    quadrature_grid,
)

MIX = GaussianMixture()


def _scipy_logpdf(mix: GaussianMixture, x: float) -> float:
    comps = [
        math.log(w) + stats.norm(m, s).logpdf(x)
        for w, m, s in zip(mix.weights, mix.means, mix.sigmas, strict=True)
    ]
    return float(np.logaddexp.reduce(comps))


def _quad_kl(log_a, log_b) -> float:
    def integrand(x: float) -> float:
        la = log_a(x)
        return math.exp(la) * (la - log_b(x))

    return integrate.quad(integrand, -40, 40, points=[-3, 0, 3], limit=400)[0]


def test_log_pdf_matches_scipy():
    x = torch.linspace(-10, 10, 41, dtype=torch.float64)
    expected = torch.tensor([_scipy_logpdf(MIX, float(v)) for v in x], dtype=torch.float64)
    assert_close(MIX.log_pdf(x), expected)
    # far tails stay finite in log space (no -inf, no NaN)
    assert torch.isfinite(MIX.log_pdf(torch.tensor([1e3, -1e3], dtype=torch.float64))).all()


@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (3.0, 1.0), (-2.0, 0.5), (0.6, 3.1)])
def test_forward_and_reverse_kl_match_quad(mu, sigma):
    q = stats.norm(mu, sigma)
    fwd = _quad_kl(lambda x: _scipy_logpdf(MIX, x), q.logpdf)
    rev = _quad_kl(q.logpdf, lambda x: _scipy_logpdf(MIX, x))
    assert_close(kl_mixture_to_normal(MIX, mu, sigma), torch.tensor(fwd, dtype=torch.float64))
    assert_close(kl_normal_to_mixture(MIX, mu, sigma), torch.tensor(rev, dtype=torch.float64))


def test_one_component_mixture_reduces_to_gaussian_kl():
    one = GaussianMixture(weights=(1.0,), means=(1.0,), sigmas=(2.0,))
    for mu_q in (3.0, 5.0):  # the article's numbers: 2.8068 and 8.8068 nats... for σ_Q = 1
        assert_close(kl_mixture_to_normal(one, mu_q, 1.0), kl_normal(1.0, 2.0, mu_q, 1.0))
        assert_close(kl_normal_to_mixture(one, mu_q, 1.0), kl_normal(mu_q, 1.0, 1.0, 2.0))


def test_moment_match_matches_quad_moments():
    mean = integrate.quad(lambda x: x * math.exp(_scipy_logpdf(MIX, x)), -40, 40, limit=200)[0]
    var = integrate.quad(
        lambda x: (x - mean) ** 2 * math.exp(_scipy_logpdf(MIX, x)), -40, 40, limit=200
    )[0]
    m, s = moment_match(MIX)
    assert math.isclose(m, mean, abs_tol=1e-9) and math.isclose(s, math.sqrt(var), rel_tol=1e-9)


def test_batched_kl_landscape_matches_pointwise():
    mus = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    sigmas = torch.tensor([0.5, 2.0], dtype=torch.float64)
    land = kl_landscape(MIX, "reverse", mus, sigmas)
    assert land.shape == (2, 3)
    assert_close(land[1, 2], kl_normal_to_mixture(MIX, 2.0, 2.0))


def test_forward_fit_is_moment_matching_from_any_start():
    m, s = moment_match(MIX)
    for start in [(-1.0, 0.7), (1.0, 0.7), (4.0, 2.0)]:
        fit = fit_gaussian(MIX, start, FitConfig(direction="forward"))
        assert math.isclose(fit.final["mu"], m, abs_tol=1e-4)
        assert math.isclose(fit.final["sigma"], s, abs_tol=1e-4)


def test_reverse_fit_locks_onto_the_mode_on_its_side():
    left = fit_gaussian(MIX, (-1.0, 0.7), FitConfig(direction="reverse"))
    right = fit_gaussian(MIX, (1.0, 0.7), FitConfig(direction="reverse"))
    assert abs(left.final["mu"] - MIX.means[0]) < 0.1 and abs(left.final["sigma"] - 1) < 0.1
    assert abs(right.final["mu"] - MIX.means[1]) < 0.1 and abs(right.final["sigma"] - 1) < 0.1
    # the path's objective agrees with the public reverse-KL function at the end point
    end = kl_normal_to_mixture(MIX, right.final["mu"], right.final["sigma"])
    assert_close(right.losses[-1], end)
    # a stationary point: the gradient at the end is ~0
    theta = torch.tensor([right.final["mu"], math.log(right.final["sigma"])], dtype=torch.float64)
    theta.requires_grad_(True)
    kl = kl_normal_to_mixture(MIX, theta[0], theta[1].exp(), quadrature_grid())
    (g,) = torch.autograd.grad(kl, theta)
    assert g.abs().max() < 1e-6


def test_fit_path_shape_and_monotone_sgd():
    cfg = FitConfig(direction="forward", optimiser="sgd", lr=0.5, steps=50)
    fit = fit_gaussian(MIX, (0.0, 1.0), cfg)
    assert fit.params.shape == (51, 2) and fit.losses.shape == (51,)
    assert_close(fit.params[0], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert (fit.losses[1:] <= fit.losses[:-1] + 1e-12).all()
    again = fit_gaussian(MIX, (0.0, 1.0), cfg)
    assert torch.equal(fit.params, again.params)  # deterministic


P7 = torch.tensor([0.01, 0.40, 0.08, 0.002, 0.08, 0.42, 0.008], dtype=torch.float64)


def test_discrete_forward_unimodal_matches_moments_of_k_and_k2():
    # Q ∝ exp(−(k−c)²/2s²) is an exponential family in (k, k²): forward KL matches both moments.
    p = P7 / P7.sum()
    fit = fit_softmax(p, (2.0, -0.5), "unimodal", FitConfig(direction="forward", steps=800))
    q = fit.params[-1]
    k = torch.arange(7, dtype=torch.float64)
    assert_close((q * k).sum(), (p * k).sum(), atol=1e-4, rtol=0)
    assert_close((q * k**2).sum(), (p * k**2).sum(), atol=1e-3, rtol=0)


def test_discrete_reverse_unimodal_depends_on_start():
    p = P7 / P7.sum()
    cfg = FitConfig(direction="reverse", steps=800)
    left = fit_softmax(p, (2.0, -0.5), "unimodal", cfg).params[-1]
    right = fit_softmax(p, (4.0, -0.5), "unimodal", cfg).params[-1]
    assert left.argmax() == 1 and right.argmax() == 5
    assert left[4:].sum() < 0.01 and right[:3].sum() < 0.01


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_discrete_free_logits_recover_p(direction):
    p = P7 / P7.sum()
    fit = fit_softmax(p, torch.zeros(7), "free", FitConfig(direction=direction, steps=800))
    assert_close(fit.params[-1], p, atol=1e-4, rtol=0)


def test_discrete_zero_in_p_forward_ok_reverse_inf():
    p = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    fwd = fit_softmax(p, torch.zeros(3), "free", FitConfig(direction="forward", steps=300))
    assert torch.isfinite(fwd.losses).all() and fwd.params[-1][1] < 0.01
    with pytest.raises(ValueError, match="objective is inf"):
        fit_softmax(p, (1.0, 0.0), "unimodal", FitConfig(direction="reverse", steps=1))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(weights=(0.5, 0.6))
    with pytest.raises(ValueError, match="sigmas must be > 0"):
        GaussianMixture(sigmas=(1.0, 0.0))
    with pytest.raises(ValueError, match="equal length"):
        GaussianMixture(means=(0.0,))
    with pytest.raises(ValueError, match="unknown direction"):
        fit_gaussian(MIX, (0.0, 1.0), FitConfig(direction="sideways"))
    with pytest.raises(ValueError, match="unknown optimiser"):
        fit_gaussian(MIX, (0.0, 1.0), FitConfig(optimiser="lbfgs"))
    with pytest.raises(ValueError, match="start sigma"):
        fit_gaussian(MIX, (0.0, -1.0))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        kl_mixture_to_normal(MIX, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown family"):
        fit_softmax(P7 / P7.sum(), (1.0, 0.0), "bimodal")
    with pytest.raises(ValueError, match="free logits need 7"):
        fit_softmax(P7 / P7.sum(), torch.zeros(3), "free")
    with pytest.raises(ValueError, match="one table"):
        fit_softmax(torch.ones(2, 3) / 3, (1.0, 0.0))
    with pytest.raises(ValueError, match="hi > lo"):
        quadrature_grid(1.0, 0.0)
