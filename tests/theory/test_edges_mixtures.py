"""kl_helpers.theory.mixtures at its edges (issue 30): GaussianMixture refusing empty, unequal,
non-normalised, negative and NaN weights and zero, negative or NaN sigmas; log_pdf and
normal_log_pdf against scipy (x = 0, ±40, ±1e3 where the density underflows: log space stays finite;
lists, float32), one component equal to the normal; moment_match against sums of exact fractions;
quadrature_grid's refusals; kl_mixture_to_normal and kl_normal_to_mixture against
scipy.integrate.quad at μ = 0, 3, -29, σ = 0.05..20, a single-component P against the Gaussian
closed form, batches of μ and σ; forward KL with Q far off the grid or very narrow (exact), and the
reverse KL refusing a Q the grid cannot hold (μ = 40 or 100; σ = 0.005 on step 0.02) and the forward
KL a P off the grid; kl_landscape's shape and values, a bad direction; fit_gaussian and fit_softmax
refusals, path lengths, steps = 1, the free family reaching P exactly in the forward direction, a
zero in P making the reverse KL infinite (ValueError), FitResult.final; unimodal_logits against the
formula in float64 Python for float32/float64 θ, a centre off the grid, s → 0 (one class) and s → ∞
(uniform), K = 1 and 0, gradients against the closed form; free_logits as the identity for batches,
K mismatch and 0-d θ refused."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from kl_helpers.theory.mixtures import (
    FitConfig,
    GaussianMixture,
    fit_gaussian,
    fit_softmax,
    free_logits,
    kl_landscape,
    kl_mixture_to_normal,
    kl_normal_to_mixture,
    moment_match,
    normal_log_pdf,
    quadrature_grid,
    unimodal_logits,
)

P = GaussianMixture()


def scipy_log_p(x, mixture=P):
    comps = [
        math.log(w) + stats.norm.logpdf(x, m, s)
        for w, m, s in zip(mixture.weights, mixture.means, mixture.sigmas, strict=True)
    ]
    return special.logsumexp(comps, axis=0)


@pytest.mark.parametrize(
    "kw",
    [
        {"weights": (), "means": (), "sigmas": ()},
        {"weights": (1.0,), "means": (0.0, 1.0), "sigmas": (1.0,)},
        {"weights": (0.5, 0.6)},
        {"weights": (1.2, -0.2)},
        {"weights": (math.nan, 1.0)},
        {"sigmas": (1.0, 0.0)},
        {"sigmas": (-1.0, 1.0)},
        {"sigmas": (math.nan, 1.0)},
    ],
)
def test_mixture_refuses(kw):
    with pytest.raises(ValueError):
        GaussianMixture(**kw)


def test_log_pdfs_against_scipy():
    x = [0.0, 1.5, -40.0, 40.0, -1e3, 1e3]
    got = P.log_pdf(x)
    assert got.dtype == torch.float64 and torch.isfinite(got).all()
    assert got.tolist() == pytest.approx(list(scipy_log_p(np.array(x))), rel=1e-12)
    f32 = P.log_pdf(torch.tensor([0.0, 2.0]))
    assert f32.dtype == torch.float32
    assert f32.tolist() == pytest.approx(list(scipy_log_p(np.array([0.0, 2.0]))), rel=1e-6)
    one = GaussianMixture((1.0,), (2.0,), (0.5,))
    xs = torch.tensor(x, dtype=torch.float64)
    normal = normal_log_pdf(
        xs, torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    )
    assert torch.allclose(one.log_pdf(xs), normal, rtol=1e-14)
    assert normal.tolist() == pytest.approx(list(stats.norm.logpdf(x, 2.0, 0.5)), rel=1e-12)


def test_moment_match_against_fractions():
    mixture = GaussianMixture((0.25, 0.5, 0.25), (-3.0, 0.5, 7.0), (1.0, 0.25, 2.0))
    w, m, s = ([Fraction(v) for v in vs] for vs in (mixture.weights, mixture.means, mixture.sigmas))
    mean = sum(a * b for a, b in zip(w, m, strict=True))
    var = sum(a * (c * c + b * b) for a, b, c in zip(w, m, s, strict=True)) - mean * mean
    got_mean, got_sd = moment_match(mixture)
    assert got_mean == float(mean) and got_sd == pytest.approx(math.sqrt(var), rel=1e-15)
    assert moment_match(GaussianMixture((1.0,), (4.0,), (3.0,))) == (4.0, 3.0)


@pytest.mark.parametrize(
    ("lo", "hi", "n"), [(0.0, 0.0, 10), (1.0, -1.0, 10), (0.0, 1.0, 2), (math.nan, 1.0, 10)]
)
def test_quadrature_grid_refuses(lo, hi, n):
    with pytest.raises(ValueError, match="need hi > lo and n >= 3"):
        quadrature_grid(lo, hi, n)


def quad_kl(mu, sigma, direction, mixture=P):
    def integrand(x):
        lp, lq = scipy_log_p(x, mixture), stats.norm.logpdf(x, mu, sigma)
        a, b = (lp, lq) if direction == "forward" else (lq, lp)
        return math.exp(a) * (a - b) if a > -745 else 0.0

    points = sorted({*mixture.means, mu})
    return integrate.quad(
        integrand, -250, 250, points=points, limit=800, epsabs=1e-11, epsrel=1e-11
    )[0]


@pytest.mark.parametrize(
    ("mu", "sigma"), [(0.0, 1.0), (3.0, 0.05), (3.0, 1.0), (-29.0, 1.0), (0.0, 20.0), (0.6, 3.1)]
)
def test_kls_against_quad(mu, sigma):
    grid = quadrature_grid(-200.0, 200.0, 40001)  # step 0.01, wide enough for σ = 20
    assert float(kl_mixture_to_normal(P, mu, sigma, grid)) == pytest.approx(
        quad_kl(mu, sigma, "forward"), rel=1e-7
    )
    assert float(kl_normal_to_mixture(P, mu, sigma, grid)) == pytest.approx(
        quad_kl(mu, sigma, "reverse"), rel=1e-7
    )


def test_single_component_against_the_gaussian_closed_form():
    one = GaussianMixture((1.0,), (1.0,), (2.0,))

    def closed(m1, s1, m2, s2):  # KL(N(m1, s1²) ‖ N(m2, s2²))
        return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5

    mus, sigmas = (
        torch.tensor([-1.0, 0.0, 2.5], dtype=torch.float64),
        torch.tensor(0.7, dtype=torch.float64),
    )
    fwd, rev = kl_mixture_to_normal(one, mus, sigmas), kl_normal_to_mixture(one, mus, sigmas)
    assert fwd.shape == rev.shape == (3,)
    for i, m in enumerate(mus.tolist()):
        assert float(fwd[i]) == pytest.approx(closed(1.0, 2.0, m, 0.7), rel=1e-9)
        assert float(rev[i]) == pytest.approx(closed(m, 0.7, 1.0, 2.0), rel=1e-9)


def test_forward_kl_is_exact_for_any_q():
    # Q far off the grid or very narrow: log q is exact, P is on the grid
    for mu, sigma in ((40.0, 1.0), (100.0, 1.0), (3.0, 0.005)):
        assert float(kl_mixture_to_normal(P, mu, sigma)) == pytest.approx(
            quad_kl(mu, sigma, "forward"), rel=1e-7
        )


@pytest.mark.parametrize(
    ("mu", "sigma"), [(40.0, 1.0), (100.0, 1.0), (3.0, 0.005), (29.5, 1.0), (0.0, 25.0)]
)
def test_reverse_kl_refuses_a_q_the_grid_cannot_hold(mu, sigma):
    # failed before the fix: μ = 40 gave 2e-21 nats and μ = 100 gave 0 (true: hundreds), and
    # σ = 0.005 gave 9.27 nats (true: 5.31)
    with pytest.raises(ValueError, match=r"Q = N\(μ, σ²\) has mass .* not 1"):
        kl_normal_to_mixture(P, mu, sigma)
    with pytest.raises(ValueError, match="not 1"):
        kl_landscape(P, "reverse", torch.tensor([0.0, mu]), torch.tensor([1.0, sigma]))


def test_forward_kl_refuses_a_p_off_the_grid():
    far = GaussianMixture((0.5, 0.5), (0.0, 50.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="the mixture P has mass 0.5"):
        kl_mixture_to_normal(far, 0.0, 1.0)


def test_kl_landscape():
    mus = torch.linspace(-2, 2, 5, dtype=torch.float64)
    sigmas = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    for direction, fn in (("forward", kl_mixture_to_normal), ("reverse", kl_normal_to_mixture)):
        land = kl_landscape(P, direction, mus, sigmas)
        assert land.shape == (3, 5)
        for i, s in enumerate(sigmas):
            for j, m in enumerate(mus):
                assert torch.allclose(land[i, j], fn(P, m, s), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown direction"):
        kl_landscape(P, "js", mus, sigmas)


@pytest.mark.parametrize(
    "config",
    [
        FitConfig(direction="js"),
        FitConfig(optimiser="lbfgs"),
        FitConfig(steps=0),
        FitConfig(lr=0.0),
        FitConfig(lr=-1.0),
    ],
)
def test_fits_refuse_bad_configs(config):
    with pytest.raises(ValueError):
        fit_gaussian(P, (0.0, 1.0), config)
    with pytest.raises(ValueError):
        fit_softmax(torch.tensor([0.5, 0.5]), (0.0, 0.0), "free", config)


def test_fit_gaussian_path_and_start():
    fit = fit_gaussian(P, (0.5, 2.0), FitConfig(steps=1, lr=0.01))
    assert fit.params.shape == (2, 2) and fit.losses.shape == (2,)
    assert fit.params[0].tolist() == pytest.approx([0.5, 2.0], rel=1e-15)
    assert float(fit.losses[0]) == pytest.approx(
        float(kl_mixture_to_normal(P, 0.5, 2.0)), rel=1e-12
    )
    assert fit.final == {"mu": float(fit.params[-1, 0]), "sigma": float(fit.params[-1, 1])}
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="start sigma must be > 0"):
            fit_gaussian(P, (0.0, bad))


def test_fit_softmax_edges():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    free = fit_softmax(p, torch.zeros(4), "free", FitConfig(steps=400, lr=0.1))
    assert free.params.shape == (401, 4) and free.names == ("q0", "q1", "q2", "q3")
    assert torch.allclose(free.params[-1], p, atol=1e-6)
    assert free.params[0].tolist() == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError, match="free logits need 4 parameters"):
        fit_softmax(p, (0.0, 0.0), "free")
    with pytest.raises(ValueError, match="unknown family"):
        fit_softmax(p, (0.0, 0.0), "bimodal")
    with pytest.raises(ValueError, match="one table"):
        fit_softmax(p[None], (0.0, 0.0))
    zero = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    forward = fit_softmax(zero, (1.0, 0.0), config=FitConfig(steps=5))
    assert torch.isfinite(forward.losses).all()
    with pytest.raises(ValueError, match="cannot be descended"):
        fit_softmax(zero, (1.0, 0.0), config=FitConfig(direction="reverse", steps=5))


# ----------------------------------------------------------------------------- family logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("c", "log_s"), [(0.0, 0.0), (2.5, -1.0), (-7.0, 3.0), (4.0, 0.5)])
def test_unimodal_logits_against_the_formula(dtype, c, log_s):
    got = unimodal_logits(torch.tensor([c, log_s], dtype=dtype), 6)
    s = math.exp(log_s)
    want = [-0.5 * ((k - c) / s) ** 2 for k in range(6)]
    assert got.dtype == dtype and got.shape == (6,)
    assert got.tolist() == pytest.approx(want, rel=1e-6 if dtype == torch.float32 else 1e-14)


def test_unimodal_logits_at_the_limits_of_the_width():
    narrow = torch.softmax(unimodal_logits(torch.tensor([2.0, -40.0], dtype=torch.float64), 5), -1)
    assert narrow.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # s → 0: all mass on the class at c
    wide = torch.softmax(unimodal_logits(torch.tensor([2.0, 40.0], dtype=torch.float64), 5), -1)
    assert wide.tolist() == pytest.approx([0.2] * 5, rel=1e-15)  # s → ∞: uniform
    assert unimodal_logits(torch.tensor([3.0, 0.0]), 1).tolist() == [-4.5]
    assert unimodal_logits(torch.tensor([3.0, 0.0]), 0).shape == (0,)


def test_unimodal_logits_gradient_is_the_closed_form():
    theta = torch.tensor([1.3, 0.2], dtype=torch.float64, requires_grad=True)
    unimodal_logits(theta, 4).sum().backward()
    c, s2 = 1.3, math.exp(0.4)
    d_c = sum((k - c) / s2 for k in range(4))
    d_log_s = sum((k - c) ** 2 / s2 for k in range(4))
    assert theta.grad.tolist() == pytest.approx([d_c, d_log_s], rel=1e-13)


def test_free_logits_are_theta_itself():
    theta = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], requires_grad=True)
    assert free_logits(theta, 3) is theta
    with pytest.raises(ValueError, match="free logits need 4 parameters, got 3"):
        free_logits(theta, 4)


def test_free_logits_refuse_a_0d_theta():
    # theta.shape[-1] raised IndexError before the fix
    with pytest.raises(ValueError, match="free logits need 1 parameters, got a 0-d"):
        free_logits(torch.tensor(1.0), 1)
