"""kl_helpers.theory.variational against torch.distributions and numerical integration (float64)."""

import math

import pytest
import torch
from scipy import integrate, stats
from torch.testing import assert_close

from kl_helpers.theory.variational import (
    GaussianModel,
    elbo,
    fit_elbo,
    kl_to_posterior,
    log_evidence,
    log_joint,
    posterior,
)

MODEL = GaussianModel(prior_mean=0.5, prior_std=2.0, noise_std=1.5)
X = torch.tensor([1.2, 2.5, -0.3, 1.9, 0.7], dtype=torch.float64)


def naive_log_joint(z):
    return stats.norm(MODEL.prior_mean, MODEL.prior_std).logpdf(z) + sum(
        stats.norm(z, MODEL.noise_std).logpdf(x) for x in X.tolist()
    )


def test_log_joint_matches_scipy():
    for z in (-1.0, 0.4, 3.0):
        assert log_joint(MODEL, X, torch.tensor(z)).item() == pytest.approx(naive_log_joint(z))


def test_log_evidence_matches_marginal_gaussian_and_quadrature():
    n = X.numel()
    cov = MODEL.noise_std**2 * torch.eye(n, dtype=torch.float64) + MODEL.prior_std**2 * torch.ones(
        n, n, dtype=torch.float64
    )
    mvn = torch.distributions.MultivariateNormal(torch.full((n,), MODEL.prior_mean), cov)
    assert_close(log_evidence(MODEL, X), mvn.log_prob(X))
    evidence, _ = integrate.quad(lambda z: math.exp(naive_log_joint(z)), -30, 30, limit=200)
    assert log_evidence(MODEL, X).item() == pytest.approx(math.log(evidence), rel=1e-8)


def test_posterior_matches_normalised_joint():
    mean, std = posterior(MODEL, X)
    evidence = math.exp(log_evidence(MODEL, X).item())
    for z in (-0.5, 1.0, 2.0):
        density = math.exp(naive_log_joint(z)) / evidence
        assert density == pytest.approx(stats.norm(mean.item(), std.item()).pdf(z), rel=1e-9)


@pytest.mark.parametrize(("m", "s"), [(0.0, 1.0), (1.1, 0.6), (-2.0, 3.0)])
def test_elbo_matches_quadrature_and_identity(m, s):
    q = stats.norm(m, s)
    numeric, _ = integrate.quad(
        lambda z: q.pdf(z) * (naive_log_joint(z) - q.logpdf(z)), m - 30 * s, m + 30 * s, limit=200
    )
    value = elbo(MODEL, X, torch.tensor(m), torch.tensor(s))
    assert value.item() == pytest.approx(numeric, rel=1e-8)
    # ELBO = log p(x) − KL(q‖p(z|x)), exactly.
    assert_close(value, log_evidence(MODEL, X) - kl_to_posterior(MODEL, X, m, s))
    assert value < log_evidence(MODEL, X)


def test_elbo_equals_log_evidence_at_posterior():
    mean, std = posterior(MODEL, X)
    assert_close(elbo(MODEL, X, mean, std), log_evidence(MODEL, X))
    assert kl_to_posterior(MODEL, X, mean, std).item() == pytest.approx(0.0, abs=1e-15)


def test_elbo_broadcasts_over_q_parameters():
    means = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    stds = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    batched = elbo(MODEL, X, means, stds)
    single = torch.stack([elbo(MODEL, X, m, s) for m, s in zip(means, stds, strict=True)])
    assert_close(batched, single)


@pytest.mark.parametrize("start", [(-5.0, 0.1), (4.0, 5.0)])
def test_elbo_ascent_recovers_posterior(start):
    fit = fit_elbo(MODEL, X, init_mean=start[0], init_std=start[1], steps=400)
    mean, std = posterior(MODEL, X)
    assert_close(fit.mean[-1], mean, atol=1e-8, rtol=0)
    assert_close(fit.std[-1], std, atol=1e-8, rtol=0)
    assert fit.elbo[-1].item() == pytest.approx(log_evidence(MODEL, X).item(), abs=1e-10)
    assert (fit.elbo.diff() >= -1e-12).all()  # monotone ascent
    assert fit.mean.shape == (401,)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="prior_std"):
        GaussianModel(prior_std=0.0)
    with pytest.raises(ValueError, match="q_std"):
        elbo(MODEL, X, torch.tensor(0.0), torch.tensor(-1.0))
    with pytest.raises(ValueError, match="non-empty"):
        posterior(MODEL, torch.tensor([], dtype=torch.float64))
    with pytest.raises(ValueError, match="step_size"):
        fit_elbo(MODEL, X, step_size=2.5)
    with pytest.raises(ValueError, match="init_std"):
        fit_elbo(MODEL, X, init_std=0.0)
