"""kl_helpers.theory.optima at its edges (issue 30): the forward and reverse optima and their label
probabilities for β from 5e-324 to 1e300 and ∞ and r_y from 1e-300 to 1 − 1e-16 against 80-digit
mpmath (Newton on the reverse equation) and exact fractions; the crossing β and r_y against
mpmath bisection; objective at β = 0 and ∞ and on batches; labels, β and r_y given as
NumPy/tensor/bool/string/float values; float32 references."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.theory import optima

DPS = 80


def mp_reverse_logit(r_y, beta):
    """Root of z = logit(r_y) + (1 + e^(−z))/β by Newton from z0 = logit(r_y) + 1/β: the map is
    concave and increasing, so Newton climbs monotonically to the root."""
    with mpmath.workdps(DPS):
        r, b = mpmath.mpf(r_y), mpmath.mpf(beta)
        base = mpmath.log(r) - mpmath.log1p(-r)
        z = base + 1 / b
        for _ in range(20000):
            step = (z - base - (1 + mpmath.exp(-z)) / b) / (1 + mpmath.exp(-z) / b)
            z -= step
            if abs(step) <= mpmath.mpf(10) ** -50 * (1 + abs(z)):
                return z
        raise AssertionError("Newton did not converge")


def mp_forward_logit(r_y, beta):
    with mpmath.workdps(DPS):
        r, b = mpmath.mpf(r_y), mpmath.mpf(beta)
        return mpmath.log1p(b * r) - mpmath.log(b) - mpmath.log1p(-r)


def mp_sigmoid(z):
    with mpmath.workdps(DPS):
        return float(1 / (1 + mpmath.exp(-z)))


def mp_bisect(f, lo, hi, steps=400):
    """Root of f on [lo, hi] (positive ends, opposite signs), geometric then plain halving."""
    with mpmath.workdps(DPS):
        lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
        f_lo = f(lo)
        for _ in range(steps):
            mid = mpmath.sqrt(lo * hi) if hi / lo > 4 else (lo + hi) / 2
            if (f(mid) > 0) == (f_lo > 0):
                lo = mid
            else:
                hi = mid
        return float((lo + hi) / 2)


R_YS = [1e-300, 1e-10, 0.3, 0.5, 0.9, 1 - 1e-16]
BETAS = [5e-324, 1e-300, 1e-10, 1e-3, 1.0, 1e3, 1e10, 1e300]


@pytest.mark.parametrize("beta", BETAS, ids=repr)
@pytest.mark.parametrize("r_y", R_YS, ids=repr)
def test_reverse_label_probability_against_mpmath(r_y, beta):
    """r_y = 1e-300 with β ≥ 1 raised brentq's 'failed to converge after 200 iterations' (a
    bracket 1e299 wide)."""
    z = mp_reverse_logit(r_y, beta)
    assert optima.reverse_kl_label_logit(r_y, beta) == pytest.approx(float(z), rel=1e-13, abs=1e-13)
    assert optima.reverse_kl_label_probability(r_y, beta) == pytest.approx(mp_sigmoid(z), rel=1e-13)


@pytest.mark.parametrize("beta", [*BETAS, 0.0, math.inf], ids=repr)
@pytest.mark.parametrize("r_y", [0.0, 1e-300, 0.3, 1.0])
def test_forward_label_probability_in_fractions(r_y, beta):
    if math.isinf(beta):
        expected = r_y
    else:
        r, b = Fraction(r_y), Fraction(beta)
        expected = float((1 + b * r) / (1 + b))
    assert optima.forward_kl_label_probability(r_y, beta) == pytest.approx(expected, rel=1e-15)


def test_limits_beta_zero_and_infinity():
    assert optima.reverse_kl_label_logit(0.3, 0.0) == math.inf
    assert optima.reverse_kl_label_logit(1.0, 2.0) == math.inf
    assert optima.reverse_kl_label_logit(0.3, math.inf) == pytest.approx(math.log(0.3 / 0.7))
    ref = [0.1, 0.2, 0.7]
    for method in optima.METHODS:
        assert optima.optimum(method, ref, 0, 0.0).tolist() == [1.0, 0.0, 0.0]
        assert optima.optimum(method, ref, 0, math.inf).tolist() == pytest.approx(ref, rel=1e-15)


@pytest.mark.parametrize("beta", [5e-324, 1e-3, 1.0, 1e3, 1e300])
@pytest.mark.parametrize("label", [0, 2])
def test_full_optima_against_fractions_and_mpmath(beta, label):
    ref = [0.1, 0.0, 0.2, 0.7]
    fwd = optima.forward_kl_optimum(ref, label, beta)
    r = [Fraction(x) for x in ref]
    b = Fraction(beta)
    expected = [float(((1 if i == label else 0) + b * x) / (1 + b)) for i, x in enumerate(r)]
    assert fwd.dtype == torch.float64
    assert fwd.tolist() == pytest.approx(expected, rel=1e-15, abs=1e-300)
    rev = optima.reverse_kl_optimum(ref, label, beta)
    p = mp_sigmoid(mp_reverse_logit(ref[label], beta))
    rest = 1 - ref[label]
    expected = [p if i == label else (1 - p) * x / rest for i, x in enumerate(ref)]
    assert rev.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert rev.sum().item() == pytest.approx(1.0, abs=1e-15)


def test_float32_reference_is_normalised():
    """A float32 table sums to 1 only within ~1e-7: the forward optimum summed to 1 - 7e-9."""
    r32 = torch.tensor([0.1, 0.2, 0.7], dtype=torch.float32)
    exact = [Fraction(x) for x in r32.tolist()]
    total = sum(exact)
    for beta in (1.0, 1e3, math.inf):
        got = optima.forward_kl_optimum(r32, 0, beta)
        assert got.dtype == torch.float64
        b = Fraction(beta) if math.isfinite(beta) else None
        expected = [
            float(x / total)
            if b is None
            else float(((1 if i == 0 else 0) + b * x / total) / (1 + b))
            for i, x in enumerate(exact)
        ]
        assert got.tolist() == pytest.approx(expected, rel=1e-15)
        assert got.sum().item() == pytest.approx(1.0, abs=2e-16)


@pytest.mark.parametrize("label", [np.int64(1), torch.tensor(1), np.int32(1)])
def test_label_forms(label):
    assert optima.forward_kl_optimum([0.2, 0.8], label, 1.0).tolist() == pytest.approx([0.1, 0.9])


@pytest.mark.parametrize("label", [True, 1.0, 1.5, "1", -1, 2, torch.tensor(1.0)])
def test_label_that_is_no_class_index(label):
    """label = 1.0 was read as class 1."""
    with pytest.raises(ValueError, match="label must be"):
        optima.forward_kl_optimum([0.2, 0.8], label, 1.0)


@pytest.mark.parametrize("beta", [True, "1", None, [1.0], math.nan, -1.0, torch.ones(2)])
def test_beta_that_is_no_kl_weight(beta):
    """beta = True and beta = '1' were read as 1."""
    for fn in (
        lambda: optima.forward_kl_label_probability(0.3, beta),
        lambda: optima.reverse_kl_optimum([0.3, 0.7], 0, beta),
        lambda: optima.crossing_reference_probability(beta),
    ):
        with pytest.raises(ValueError, match="beta must be"):
            fn()


@pytest.mark.parametrize("r_y", [True, "0.3", None, math.nan, -0.1, 1.5])
def test_r_y_that_is_no_probability(r_y):
    with pytest.raises(ValueError, match="r_y must be"):
        optima.forward_kl_label_probability(r_y, 1.0)


def test_beta_and_r_y_as_numpy_and_tensors():
    expected = optima.reverse_kl_label_probability(0.3, 2.0)
    assert optima.reverse_kl_label_probability(np.float32(0.3), torch.tensor(2.0)) == (
        pytest.approx(expected, rel=1e-7)
    )
    assert optima.reverse_kl_label_probability(np.float64(0.3), np.array(2.0)) == expected


def test_label_probability_broadcast_and_grid():
    r = [0.1, 0.5, 0.9]
    b = [0.0, 1e-300, 1.0, math.inf]
    grid = optima.label_probability_grid("reverse", r, b)
    assert grid.shape == (3, 4) and grid.dtype == torch.float64
    for i, r_y in enumerate(r):
        for j, beta in enumerate(b):
            if beta == 0:
                expected = 1.0
            elif math.isinf(beta):
                expected = r_y
            else:
                expected = mp_sigmoid(mp_reverse_logit(r_y, beta))
            assert grid[i, j].item() == pytest.approx(expected, rel=1e-13)
    same = optima.label_probability(
        "reverse", torch.tensor(r, dtype=torch.float64).reshape(3, 1), np.array(b)
    )
    assert torch.equal(same, grid)
    assert optima.label_probability("forward", 0.3, 1.0).shape == ()
    assert optima.label_probability("forward", [], 1.0).shape == (0,)
    with pytest.raises(ValueError, match="method must be one of"):
        optima.label_probability("backward", 0.3, 1.0)


def test_objective_at_zero_and_infinite_beta_and_on_batches():
    """β = ∞ at π = r gave ∞·0 = NaN; a batch of π raised a shape mismatch."""
    ref = [0.2, 0.8]
    for method in optima.METHODS:
        assert optima.objective(method, ref, ref, 0, math.inf).item() == pytest.approx(
            -math.log(0.2)
        )
        assert optima.objective(method, [0.3, 0.7], ref, 0, math.inf).item() == math.inf
        assert optima.objective(method, [0.3, 0.7], ref, 0, 0.0).item() == pytest.approx(
            -math.log(0.3)
        )
    pis = [[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]
    for method in optima.METHODS:
        got = optima.objective(method, torch.tensor(pis), ref, 0, 2.0)
        assert got.shape == (3,)
        for row, pi in zip(got.tolist(), pis, strict=True):
            a, b = (ref, pi) if method == "forward" else (pi, ref)
            kl = sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)
            assert row == pytest.approx(-math.log(pi[0]) + 2.0 * kl, rel=1e-6)
    # the optimum minimises the objective: any other point on a fine grid scores no lower
    for method in optima.METHODS:
        best = optima.objective(method, optima.optimum(method, ref, 0, 0.7), ref, 0, 0.7).item()
        p = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
        grid = optima.objective(method, torch.stack([p, 1 - p], dim=1), ref, 0, 0.7)
        assert best <= grid.min().item() + 1e-12
    with pytest.raises(ValueError, match="pi must have the reference's 2 classes"):
        optima.objective("forward", [0.2, 0.3, 0.5], ref, 0, 1.0)


def test_sharper_method_where_both_probabilities_round_to_one():
    """β = 1e-300 said 'tie' (both label probabilities round to 1) where reverse is sharper."""
    for r_y, beta in [(0.3, 1e-300), (0.3, 1e-20), (0.9, 1e-300), (0.3, 1e3), (0.3, 1.0)]:
        gap = mp_reverse_logit(r_y, beta) - mp_forward_logit(r_y, beta)
        expected = "reverse" if gap > 0 else "forward"
        assert optima.sharper_method(r_y, beta) == expected
    for r_y, beta in [(0.3, 0.0), (0.3, math.inf), (1.0, 1.0)]:
        assert optima.sharper_method(r_y, beta) == "tie"


@pytest.mark.parametrize("r_y", [5e-324, 1e-300, 1e-10, 0.1, 0.3, 0.49, 0.5 - 1e-12, 0.5 - 2**-54])
def test_crossing_beta_against_mpmath(r_y):
    """r_y = 1/2 - 1e-12 gave a β off by 2e-5 relative (1/(2r) - 1 lost to cancellation) and the
    float below 1/2 raised 'too close to 1/2'."""
    expected = mp_bisect(
        lambda b: mp_forward_logit(r_y, b) - mp_reverse_logit(r_y, b), 1e-30, 1e30, 300
    )
    assert optima.crossing_beta(r_y) == pytest.approx(expected, rel=1e-12)


def mp_gap(beta, r):
    with mpmath.workdps(400):
        b, r = mpmath.mpf(beta), mpmath.mpf(r)
        return mpmath.log1p(1 / (b * r)) - (1 + b) / (b * (1 + b * r))


@pytest.mark.parametrize("beta", [1.5e-3, 0.01, 0.1, 1.0, 1e3, 1e8, 1e13, 1e15])
def test_crossing_reference_probability_against_mpmath(beta):
    """β = 0.01 gave 7.7e-16 for 1.4e-42 (brentq's absolute xtol 1e-15); β = 1e15 gave 1/2."""
    with mpmath.workdps(400):
        expected = mp_bisect(lambda r: mp_gap(beta, r), mpmath.mpf(10) ** -400, 0.5, 1500)
    got = optima.crossing_reference_probability(beta)
    assert 0 < got < 0.5
    assert got == pytest.approx(expected, rel=1e-12)


def test_crossing_reference_probability_limits():
    assert optima.crossing_reference_probability(math.inf) == 0.5
    assert optima.crossing_reference_probability(1e17) == 0.5  # 1/2 - 3e-18 rounds to 1/2
    for beta in (1e-300, 1e-3):  # β = 1e-300 raised ZeroDivisionError
        with pytest.raises(ValueError, match="too small"):
            optima.crossing_reference_probability(beta)
    with pytest.raises(ValueError, match="too large"):
        optima.crossing_reference_probability(1e200)
    with pytest.raises(ValueError, match="beta must be > 0"):
        optima.crossing_reference_probability(0.0)
    assert optima.crossing_beta(0.5) == math.inf
    assert optima.crossing_beta(1.0) == math.inf
