"""kl_helpers.theory.fdivergences at its edges (issue 30): every generator under both conventions
against exact fractions / 50-digit mpmath sums and SciPy (rel_entr, jensenshannon), for ratios p/q
that overflow float64 (q = 5e-324), zeros on either side, α at and near 0 and 1 and far from them,
the conjugate, batches, lists/NumPy/float32 input, validate=False on unnormalised tables, and
parameters given where they do not belong."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from kl_helpers.theory.fdivergences import (
    GENERATORS,
    FGenerator,
    conjugate,
    d_f,
    f_divergence,
    get_generator,
    i_f,
)

mpmath.mp.dps = 50


def mp_terms(name, alpha=None):
    """q·f(p/q) in mpmath for p, q > 0 (the closed forms, not the package's)."""
    if name == "kl":
        return lambda p, q: p * mpmath.log(p / q)
    if name == "reverse_kl":
        return lambda p, q: q * mpmath.log(q / p)
    if name == "jensen_shannon":
        return lambda p, q: (p * mpmath.log(2 * p / (p + q)) + q * mpmath.log(2 * q / (p + q))) / 2
    if name == "squared_hellinger":
        return lambda p, q: (mpmath.sqrt(p) - mpmath.sqrt(q)) ** 2 / 2
    if name == "total_variation":
        return lambda p, q: abs(p - q) / 2
    if name == "pearson_chi2":
        return lambda p, q: (p - q) ** 2 / q
    a = mpmath.mpf(alpha)
    if a == 1:
        return lambda p, q: p * mpmath.log(p / q) - p + q
    if a == 0:
        return lambda p, q: q * mpmath.log(q / p) + p - q
    return lambda p, q: (p**a * q ** (1 - a) - a * p - (1 - a) * q) / (a * (a - 1))


LIMITS = {  # (f(0+), f'(inf)) of each named generator
    "kl": (0, math.inf),
    "reverse_kl": (math.inf, 0),
    "jensen_shannon": (math.log(2) / 2, math.log(2) / 2),
    "squared_hellinger": (0.5, 0.5),
    "total_variation": (0.5, 0.5),
    "pearson_chi2": (1, math.inf),
}


def mp_d_f(p, q, name, alpha=None):
    """D_f(P‖Q) = Σ q f(p/q) in mpmath, zeros by their limits."""
    term = mp_terms(name, alpha)
    if name == "alpha":
        a = alpha
        at_zero, slope = (1 / a if a > 0 else math.inf), (1 / (1 - a) if a < 1 else math.inf)
    else:
        at_zero, slope = LIMITS[name]
    total = mpmath.mpf(0)
    for x, y in zip(p, q, strict=True):
        x, y = mpmath.mpf(x), mpmath.mpf(y)
        if x > 0 and y > 0:
            total += term(x, y)
        elif x > 0:
            total += x * slope if slope != math.inf else mpmath.inf
        elif y > 0:
            total += y * at_zero if at_zero != math.inf else mpmath.inf
    return float(total)


NAMED = [n for n in GENERATORS if n != "alpha"]
PAIRS = [
    ([0.2, 0.5, 0.3], [0.1, 0.6, 0.3]),
    ([0.5, 0.5 - 5e-324, 5e-324], [5e-324, 0.5, 0.5 - 5e-324]),  # p/q overflows float64
    ([1 - 1e-300, 1e-300], [1e-300, 1 - 1e-300]),
    ([0.0, 0.4, 0.6], [0.3, 0.7, 0.0]),  # a zero on each side
    ([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]),  # P = Q: 0
]


@pytest.mark.parametrize("pair", PAIRS, ids=range(len(PAIRS)))
@pytest.mark.parametrize("name", NAMED)
def test_named_generators_against_mpmath(name, pair):
    """q = 5e-324 beside p = 0.5 gave +inf for every generator (p/q overflows; KL is 372 nats,
    TV 0.5); q = 1e-300 gave χ² = inf for 1e300."""
    p, q = pair
    expected = mp_d_f(p, q, name)
    got = d_f(p, q, name)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert i_f(p, q, name).item() == pytest.approx(mp_d_f(q, p, name), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(
    "alpha", [-3.0, -1e-12, 0.0, 1e-12, 0.5, 1 - 1e-12, 1.0, 1 + 1e-9, 2.0, 7.5]
)
@pytest.mark.parametrize("pair", PAIRS[:3] + PAIRS[4:], ids=range(4))
def test_alpha_generator_against_mpmath(alpha, pair):
    """α = 1 − 1e-12 lost 4 digits to (x^α − αx − (1 − α))/(α(α − 1)) cancelling."""
    p, q = pair
    expected = mp_d_f(p, q, "alpha", alpha)
    got = d_f(p, q, "alpha", alpha=alpha).item()
    floor = 1e-300 if p != q else 1e-30  # P = Q: 0, which 50-digit mpmath leaves at ~1e-40
    assert got == pytest.approx(expected, rel=1e-10, abs=floor)


def test_alpha_special_cases_and_zero_limits():
    p, q = [0.0, 0.4, 0.6], [0.3, 0.7, 0.0]
    for alpha in (-1.0, 0.0, 0.5, 1.0, 2.0):
        assert d_f(p, q, "alpha", alpha=alpha).item() == pytest.approx(
            mp_d_f(p, q, "alpha", alpha), rel=1e-12
        )
    p, q = [0.2, 0.5, 0.3], [0.1, 0.6, 0.3]
    hellinger = d_f(p, q, "squared_hellinger").item()
    assert d_f(p, q, "alpha", alpha=0.5).item() == pytest.approx(4 * hellinger, rel=1e-14)
    chi2 = d_f(p, q, "pearson_chi2").item()
    assert d_f(p, q, "alpha", alpha=2.0).item() == pytest.approx(chi2 / 2, rel=1e-14)


def test_kl_and_js_against_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.dirichlet(np.full(6, 0.3)), rng.dirichlet(np.full(6, 0.3))
        assert d_f(p, q, "kl").item() == pytest.approx(rel_entr(p, q).sum(), rel=1e-12)
        assert i_f(p, q, "reverse_kl").item() == pytest.approx(rel_entr(p, q).sum(), rel=1e-12)
        js = jensenshannon(p, q) ** 2
        assert d_f(p, q, "jensen_shannon").item() == pytest.approx(js, rel=1e-10)


@pytest.mark.parametrize("name", NAMED)
def test_conjugate_swaps_p_and_q_at_the_edges(name):
    gen = get_generator(name)
    for p, q in PAIRS:
        star = d_f(p, q, conjugate(gen)).item()
        assert star == pytest.approx(mp_d_f(q, p, name), rel=1e-12, abs=1e-300)


def test_generator_given_only_as_f():
    """A user's FGenerator without a perspective falls back to q·f(p/q)."""
    gen = FGenerator("tv by hand", lambda x: 0.5 * (x - 1).abs(), 0.5, 0.5, "½|x − 1|")
    p, q = [0.0, 0.4, 0.6], [0.3, 0.7, 0.0]
    assert d_f(p, q, gen).item() == pytest.approx(0.6)
    assert d_f(p, q, conjugate(gen)).item() == pytest.approx(0.6)


def test_batches_forms_dtypes_and_gradients():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.0, 0.4, 0.6]], dtype=torch.float64)
    q = torch.tensor([[0.1, 0.6, 0.3], [0.3, 0.7, 0.0]], dtype=torch.float64)
    for name in NAMED:
        got = d_f(p, q, name)
        assert got.shape == (2,)
        expected = [mp_d_f(a, b, name) for a, b in zip(p.tolist(), q.tolist(), strict=True)]
        assert got.tolist() == pytest.approx(expected, rel=1e-12)
        assert d_f(p.numpy(), q.tolist(), name).tolist() == got.tolist()
        low = d_f(p.float(), q.float(), name)
        assert low.dtype == torch.float32
        assert low.tolist() == pytest.approx(expected, rel=1e-5)
    leaf = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64, requires_grad=True)
    for name in NAMED:
        (grad,) = torch.autograd.grad(d_f(leaf, [0.0, 0.6, 0.4], name, validate=False), leaf)
        assert not torch.isnan(grad).any()


