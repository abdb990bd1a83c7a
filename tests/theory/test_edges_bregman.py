"""kl_helpers.theory.bregman at its edges (issue 30): every generator's Bregman and Jensen
divergences against 50-digit mpmath for divergences near 0, vectors of size 1e10 and 1e200,
entries from 5e-324 to 1, zeros and -inf logits, logits of size 1e4; the logit/KL link against
torch.distributions; alpha forms; lists/NumPy/int/float32 input; batches; a generator without a
closed form."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.theory.bregman import (
    BregmanGenerator,
    bregman_divergence,
    get_bregman_generator,
    jensen_bregman_divergence,
    jensen_divergence,
)

mpmath.mp.dps = 50


def mpf(v):
    return [mpmath.mpf(a) for a in v]


def mp_F(name, v):
    """The generator F in mpmath (log Σ e^θ with -inf entries left out)."""
    v = mpf(v)
    if name == "squared_euclidean":
        return sum(a * a for a in v) / 2
    if name == "negative_entropy":
        return sum(a * mpmath.log(a) for a in v if a > 0)
    if name == "itakura_saito":
        return -sum(mpmath.log(a) for a in v)
    return mpmath.log(sum(mpmath.exp(a) for a in v if a != -mpmath.inf))


def mp_bregman(name, x, y):
    """B_F(x, y) in mpmath from closed forms (infinite where the closed form is)."""
    x, y = mpf(x), mpf(y)
    if name == "squared_euclidean":
        return float(sum((a - b) ** 2 for a, b in zip(x, y, strict=True)) / 2)
    if name == "negative_entropy":
        total = mpmath.mpf(0)
        for a, b in zip(x, y, strict=True):
            if a > 0 and b == 0:
                return math.inf
            total += (a * mpmath.log(a / b) if a > 0 else 0) - a + b
        return float(total)
    if name == "itakura_saito":
        return float(sum(a / b - mpmath.log(a / b) - 1 for a, b in zip(x, y, strict=True)))
    lp, lq = mp_F(name, x), mp_F(name, y)  # KL(softmax y‖softmax x)
    total = mpmath.mpf(0)
    for a, b in zip(x, y, strict=True):
        if b == -mpmath.inf:
            continue
        if a == -mpmath.inf:
            return math.inf
        total += mpmath.exp(b - lq) * ((b - lq) - (a - lp))
    return float(total)


def mp_jensen(name, x, y, alpha):
    a = mpmath.mpf(alpha)
    m = [a * u + (1 - a) * v for u, v in zip(mpf(x), mpf(y), strict=True)]
    return float(a * mp_F(name, x) + (1 - a) * mp_F(name, y) - mp_F(name, m))


CASES = {
    "squared_euclidean": [
        ([1e10, 2e10 + 1], [1e10 + 1, 2e10]),  # ½‖x − y‖² = 1 gave 7169
        ([1.0, -2.0, 3.0], [1.0 + 1e-9, -2.0, 3.0]),
        ([1e-300, 0.0], [0.0, 1e-300]),
        ([1e200, 1.0], [1e200 * (1 + 1e-10), 1.0]),  # 5e379: inf, was NaN (inf − inf)
    ],
    "negative_entropy": [
        ([0.5 + 1e-8, 0.5 - 1e-8], [0.5, 0.5]),  # 2e-16 came out 2.05e-16
        ([1e10, 2e10 + 1], [1e10 + 1, 2e10]),  # 7.5e-11 gave -3.2e-5
        ([1e-300, 1.0], [2e-300, 1.0]),
        ([5e-324, 0.5], [0.5, 5e-324]),
        ([0.0, 0.4, 0.6], [0.3, 0.7, 1e-9]),
        ([0.5, 0.5], [1.0, 0.0]),  # +inf
    ],
    "itakura_saito": [
        ([1e10, 2e10 + 1], [1e10 + 1, 2e10]),  # 6e-21 gave -6e-15
        ([1e-300, 1.0], [2e-300, 1.0]),
        ([5e-324, 1.0], [1.0, 1.0]),
        ([1.0, 1.0], [5e-324, 1.0]),  # 2e323: inf
        ([2.0, 3.0], [2.0 * (1 + 1e-12), 3.0]),
    ],
    "log_partition": [
        ([1e4, 1e4 + 1e-6, 0.0], [1e4 + 1e-6, 1e4, 0.0]),
        ([0.0, 1e-8], [0.0, 0.0]),  # 1.25e-17 gave 8.1e-17
        ([1e4, -1e4, 0.0], [0.0, 1e4, -1e4]),  # 2e4: q's mass where p underflows
        ([0.0, -math.inf], [0.0, 0.0]),  # +inf
        ([0.0, 0.0], [0.0, -math.inf]),
        ([0.0, -math.inf], [0.0, -math.inf]),
        ([1.0, -math.inf, 0.5], [0.0, -math.inf, 2.0]),
    ],
}
FLAT = [(name, x, y) for name, cases in CASES.items() for x, y in cases]


def close(got, expected, rel):
    if math.isinf(expected):
        return got == expected
    return got == pytest.approx(expected, rel=rel, abs=1e-300)


@pytest.mark.parametrize(
    ("name", "x", "y"), FLAT, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(FLAT)]
)
def test_bregman_against_mpmath(name, x, y):
    expected = mp_bregman(name, x, y)
    got = bregman_divergence(x, y, name)
    assert got.dtype == torch.float64
    assert close(got.item(), expected, 1e-12)
    assert got.item() >= 0


JENSEN = [
    ("squared_euclidean", [1e10, 2e10 + 1], [1e10 + 1, 2e10]),
    ("negative_entropy", [0.5 + 1e-8, 0.5 - 1e-8], [0.5, 0.5]),
    ("negative_entropy", [0.0, 0.4, 0.6], [0.3, 0.7, 0.0]),
    ("itakura_saito", [1e10, 2e10 + 1], [1e10 + 1, 2e10]),
    ("log_partition", [0.0, 1e-8], [0.0, 0.0]),
    ("log_partition", [1.0, -math.inf, 0.5], [0.0, -math.inf, 2.0]),
]


@pytest.mark.parametrize("alpha", [1e-12, 0.25, 0.5, 1 - 1e-12])
@pytest.mark.parametrize(("name", "x", "y"), JENSEN, ids=range(len(JENSEN)))
def test_jensen_against_mpmath(name, x, y, alpha):
    finite = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    spread = max(abs(a - b) for a, b in finite)
    if 1e-16 * max(abs(a) for a, _ in finite) / (min(alpha, 1 - alpha) * spread) > 1e-10:
        pytest.skip("m = αx + (1 − α)y rounds at 1e-16·|x|: the docstring's stated error")
    """JS at 5e-17 came out 1.1e-16 (F(x) − F(m) cancels); ‖x‖ = 2e10: 7169-sized errors."""
    with mpmath.workdps(80):
        expected = mp_jensen(name, x, y, alpha)
    got = jensen_divergence(x, y, name, alpha=alpha).item()
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-300)
    if alpha == 0.5:
        assert jensen_bregman_divergence(x, y, name).item() == pytest.approx(got, rel=1e-12)


def test_log_partition_is_reverse_kl_against_torch_distributions():
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 30.0):
        tp, tq = (torch.tensor(rng.normal(size=(4, 7)) * scale) for _ in range(2))
        expected = torch.distributions.kl_divergence(
            torch.distributions.Categorical(logits=tq), torch.distributions.Categorical(logits=tp)
        )
        got = bregman_divergence(tp, tq, "log_partition")
        assert got.shape == (4,)
        assert got.tolist() == pytest.approx(expected.tolist(), rel=1e-9, abs=1e-15)


def test_forms_dtypes_and_batches():
    x, y = np.array([[0.2, 0.8], [0.5, 0.5]]), [[0.4, 0.6], [0.5, 0.5]]
    for name in ("squared_euclidean", "negative_entropy", "itakura_saito", "log_partition"):
        got = bregman_divergence(x, y, name)
        expected = [mp_bregman(name, a, b) for a, b in zip(x.tolist(), y, strict=True)]
        assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-300)
        low = bregman_divergence(torch.tensor(x, dtype=torch.float32), y, name)
        assert low.dtype == torch.float32
        assert low.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    ints = bregman_divergence(torch.tensor([1, 2]), torch.tensor([2, 2]), "squared_euclidean")
    assert ints.dtype == torch.float64 and ints.item() == 0.5


def test_generator_without_closed_form_uses_the_formula():
    gen = BregmanGenerator(
        "quartic", lambda v: (v**4).sum(-1), lambda v: 4 * v**3, lambda v, n: None, "Σ x⁴"
    )
    x, y = [1.0, 2.0], [0.5, 1.0]
    expected = sum(a**4 - b**4 - 4 * b**3 * (a - b) for a, b in zip(x, y, strict=True))
    assert bregman_divergence(x, y, gen).item() == pytest.approx(expected)
    expected_j = 0.5 * (1 + 16) + 0.5 * (0.0625 + 1) - (0.75**4 + 1.5**4)
    assert jensen_divergence(x, y, gen).item() == pytest.approx(expected_j)


@pytest.mark.parametrize("alpha", [True, "0.5", None, [0.5], 0.0, 1.0, math.nan, -0.1])
def test_alpha_that_is_no_weight(alpha):
    """alpha = '0.5' raised TypeError."""
    with pytest.raises(ValueError, match="alpha must be"):
        jensen_divergence([0.2, 0.8], [0.5, 0.5], "negative_entropy", alpha=alpha)


def test_alpha_as_numpy_or_tensor():
    expected = mp_jensen("negative_entropy", [0.2, 0.8], [0.5, 0.5], 0.25)
    for alpha in (np.float64(0.25), torch.tensor(0.25)):
        got = jensen_divergence([0.2, 0.8], [0.5, 0.5], "negative_entropy", alpha=alpha)
        assert got.item() == pytest.approx(expected, rel=1e-12)


def test_domains_and_names():
    with pytest.raises(ValueError, match="unknown Bregman generator"):
        get_bregman_generator("kl")
    with pytest.raises(ValueError, match=">= 0 for negative entropy"):
        bregman_divergence([-0.1, 1.1], [0.5, 0.5], "negative_entropy")
    with pytest.raises(ValueError, match="> 0 for Itakura-Saito"):
        bregman_divergence([0.0, 1.0], [0.5, 0.5], "itakura_saito")
    with pytest.raises(ValueError, match="all -inf"):
        bregman_divergence([-math.inf, -math.inf], [0.0, 0.0], "log_partition")
    with pytest.raises(ValueError, match="must be finite"):
        bregman_divergence([math.inf, 0.0], [0.0, 0.0], "squared_euclidean")
    with pytest.raises(ValueError, match="at least one dimension"):
        bregman_divergence(1.0, 2.0, "squared_euclidean")
    with pytest.raises(ValueError, match="shape mismatch"):
        bregman_divergence([1.0], [1.0, 2.0], "squared_euclidean")
