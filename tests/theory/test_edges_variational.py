"""kl_helpers.theory.variational at its edges (issue 30): GaussianModel refusing σ0 or σ of 0, -1
and NaN, an infinite σ0 (flat prior) taken; posterior against exact fractions and at the limits σ →
0 (1e-160: the data mean) and σ0 → 0 (the prior mean), lists, NumPy and float32 data, one
observation, empty and 2-D data refused; log_joint against scipy's normal log densities for scalar
and batched z; log_evidence against scipy's multivariate normal of x (covariance σ²I + σ0²11ᵀ); elbo
= log p(x) − KL(q‖p(z|x)) with KL from the closed form, broadcasting, q_std 0/-1/NaN refused, zero
gradient at the posterior; kl_to_posterior 0 there; fit_elbo's refusals, path lengths, step_size 1
putting the mean on the posterior mean in one step, and convergence for step sizes 0.5 and 1.9;
ElboFit's fields: elbo[i] is the ELBO at (mean[i], std[i]) (log p(x) from scipy's multivariate
normal minus the closed-form KL to the posterior), the first entries the initial q, lengths steps
and steps + 1, the data's dtype, frozen."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from kl_helpers.theory.variational import (
    ElboFit,
    GaussianModel,
    elbo,
    fit_elbo,
    kl_to_posterior,
    log_evidence,
    log_joint,
    posterior,
)

X = [1.0, 2.0, 4.0, -0.5]
MODEL = GaussianModel(prior_mean=0.5, prior_std=2.0, noise_std=1.5)


@pytest.mark.parametrize(
    "kw",
    [{"prior_std": 0.0}, {"noise_std": -1.0}, {"prior_std": math.nan}, {"noise_std": math.nan}],
)
def test_model_refuses(kw):
    with pytest.raises(ValueError, match="must be > 0"):
        GaussianModel(**kw)


def exact_posterior(model, x):
    a = 1 / Fraction(model.prior_std) ** 2
    b = len(x) / Fraction(model.noise_std) ** 2
    mean = (
        Fraction(model.prior_mean) * a + sum(map(Fraction, x)) / Fraction(model.noise_std) ** 2
    ) / (a + b)
    return float(mean), math.sqrt(1 / (a + b))


@pytest.mark.parametrize(
    "convert", [list, np.array, lambda v: torch.tensor(v, dtype=torch.float64)]
)
def test_posterior_against_fractions(convert):
    mean, std = posterior(MODEL, convert(X))
    want_mean, want_std = exact_posterior(MODEL, X)
    assert float(mean) == pytest.approx(want_mean, rel=1e-15) and float(std) == pytest.approx(
        want_std, rel=1e-15
    )
    one = posterior(MODEL, [3.0])
    assert [float(v) for v in one] == pytest.approx(list(exact_posterior(MODEL, [3.0])), rel=1e-15)
    f32 = posterior(MODEL, torch.tensor(X))
    assert f32[0].dtype == f32[1].dtype == torch.float32


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], 3.0])
def test_posterior_refuses_data(bad):
    with pytest.raises(ValueError, match="non-empty 1-D"):
        posterior(MODEL, bad)


def test_posterior_at_its_limits():
    # failed before the fix: both limits gave a NaN mean and a std of 0
    x = torch.tensor(X, dtype=torch.float64)
    sharp = posterior(GaussianModel(prior_mean=0.5, prior_std=2.0, noise_std=1e-160), x)
    assert float(sharp[0]) == pytest.approx(np.mean(X), rel=1e-15)
    assert float(sharp[1]) == pytest.approx(1e-160 / 2, rel=1e-14)
    certain = posterior(GaussianModel(prior_mean=0.5, prior_std=1e-160, noise_std=1.0), x)
    assert float(certain[0]) == 0.5 and float(certain[1]) == pytest.approx(1e-160, rel=1e-14)
    both = posterior(GaussianModel(prior_mean=0.5, prior_std=1e-160, noise_std=3e-160), x)
    w = Fraction(1, 1) / (1 + Fraction(4, 9))  # prior precision share: 1 / (1 + n σ0² / σ²)
    assert float(both[0]) == pytest.approx(
        float(w * Fraction(0.5) + (1 - w) * Fraction(6.5 / 4)), rel=1e-14
    )
    assert float(both[1]) == pytest.approx(1e-160 * math.sqrt(float(w)), rel=1e-14)
    inf_prior = posterior(GaussianModel(prior_std=math.inf, noise_std=1e-160), x)
    assert float(inf_prior[0]) == pytest.approx(np.mean(X), rel=1e-15)
    assert float(inf_prior[1]) == pytest.approx(1e-160 / 2, rel=1e-14)
    flat = posterior(GaussianModel(prior_std=math.inf, noise_std=1.5), x)
    assert float(flat[0]) == pytest.approx(np.mean(X), rel=1e-15)
    assert float(flat[1]) == pytest.approx(1.5 / 2, rel=1e-15)


def test_log_joint_and_evidence_against_scipy():
    x = np.array(X)
    for z in (0.0, 1.3, -40.0):
        want = stats.norm.logpdf(z, 0.5, 2.0) + stats.norm.logpdf(x, z, 1.5).sum()
        assert float(log_joint(MODEL, X, z)) == pytest.approx(want, rel=1e-13)
    batch = log_joint(MODEL, X, torch.tensor([[0.0, 1.3]], dtype=torch.float64))
    assert batch.shape == (1, 2) and float(batch[0, 1]) == pytest.approx(
        float(log_joint(MODEL, X, 1.3)), rel=1e-15
    )
    cov = 1.5**2 * np.eye(4) + 2.0**2 * np.ones((4, 4))
    want = stats.multivariate_normal(mean=np.full(4, 0.5), cov=cov).logpdf(x)
    assert float(log_evidence(MODEL, X)) == pytest.approx(want, rel=1e-13)


def kl_closed(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def test_elbo_is_evidence_minus_kl():
    log_px = float(log_evidence(MODEL, X))
    post_mean, post_std = (float(v) for v in posterior(MODEL, X))
    means = torch.tensor([-3.0, post_mean, 10.0], dtype=torch.float64)
    stds = torch.tensor([[0.1], [post_std], [5.0]], dtype=torch.float64)
    values = elbo(MODEL, X, means, stds)
    assert values.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            want = log_px - kl_closed(float(means[j]), float(stds[i, 0]), post_mean, post_std)
            assert float(values[i, j]) == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert float(kl_to_posterior(MODEL, X, post_mean, post_std)) == pytest.approx(0.0, abs=1e-15)
    m = torch.tensor(post_mean, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(post_std, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(elbo(MODEL, X, m, s), (m, s))
    assert all(abs(float(g)) < 1e-12 for g in grads)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="q_std must be > 0"):
            elbo(MODEL, X, 0.0, bad)


@pytest.mark.parametrize(
    "kw",
    [
        {"steps": 0},
        {"init_std": 0.0},
        {"init_std": -1.0},
        {"step_size": 0.0},
        {"step_size": 2.0},
        {"step_size": math.nan},
    ],
)
def test_fit_elbo_refuses(kw):
    with pytest.raises(ValueError):
        fit_elbo(MODEL, X, **kw)


@pytest.mark.parametrize("step_size", [0.5, 1.0, 1.9])
def test_fit_elbo_paths(step_size):
    fit = fit_elbo(MODEL, X, init_mean=-3.0, init_std=2.0, steps=200, step_size=step_size)
    assert fit.elbo.shape == (200,) and fit.mean.shape == fit.std.shape == (201,)
    assert float(fit.mean[0]) == -3.0 and float(fit.std[0]) == 2.0
    post_mean, post_std = (float(v) for v in posterior(MODEL, X))
    assert float(fit.mean[-1]) == pytest.approx(post_mean, rel=1e-8)  # 0.9**200 at 1.9
    assert float(fit.std[-1]) == pytest.approx(post_std, rel=1e-6)
    if step_size == 1.0:
        assert float(fit.mean[1]) == pytest.approx(post_mean, rel=1e-12)


# ----------------------------------------------------------------------------- ElboFit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elbo_fit_fields_pair_each_elbo_with_the_q_before_its_update(dtype):
    model, xs = GaussianModel(prior_mean=0.5, prior_std=2.0, noise_std=1.5), [1.0, 2.5, -0.5]
    fit = fit_elbo(model, torch.tensor(xs, dtype=dtype), init_mean=-3.0, init_std=4.0, steps=6,
                   step_size=0.5)  # fmt: skip
    assert isinstance(fit, ElboFit)
    assert fit.elbo.shape == (6,) and fit.mean.shape == (7,) and fit.std.shape == (7,)
    assert {fit.elbo.dtype, fit.mean.dtype, fit.std.dtype} == {dtype}
    assert fit.mean[0].item() == -3.0 and fit.std[0].item() == pytest.approx(4.0, rel=1e-7)
    n = len(xs)
    cov = 1.5**2 * np.eye(n) + 2.0**2 * np.ones((n, n))
    log_px = stats.multivariate_normal(mean=[0.5] * n, cov=cov).logpdf(xs)
    precision = 1 / 2.0**2 + n / 1.5**2
    post_m, post_s = (0.5 / 2.0**2 + sum(xs) / 1.5**2) / precision, precision**-0.5
    for i in range(6):
        m, s = fit.mean[i].item(), fit.std[i].item()
        kl = math.log(post_s / s) + (s**2 + (m - post_m) ** 2) / (2 * post_s**2) - 0.5
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert fit.elbo[i].item() == pytest.approx(log_px - kl, rel=tol), i
    assert all(b >= a for a, b in zip(fit.elbo.tolist(), fit.elbo.tolist()[1:], strict=False))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.elbo = fit.mean
