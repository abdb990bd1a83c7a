"""kl_helpers.divergences at the edges its docstrings name (issue 30): lists, tuples and NumPy
arrays for tensors, every dtype, empty tables, probabilities at the limits of float64, the
tolerance on row sums, temperature, near-identical logits at V = 49152; kl_rows (the block
function) for every dtype, a 1-D row, no rows, -inf logits on either side, logits of ±1e4 and
logits 1e-12 apart. Expected values come from
scipy, mpmath, fractions or Python loops, never from kl_helpers."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from scipy import special

from kl_helpers._validate import PROB_ATOL
from kl_helpers.divergences import (
    by_rows,
    cross_entropy,
    entropy,
    kl_divergence,
    kl_divergence_logits,
    kl_from_logits,
    kl_rows,
    nonnegative_kl,
    result_dtype,
    symmetrised_kl,
    upcast_half,
)

P = [0.1, 0.2, 0.3, 0.4]
Q = [0.25, 0.25, 0.25, 0.25]


def scipy_kl(p, q) -> float:
    return float(special.rel_entr(np.asarray(p, float), np.asarray(q, float)).sum())


def mp_kl_logits(a, b, t: float = 1.0, dps: int = 40) -> float:
    """KL(softmax(a/T)‖softmax(b/T)) in mpmath: Σ p (log p − log q) with exact log-softmax."""
    with mpmath.workdps(dps):
        a = [mpmath.mpf(float(v)) / t for v in a]
        b = [mpmath.mpf(float(v)) / t for v in b]
        za = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in a))
        zb = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in b))
        return float(
            mpmath.fsum(
                mpmath.exp(x - za) * ((x - za) - (y - zb)) for x, y in zip(a, b, strict=True)
            )
        )


# --- entropy, cross_entropy, kl_divergence, symmetrised_kl -----------------------------------


@pytest.mark.parametrize(
    "convert",
    [list, tuple, np.array, lambda x: np.array(x, dtype=np.float32), torch.tensor],
    ids=["list", "tuple", "numpy64", "numpy32", "tensor"],
)
def test_sequences_and_arrays_are_read_as_float64(convert):
    """``as_float_tensor``'s promise: Python and NumPy input become float64."""
    p, q = convert(P), convert(Q)
    for fn, want in (
        (entropy, float(special.entr(np.array(P)).sum())),
        (lambda a: cross_entropy(a, q), -sum(x * math.log(y) for x, y in zip(P, Q, strict=True))),
        (lambda a: kl_divergence(a, q), scipy_kl(P, Q)),
        (lambda a: symmetrised_kl(a, q), scipy_kl(P, Q) + scipy_kl(Q, P)),
    ):
        got = fn(p)
        if not isinstance(p, torch.Tensor):
            assert got.dtype == torch.float64
        assert got.item() == pytest.approx(want, rel=1e-6)


def test_tensor_p_sets_the_dtype_of_a_list_q():
    got = kl_divergence(torch.tensor(P, dtype=torch.float32), Q)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(scipy_kl(P, Q), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_float_dtype_is_kept_and_close_to_the_exact_value(dtype):
    """Rows of halves, quarters and eighths are exact in every dtype: the exact KL in
    fractions·logs is the reference, within the dtype's own rounding."""
    p = [Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 8)]
    q = [Fraction(1, 8), Fraction(1, 8), Fraction(1, 4), Fraction(1, 2)]
    want = sum(float(a) * math.log(a / b) for a, b in zip(p, q, strict=True))
    got = kl_divergence(torch.tensor([float(x) for x in p], dtype=dtype), [float(x) for x in q])
    assert got.dtype == dtype
    rel = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype, 1e-6)
    assert got.item() == pytest.approx(want, rel=rel)


@pytest.mark.parametrize("fn", [entropy, lambda p: kl_divergence(p, p), cross_entropy])
def test_a_table_of_no_rows_gives_an_empty_result(fn):
    """Shape ``p.shape[:-1]`` holds for zero rows too (a RuntimeError from max() before)."""
    if fn is cross_entropy:
        got = cross_entropy(torch.zeros(0, 3), torch.zeros(0, 3))
    else:
        got = fn(torch.zeros(0, 3))
    assert got.shape == (0,) and got.dtype == torch.float32
    assert entropy(torch.zeros(2, 0, 5)).shape == (2, 0)


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_no_outcomes_is_not_a_distribution(shape):
    with pytest.raises(ValueError, match="sum to 1"):
        entropy(torch.zeros(shape))
    with pytest.raises(ValueError, match="sum to 1"):
        kl_divergence(torch.zeros(shape), torch.zeros(shape))
    with pytest.raises(ValueError, match="at least one dimension"):
        entropy(1.0)


