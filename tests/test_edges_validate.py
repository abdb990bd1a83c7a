"""kl_helpers._validate at its edges (issue 30): each check with NaN, ±inf, negative entries,
rows one tolerance either side of 1 in float64/float32/float16/bfloat16 (sums against fractions
of the stored values), no rows, 0-d input; numbers and token ids given as Python/NumPy/tensor
values, 0-d and one-element arrays, bools, strings, floats, nested lists, duplicates."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from kl_helpers._validate import (
    PROB_ATOL,
    as_float_tensor,
    check_positive,
    check_probabilities,
    check_same_shape,
    discrete_outcomes,
    integer,
    is_any,
    kl_weight,
    probability_pair,
    real,
    token_ids,
)


def test_as_float_tensor_forms():
    assert as_float_tensor([1, 2]).dtype == torch.float64
    assert as_float_tensor(np.float32([1, 2])).dtype == torch.float64
    assert as_float_tensor(torch.tensor([1, 2])).dtype == torch.float64
    half = torch.tensor([1.0], dtype=torch.bfloat16)
    assert as_float_tensor(half) is half
    assert as_float_tensor([0.5], like=half).dtype == torch.bfloat16
    for bad in ("1", None, [[1.0], [1.0, 2.0]]):  # '1' raised TypeError, a ragged list too
        with pytest.raises(ValueError, match="expected numbers"):
            as_float_tensor(bad)


def exact_off(row):
    return abs(sum(Fraction(x) for x in row) - 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_row_sums_against_fractions(dtype):
    """Each row passes exactly when its stored entries sum (in fractions) to 1 within the
    tolerance the docstring names for the dtype."""
    tol = max(PROB_ATOL, torch.finfo(dtype).eps)
    rows = [[0.1] * 10, [0.5, 0.5 + 0.5 * tol], [0.5, 0.5 + 3 * tol], [1.0 - 3 * tol, 0.0],
            [1 / 3] * 3, [1.0]]  # fmt: skip
    for row in rows:
        stored = torch.tensor(row, dtype=dtype)
        off = exact_off(stored.double().tolist())
        if off <= tol:
            check_probabilities(stored, "p")
        else:
            with pytest.raises(ValueError, match="rows must sum to 1"):
                check_probabilities(stored, "p")


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ([0.5, math.inf], "contains inf"),  # said 'off by inf'
        ([[0.5, 0.5], [math.nan, 1.0]], "contains NaN"),
        ([1.5, -0.5], "negative probabilities"),
        (1.0, "at least one dimension"),
    ],
)
def test_check_probabilities_bad_tables(table, match):
    with pytest.raises(ValueError, match=match):
        check_probabilities(torch.tensor(table, dtype=torch.float64), "p")


def test_no_rows_and_shapes():
    check_probabilities(torch.zeros(0, 3), "p")
    with pytest.raises(ValueError, match=r"p has shape \(2,\) but q has shape \(3,\)"):
        check_same_shape(torch.zeros(2), torch.zeros(3), ("p", "q"))
    p, q = probability_pair([0.5, 0.5], np.array([0.25, 0.75]))
    assert p.dtype == q.dtype == torch.float64
    loose, _ = probability_pair([2.0, 1.0], [1.0, 1.0], validate=False)
    assert loose.tolist() == [2.0, 1.0]
    check_positive(torch.tensor([1e-300, math.inf], dtype=torch.float64), "sigma")
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            check_positive(torch.tensor([1.0, bad]), "sigma")


def test_discrete_outcomes():
    q, r = discrete_outcomes(np.float32([0.2, 0.8]), [1, 2])
    total = sum(Fraction(x) for x in np.float32([0.2, 0.8]).tolist())
    assert q.tolist() == [float(Fraction(x) / total) for x in np.float32([0.2, 0.8]).tolist()]
    assert r.dtype == torch.float64 and r.tolist() == [1.0, 2.0]
    for ref, rew, match in (([0.5, 0.5], [1.0, math.nan], "rewards must be finite"),
                            ([[0.5, 0.5]], [[1.0, 2.0]], "1-D and non-empty"),
                            ([], [], "1-D and non-empty"),
                            ([0.5, 0.5], [1.0], "shape mismatch")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            discrete_outcomes(ref, rew)


def test_token_ids_forms():
    """A 0-d NumPy array (np.array(2)) was refused although a 0-d tensor was taken."""
    for value, expected in ((2, (2,)), (np.int64(2), (2,)), (np.array(2), (2,)),
                            (torch.tensor(3), (3,)), ([2, 2, 5], (2, 5)), ((5, 2), (5, 2)),
                            (np.array([2, 5]), (2, 5)), (torch.tensor([2, 5]), (2, 5)),
                            ([], None), (None, None)):  # fmt: skip
        assert token_ids(value) == expected
    for bad in (2.0, -100, True, "2", [[1, 2]], [1, None], torch.tensor([[1, 2]])):
        with pytest.raises(ValueError, match="eos_token_id must be a token id"):
            token_ids(bad)
    assert is_any(torch.tensor([[1, 2], [5, 0]]), (2, 5)).tolist() == [[False, True], [True, False]]


def test_integer_real_and_kl_weight():
    for value in (3, np.int64(3), np.int8(3), torch.tensor(3), np.array(3)):
        assert integer(value, "n") == 3 and type(integer(value, "n")) is int
    for bad in (3.0, True, "3", None, torch.tensor(3.0), np.float64(3)):
        with pytest.raises(ValueError, match="n must be an int"):
            integer(bad, "n")
    for value in (2, 2.5, np.float16(2.5), np.array([2.5]), torch.tensor([2.5]), math.inf):
        assert real(value, "x") == float(value if not hasattr(value, "item") else value.item())
    for bad in (True, np.bool_(True), torch.tensor(True), "2", 2 + 0j, None, [2.0], np.ones(2)):
        with pytest.raises(ValueError, match="x must be one real number"):
            real(bad, "x")
    assert kl_weight(math.inf) == math.inf and kl_weight(0.0, allow_zero=True) == 0.0
    for bad, allow in ((0.0, False), (-1e-300, True), (math.nan, True), (True, True)):
        with pytest.raises(ValueError, match="beta must be"):
            kl_weight(bad, allow_zero=allow)