def test_validate_false_takes_unnormalised_tables():
    p, q = [2.0, 1.0], [1.0, 3.0]
    for name in NAMED:
        assert f_divergence(p, q, name, validate=False).item() == pytest.approx(
            mp_d_f(p, q, name), rel=1e-12
        )
    with pytest.raises(ValueError, match="rows must sum to 1"):
        d_f(p, q, "kl")


def test_bad_names_conventions_and_parameters():
    with pytest.raises(ValueError, match="unknown f-divergence"):
        d_f([0.5, 0.5], [0.5, 0.5], "kll")
    with pytest.raises(ValueError, match="unknown convention"):
        f_divergence([0.5, 0.5], [0.5, 0.5], "kl", convention="J_f")
    with pytest.raises(ValueError, match="bad parameters"):
        d_f([0.5, 0.5], [0.5, 0.5], "kl", alpha=0.5)
    with pytest.raises(ValueError, match="bad parameters"):
        d_f([0.5, 0.5], [0.5, 0.5], "alpha")
    with pytest.raises(ValueError, match="only accepted with a generator name"):
        d_f([0.5, 0.5], [0.5, 0.5], get_generator("kl"), alpha=0.5)
    with pytest.raises(ValueError, match="shape mismatch"):
        d_f([0.5, 0.5], [1.0], "kl")


@pytest.mark.parametrize("alpha", [True, "0.5", None, math.nan, math.inf, [0.5]])
def test_alpha_that_is_no_finite_number(alpha):
    """alpha = True was read as 1 (KL) and alpha = '0.5' as 0.5."""
    with pytest.raises(ValueError, match="alpha must be"):
        get_generator("alpha", alpha=alpha)


def test_alpha_as_numpy_or_tensor():
    p, q = [0.2, 0.8], [0.5, 0.5]
    expected = mp_d_f(p, q, "alpha", 0.25)
    for alpha in (np.float64(0.25), torch.tensor(0.25), np.array(0.25)):
        assert d_f(p, q, "alpha", alpha=alpha).item() == pytest.approx(expected, rel=1e-12)