def test_row_sum_tolerance_is_the_documented_one():
    ok = [0.5, 0.5 + 0.9 * PROB_ATOL]
    bad = [0.5, 0.5 + 1.1 * PROB_ATOL]
    assert entropy(ok).item() == pytest.approx(float(special.entr(np.array(ok)).sum()), rel=1e-12)
    with pytest.raises(ValueError, match="sum to 1"):
        entropy(bad)
    with pytest.raises(ValueError, match="sum to 1"):
        kl_divergence(P, [0.25, 0.25, 0.25, 0.25 + 1.1 * PROB_ATOL])
    with pytest.raises(ValueError, match="contains inf"):  # named as such since issue 30
        kl_divergence(P, [math.inf, 0.0, 0.0, 0.0])


def test_validate_false_computes_the_raw_sums():
    """Without validation nothing is normalised: the sums of the given numbers (scipy's rel_entr
    and entr, which do not normalise either)."""
    p, q = [0.2, 0.9, 0.0], [0.5, 0.0, 0.7]
    assert kl_divergence(p, q, validate=False).item() == scipy_kl(p, q) == math.inf
    p2 = [0.2, 0.9]
    want = float(special.entr(np.array(p2)).sum())
    assert entropy(p2, validate=False).item() == pytest.approx(want, rel=1e-12)
    assert kl_divergence(p2, [0.3, 0.6], validate=False).item() == pytest.approx(
        scipy_kl(p2, [0.3, 0.6]), rel=1e-12
    )


def test_probabilities_at_the_limits_of_float64():
    tiny = 5e-324  # the smallest subnormal
    p = [1.0 - 1e-300, 1e-300, tiny, 0.0]
    q = [0.5, 0.5 - 1e-300, 1e-300, 1e-300]
    assert kl_divergence(p, q).item() == pytest.approx(scipy_kl(p, q), rel=1e-12)
    assert entropy(p).item() == pytest.approx(float(special.entr(np.array(p)).sum()), rel=1e-12)
    with mpmath.workdps(30):
        want = mpmath.fsum(
            mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
            for a, b in zip(p, q, strict=True)
            if a > 0
        )
    assert symmetrised_kl(p, q).item() == pytest.approx(float(want) + scipy_kl(q, p), rel=1e-12)


