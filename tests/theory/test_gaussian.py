"""Gaussian KL: closed form vs numerical integration and torch.distributions."""

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.theory.gaussian import kl_normal, kl_normal_numeric, normal_pdf


@pytest.mark.parametrize(
    ("mu_p", "s_p", "mu_q", "s_q"),
    [(1.0, 2.0, 3.0, 1.0), (1.0, 2.0, 5.0, 1.0), (0.0, 1.0, 0.0, 1.0), (-2.0, 0.5, 1.0, 3.0)],
)
def test_closed_form_matches_quadrature(mu_p, s_p, mu_q, s_q):
    closed = kl_normal(mu_p, s_p, mu_q, s_q)
    numeric = kl_normal_numeric(mu_p, s_p, mu_q, s_q)
    assert_close(closed, torch.tensor(numeric, dtype=torch.float64), atol=1e-8, rtol=1e-8)


def test_matches_torch_distributions_broadcast():
    mu_q = torch.linspace(-3, 5, 9, dtype=torch.float64)
    ours = kl_normal(1.0, 2.0, mu_q, 1.0)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(1.0, dtype=torch.float64), 2.0),
        torch.distributions.Normal(mu_q, torch.ones_like(mu_q)),
    )
    assert_close(ours, ref)


def test_article_values_and_minimum():
    assert round(kl_normal(1.0, 2.0, 3.0, 1.0).item(), 4) == 2.8069
    assert round(kl_normal(1.0, 2.0, 5.0, 1.0).item(), 4) == 8.8069
    mus = torch.linspace(-3, 5, 801, dtype=torch.float64)
    values = kl_normal(1.0, 2.0, mus, 1.0)
    assert_close(mus[values.argmin()], torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_sigma_must_be_positive(bad):
    with pytest.raises(ValueError, match="must be > 0"):
        kl_normal(0.0, bad, 0.0, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        kl_normal(0.0, 1.0, 0.0, bad)
    with pytest.raises(ValueError, match="must be > 0"):
        kl_normal_numeric(0.0, bad, 0.0, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        normal_pdf([0.0], 0.0, bad)
