"""kl_helpers.theory.fdivergences' generator factories at their edges (issue 30), against 50-digit
mpmath: for kl, reverse_kl, jensen_shannon, squared_hellinger, total_variation, pearson_chi2 and
alpha at α = -1, 1e-12, -1e-12, 0, 0.25, 0.5, 1 - 1e-12, 1, 1 + 1e-12, 2, 5: f(1) = 0, f at
x = 1e-6, 0.3, 2, 1e6, the boundary limits f(0⁺) and f'(∞) against f near 0 and f(x)/x far out
(or their growth where they are infinite), the perspective q·f(p/q) from p and q for ordinary
pairs and where p/q overflows (q = 5e-324) or underflows (p = 5e-324), float32 inputs;
get_generator for every name and alpha's refusals (NaN, ±inf, a string, a bool, no α, a stray
keyword)."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from kl_helpers.theory.fdivergences import (
    GENERATORS,
    alpha_generator,
    get_generator,
)

mpmath.mp.dps = 50
ALPHAS = [-1.0, 1e-12, -1e-12, 0.0, 0.25, 0.5, 1 - 1e-12, 1.0, 1 + 1e-12, 2.0, 5.0]


def mp_alpha(a):
    a = mpmath.mpf(a)

    def f(x):
        x = mpmath.mpf(x)
        if a == 1:
            return x * mpmath.log(x) - x + 1
        if a == 0:
            return -mpmath.log(x) + x - 1
        return (x**a - a * x - (1 - a)) / (a * (a - 1))

    return f


MP = {
    "kl": lambda x: mpmath.mpf(x) * mpmath.log(x),
    "reverse_kl": lambda x: -mpmath.log(x),
    "jensen_shannon": lambda x: (
        (mpmath.mpf(x) * mpmath.log(x) - (x + 1) * mpmath.log((mpmath.mpf(x) + 1) / 2)) / 2
    ),
    "squared_hellinger": lambda x: (mpmath.sqrt(x) - 1) ** 2 / 2,
    "total_variation": lambda x: abs(mpmath.mpf(x) - 1) / 2,
    "pearson_chi2": lambda x: (mpmath.mpf(x) - 1) ** 2,
}
FACTORIES = {name: make for name, make in GENERATORS.items() if name != "alpha"}  # no parameter
CASES = [(name, FACTORIES[name](), MP[name]) for name in FACTORIES] + [
    (f"alpha={a}", alpha_generator(a), mp_alpha(a)) for a in ALPHAS
]


def close(got, want, rel=1e-12):
    want = float(want)
    if math.isinf(want):
        return got == want
    return got == pytest.approx(want, rel=rel, abs=1e-300)


@pytest.mark.parametrize(("name", "gen", "mp_f"), CASES, ids=[c[0] for c in CASES])
def test_f_values_and_limits(name, gen, mp_f):
    x = torch.tensor([1e-6, 0.3, 1.0, 2.0, 1e6], dtype=torch.float64)
    got = gen.f(x).tolist()
    assert got[2] == 0.0 or abs(got[2]) < 1e-300
    for value, xi in zip(got, x.tolist(), strict=True):
        assert close(value, mp_f(xi), rel=1e-9), (name, xi)
    # f(0⁺) and f'(∞): f near 0 and f(x)/x far out, where x^α has died down (x^α ≈ 1e-20), or
    # growing without bound where the limit is infinite
    a = float(name.split("=")[1]) if name.startswith("alpha=") else None
    tiny = mpmath.mpf(10) ** (-20 / a - 30) if a is not None and a > 0 else mpmath.mpf("1e-30")
    huge = mpmath.mpf(10) ** (20 / (1 - a) + 30) if a is not None and a < 1 else mpmath.mpf("1e30")
    near0, far = float(mp_f(tiny)), float(mp_f(huge) / huge)
    if math.isinf(gen.f_at_zero):
        assert near0 > 10
    else:
        assert near0 == pytest.approx(gen.f_at_zero, rel=1e-9)
    if math.isinf(gen.slope_at_inf):
        assert far > 10
    else:
        assert far == pytest.approx(gen.slope_at_inf, rel=1e-9)


@pytest.mark.parametrize(("name", "gen", "mp_f"), CASES, ids=[c[0] for c in CASES])
def test_perspective_from_p_and_q(name, gen, mp_f):
    pairs = [(0.2, 0.7), (0.7, 0.2), (0.5, 0.5), (1.0, 5e-324), (5e-324, 1.0), (1e-300, 1e-10)]
    p = torch.tensor([a for a, _ in pairs], dtype=torch.float64)
    q = torch.tensor([b for _, b in pairs], dtype=torch.float64)
    got = gen.weighted(p, q).tolist()
    for value, (a, b) in zip(got, pairs, strict=True):
        want = mpmath.mpf(b) * mp_f(mpmath.mpf(a) / mpmath.mpf(b))
        if not mpmath.isfinite(want) or abs(want) > 1e308:
            assert math.isinf(value) or abs(value) > 1e300, (name, a, b, value)
        else:
            assert close(value, want, rel=1e-9), (name, a, b, value, float(want))
    f32 = gen.weighted(p[:3].float(), q[:3].float())
    assert f32.dtype == torch.float32
    assert f32.tolist() == pytest.approx(got[:3], rel=1e-5, abs=1e-7)


def test_get_generator_and_refusals():
    for name, factory in GENERATORS.items():
        if name == "alpha":
            assert get_generator(name, alpha=0.5).name == alpha_generator(0.5).name == "alpha=0.5"
        else:
            assert get_generator(name).name == factory().name == name
    with pytest.raises(ValueError, match="unknown f-divergence"):
        get_generator("KL")
    with pytest.raises(ValueError, match="bad parameters"):
        get_generator("alpha")
    with pytest.raises(ValueError, match="bad parameters"):
        get_generator("kl", alpha=0.5)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="alpha must be finite"):
            alpha_generator(bad)
    for bad in ("0.5", True, None):
        with pytest.raises(ValueError, match="alpha must be one real number"):
            alpha_generator(bad)
    assert alpha_generator(torch.tensor(0.5)).name == "alpha=0.5"
