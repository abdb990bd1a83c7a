"""kl_helpers.theory.gaussian at its edges (issue 30): kl_normal, kl_normal_numeric and normal_pdf
against 60-digit mpmath for σ from 1e-300 to 1e300, a KL near 0 (σ one part in 1e8 apart, means
1e-9 apart), shifts small beside |μ|, float32/bfloat16/int/list/NumPy inputs, broadcasting, and
NaN/±inf/bool/string/several values where one number is promised."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.theory.gaussian import kl_normal, kl_normal_numeric, normal_pdf


def mp_kl(mu_p, sigma_p, mu_q, sigma_q):
    """KL(N(μp, σp²)‖N(μq, σq²)) from the closed form in 60 digits."""
    with mpmath.workdps(60):
        mu_p, sigma_p, mu_q, sigma_q = (mpmath.mpf(v) for v in (mu_p, sigma_p, mu_q, sigma_q))
        kl = mpmath.log(sigma_q / sigma_p) + (sigma_p**2 + (mu_p - mu_q) ** 2) / (2 * sigma_q**2)
        return float(kl - mpmath.mpf(1) / 2)


CASES = [
    (1.0, 2.0, 3.0, 1.0),
    (0.0, 1e-300, 1e-300, 1e-300),  # σ² underflows: KL ½
    (0.0, 1e300, 0.0, 1e300),  # σ² overflows: KL 0
    (0.0, 1e200, 1e200, 1e200),
    (0.0, 1.0, 0.0, 1.0 + 1e-8),  # KL 1e-16: the sum of its terms cancels to rounding
    (0.0, 1.0, 1e-9, 1.0),  # KL 5e-19
    (0.0, 1.0 - 1e-6, 0.0, 1.0),
    (0.0, 1e-5, 0.0, 1.0),
    (0.0, 1.0, 0.0, 1e-5),
    (0.0, 100.0, 0.0, 1.0),
    (0.0, 1.0, 1e6, 1.0),
    (0.0, 1.0, 3.0, 1e-3),
    (5.0, 1e-8, 5.0, 1e-8),
]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_kl_normal_against_mpmath(case):
    """σ = 1e±300 gave NaN (σ² over/underflows); KL 1e-16 came out as 2.2e-16."""
    got = kl_normal(*case)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(mp_kl(*case), rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_kl_normal_numeric_against_mpmath(case):
    assert kl_normal_numeric(*case) == pytest.approx(mp_kl(*case), rel=1e-9, abs=1e-10)


def test_numeric_keeps_a_shift_small_beside_the_means():
    """μ = 1e20 and 1e20 + 2^17: the quadrature over x gave 0 instead of 8.6e9."""
    mu_q = 1e20 + 2.0**17
    assert kl_normal_numeric(1e20, 1.0, mu_q, 1.0) == pytest.approx(mp_kl(1e20, 1, mu_q, 1))
    assert kl_normal(1e20, 1.0, mu_q, 1.0).item() == pytest.approx(mp_kl(1e20, 1, mu_q, 1))


@pytest.mark.parametrize("sigma", [1e-20, 1e-30, 1e15, 1e30])
def test_float32_sigmas_whose_square_leaves_float32(sigma):
    """σ = 1e-30 in float32 gave NaN (σ² = 0/0)."""
    args = [torch.tensor(v, dtype=torch.float32) for v in (0.0, sigma, 0.5 * sigma, sigma)]
    got = kl_normal(*args)
    assert got.dtype == torch.float32
    expected = mp_kl(*(a.item() for a in args))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_other_dtypes_and_input_forms_broadcast():
    mu_q = np.linspace(-3.0, 5.0, 9)
    expected = [mp_kl(1.0, 2.0, m, 1.0) for m in mu_q]
    for form in (mu_q, mu_q.tolist(), torch.tensor(mu_q)):
        got = kl_normal(1, 2, form, 1)
        assert got.shape == (9,) and got.dtype == torch.float64
        assert got.tolist() == pytest.approx(expected, rel=1e-14)
    ints = kl_normal(torch.tensor([0, 1]), torch.tensor([1, 2]), 0, 1)
    assert ints.dtype == torch.float64
    assert ints.tolist() == pytest.approx([0.0, mp_kl(1, 2, 0, 1)], abs=1e-15)
    half = kl_normal(torch.tensor(mu_q, dtype=torch.bfloat16), 2.0, 1.0, 1.0)
    assert half.dtype == torch.bfloat16
    assert half.float().tolist() == pytest.approx(
        [mp_kl(m, 2, 1, 1) for m in torch.tensor(mu_q, dtype=torch.bfloat16).tolist()], rel=2e-2
    )
    grid = kl_normal(torch.zeros(3, 1), torch.tensor([[1.0], [2.0], [3.0]]), 0.0, torch.ones(4))
    assert grid.shape == (3, 4)
    torch_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(
            torch.zeros(3, 1, dtype=torch.float64),
            torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64),
        ),
        torch.distributions.Normal(0.0, torch.ones(4, dtype=torch.float64)),
    )
    assert grid.double().flatten().tolist() == pytest.approx(torch_kl.flatten().tolist(), rel=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("position", range(4))
def test_non_finite_arguments_raise(bad, position):
    """σ = NaN gave NaN from the quadrature and σ = inf a NaN KL or SciPy's 'break points'
    error; μ = NaN gave NaN."""
    args = [0.0, 1.0, 0.5, 2.0]
    args[position] = bad
    name = ("mu_p", "sigma_p", "mu_q", "sigma_q")[position]
    with pytest.raises(ValueError, match=name):
        kl_normal(*args)
    with pytest.raises(ValueError, match=name):
        kl_normal_numeric(*args)


@pytest.mark.parametrize("bad", [True, "1", [1.0, 2.0], np.array([1.0, 2.0]), torch.ones(2)])
def test_one_number_where_one_is_promised(bad):
    """A bool was read as 1, a list raised TypeError, several σ a RuntimeError about truth
    values."""
    with pytest.raises(ValueError, match="sigma_p must be one real number"):
        kl_normal_numeric(0.0, bad, 0.0, 1.0)
    with pytest.raises(ValueError, match="sigma must be one real number"):
        normal_pdf([0.0], 0.0, bad)
    with pytest.raises(ValueError, match="mu must be one real number"):
        normal_pdf([0.0], bad, 1.0)


def test_numeric_takes_one_element_tensors_and_numpy_scalars():
    expected = mp_kl(0.0, 1.0, 0.0, 2.0)
    assert kl_normal_numeric(torch.tensor(0.0), torch.tensor([1.0]), 0, 2) == pytest.approx(
        expected
    )
    assert kl_normal_numeric(np.float32(0), np.array(1.0), np.int64(0), 2) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(("mu", "sigma"), [(0.0, 1.0), (3.0, 1e-300), (-2.0, 1e300), (1e20, 1.0)])
def test_normal_pdf_against_mpmath(mu, sigma):
    x = np.array([mu, mu + sigma, mu - 3 * sigma, mu + 40 * sigma])
    with mpmath.workdps(40):
        expected = [float(mpmath.npdf(mpmath.mpf(v), mpmath.mpf(mu), mpmath.mpf(sigma))) for v in x]
    for form in (x, x.tolist(), torch.tensor(x)):
        got = normal_pdf(form, mu, sigma)
        assert isinstance(got, np.ndarray) and got.shape == (4,)
        assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert float(
        normal_pdf(mu, np.float64(mu), torch.tensor(sigma, dtype=torch.float64))
    ) == pytest.approx(expected[0], rel=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_normal_pdf_sigma(bad):
    """σ = NaN gave NaN densities and σ = inf zeros."""
    with pytest.raises(ValueError, match="sigma must be > 0 and finite"):
        normal_pdf([0.0], 0.0, bad)