# --- logits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "out"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.int64, torch.float32),
    ],
)
def test_kl_from_logits_dtypes_values_and_gradient_dtypes(dtype, out):
    a = torch.tensor([[2.0, -1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]).to(dtype)
    b = torch.tensor([[-1.0, 1.0, 2.0, 0.0], [5.0, -5.0, 0.0, 1.0]]).to(dtype)
    got = kl_from_logits(a, b)
    assert got.dtype == out and result_dtype(a, b) == out
    want = [mp_kl_logits(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    if dtype.is_floating_point:
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        kl_from_logits(a, b).sum().backward()
        assert a.grad.dtype == b.grad.dtype == dtype
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_mixed_dtypes_promote():
    a, b = (
        torch.zeros(1, 3, dtype=torch.float16),
        torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64),
    )
    assert kl_from_logits(a, b).dtype == torch.float64
    assert kl_from_logits(a, b.bfloat16()).dtype == torch.float32


def test_near_identical_logits_at_v_49152_keep_a_1e_9_kl():
    """The docstring's own example: KL ≈ 1e-9 at V = 49152, within 1e-4 relative (mpmath)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 49152, generator=g) * 3
    b = a + 4e-5 * torch.randn(1, 49152, generator=g)
    got = kl_from_logits(a, b).item()
    want = mp_kl_logits(a[0].tolist(), b[0].tolist(), dps=30)
    assert 1e-10 < want < 1e-8
    assert got == pytest.approx(want, rel=1e-4)
    assert kl_from_logits(a, a).item() == 0.0


def test_one_class_is_a_certain_outcome_with_zero_kl():
    assert kl_from_logits(
        torch.tensor([[3.0], [-1e30]]), torch.tensor([[-7.0], [1e30]])
    ).tolist() == [
        0.0,
        0.0,
    ]


@pytest.mark.parametrize("shape", [(), (4, 0), (2, 3, 0)])
def test_logits_without_a_class_raise_value_error_naming_the_shape(shape):
    with pytest.raises(ValueError, match=f"got shape {re_escape(tuple(shape))}"):
        kl_from_logits(torch.zeros(shape), torch.zeros(shape))
    with pytest.raises(ValueError, match=f"got shape {re_escape(tuple(shape))}"):
        by_rows(lambda x: x.sum(-1), torch.zeros(shape))


def re_escape(value) -> str:
    import re

    return re.escape(str(value))


@pytest.mark.parametrize("temperature", [0.25, 3.0, 1e5])
def test_kl_divergence_logits_temperature_divides_both(temperature):
    a, b = [[2.0, -1.0, 0.5]], [[0.0, 1.0, -2.0]]
    got = kl_divergence_logits(torch.tensor(a), torch.tensor(b), temperature)
    assert got.dtype == torch.float64  # the engine's float64, before result_dtype
    assert got.item() == pytest.approx(mp_kl_logits(a[0], b[0], temperature), rel=1e-9)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_kl_divergence_logits_refuses_a_temperature_that_is_not_positive(bad):
    """T = 0 gave NaN and T < 0 a KL of the flipped distributions, silently."""
    with pytest.raises(ValueError, match="temperature must be > 0"):
        kl_divergence_logits(torch.zeros(1, 3), torch.ones(1, 3), bad)


@pytest.mark.parametrize("elements", [0, 1, 5, 1 << 18])
def test_by_rows_block_size_never_changes_the_result(elements):
    x = torch.arange(24.0).reshape(2, 4, 3).requires_grad_(True)
    got = by_rows(lambda r: (r * r).sum(-1), x, elements=elements)
    want = [[sum(v * v for v in row) for row in block] for block in x.tolist()]
    assert got.tolist() == want
    got.sum().backward()
    assert x.grad.tolist() == [[[2 * v for v in row] for row in block] for block in x.tolist()]


def test_nonnegative_kl_terms_at_zero_small_and_huge_log_ratios():
    """x = 0 gives exactly 0; a tiny x keeps its KL ≈ 1e-18; |x| = 737 > log(max float) takes
    the branch without e^x. Reference: Σ p log(p/r) in mpmath on the same float64 numbers."""

    def exact(p, r):
        with mpmath.workdps(50):
            return float(
                mpmath.fsum(
                    mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
                    for a, b in zip(p, r, strict=True)
                    if a > 0
                )
            )

    for p, r in (
        ([1.0, 1e-320], [1e-320, 1.0]),  # both sum to the same float64: Σr − Σp = 0 exactly
        ([0.25, 0.75], [0.25 + 2**-32, 0.75 - 2**-32]),
    ):
        pt, rt = torch.tensor([p], dtype=torch.float64), torch.tensor([r], dtype=torch.float64)
        got = nonnegative_kl(pt.log(), pt, rt.log() - pt.log(), rt)
        assert math.isfinite(got.item()) and got.item() >= 0
        assert got.item() == pytest.approx(exact(p, r), rel=1e-9)
    same = torch.log(torch.tensor([[0.3, 0.7, 0.0]], dtype=torch.float64))
    assert nonnegative_kl(same, same.exp(), torch.zeros_like(same), same.exp()).item() == 0.0


def test_upcast_half_only_touches_half_precision():
    for dtype in (torch.float16, torch.bfloat16):
        assert upcast_half(torch.zeros(2, dtype=dtype)).dtype == torch.float32
    for dtype in (torch.float32, torch.float64, torch.int64):
        x = torch.zeros(2, dtype=dtype)
        assert upcast_half(x) is x


# ----------------------------------------------------------------------------- kl_rows


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_kl_rows_is_float64_kl_of_the_logits_in_any_dtype(dtype):
    g = torch.Generator().manual_seed(3)
    a, b = (torch.randn(4, 7, generator=g).to(dtype) for _ in range(2))
    got = kl_rows(a, b)
    assert got.dtype == torch.float64 and got.shape == (4,)
    rows = zip(a.double(), b.double(), strict=True)
    want = [mp_kl_logits(x.tolist(), y.tolist()) for x, y in rows]
    assert got.tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_kl_rows_on_a_1d_row_and_on_no_rows():
    a, b = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 0.0, 0.5])
    assert kl_rows(a, b).item() == pytest.approx(mp_kl_logits(a, b), rel=1e-14)
    empty = kl_rows(torch.zeros(0, 5), torch.zeros(0, 5))
    assert empty.shape == (0,) and empty.dtype == torch.float64


def test_kl_rows_at_the_limits_of_the_logits():
    inf = math.inf
    # Q has no mass where P has some: KL = ∞; P has no mass where Q has some: log 2
    assert kl_rows(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, -inf]])).item() == inf
    half = kl_rows(torch.tensor([[0.0, -inf]]), torch.tensor([[0.0, 0.0]])).item()
    assert half == pytest.approx(math.log(2), rel=1e-15)
    # logits ±1e4: P = δ_0 up to e^-1e4, Q = δ_1: KL = 1e4
    big = kl_rows(torch.tensor([[1e4, 0.0]]), torch.tensor([[0.0, 1e4]])).item()
    assert big == pytest.approx(mp_kl_logits([1e4, 0.0], [0.0, 1e4], dps=60), rel=1e-12)
    # logits 1e-12 apart: KL ≈ 1.25e-25, kept (no cancellation to 0 or below)
    a = torch.tensor([[1e-12, 0.0]], dtype=torch.float64)
    tiny = kl_rows(a, torch.zeros(1, 2)).item()
    assert tiny == pytest.approx(mp_kl_logits([1e-12, 0.0], [0.0, 0.0], dps=80), rel=1e-6)
    assert kl_rows(torch.ones(2, 3), torch.ones(2, 3)).tolist() == [0.0, 0.0]
