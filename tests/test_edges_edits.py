"""kl_helpers.edits at its edges (issue 30): βs and seeds given as one string, NumPy arrays and
scalars, 0-d tensors, bools, strings, near-duplicates one ulp apart; shown_beta with a β written
differently from the run's and with no number; same_betas on spellings and lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_helpers.edits import (
    check_betas,
    check_seed,
    check_seeds,
    middle_beta,
    same_betas,
    shown_beta,
)


def test_betas_in_every_form():
    expected = (0.05, 0.3, 2.0)
    for betas in ([2, 0.05, 0.3], np.array([0.3, 2.0, 0.05]), (np.float32(2), 0.05, 0.3),
                  [torch.tensor(2.0), 0.05, 0.3], (b for b in (0.3, 2.0, 0.05))):  # fmt: skip
        got = check_betas(betas)
        assert got == pytest.approx(expected, rel=1e-7) and all(type(b) is float for b in got)


@pytest.mark.parametrize(
    "betas",
    ["0.05", ["0.1"], [True, 0.5], 0.5, None, [[0.1, 0.2]], [], [0.0], [-0.1], [math.nan],
     [math.inf], [0.1, 0.1], [0.1, np.nextafter(0.1, 1.0)]],
)  # fmt: skip
def test_betas_that_are_not_distinct_positive_numbers(betas):
    """'0.05' raised float()'s "could not convert string to float: '.'", ['0.1'] and [True]
    were taken as 0.1 and 1.0, and 0.1 with the float after it passed as two βs although
    shown_beta and same_betas read them as one."""
    with pytest.raises(ValueError, match="BETAS"):
        check_betas(betas)


def test_seeds_in_every_form():
    """NumPy ints (np.arange(3), a seed from a NumPy RNG) were refused."""
    assert check_seeds(np.arange(3)) == (0, 1, 2)
    assert check_seeds([np.int64(5), 2]) == (5, 2) and type(check_seeds([np.int64(5)])[0]) is int
    assert check_seed(np.int32(3)) == 3
    for bad in ("01", [1.0], [True], [-1], [1, 1], [], 3, None):
        with pytest.raises(ValueError, match="SEEDS"):
            check_seeds(bad)
    with pytest.raises(ValueError, match="SEED"):
        check_seed(1.5)


def test_shown_and_middle_beta():
    betas = [0.3, 0.1, 2.0, 0.05]
    assert middle_beta(betas) == 0.1  # lower middle of four
    assert middle_beta([0.7]) == 0.7
    assert shown_beta(betas) == 0.1
    assert shown_beta(betas, 0.1 + 0.2) == 0.3  # 0.30000000000000004 is the run's 0.3
    assert shown_beta(betas, np.float64(2)) == 2.0
    assert shown_beta(betas, torch.tensor(0.05, dtype=torch.float64)) == 0.05
    with pytest.raises(ValueError, match="SHOW_BETA = 0.2 is not one of the βs"):
        shown_beta(betas, 0.2)
    for bad in ("0.1", True):  # '0.1' was read as 0.1 and True as 1
        with pytest.raises(ValueError, match="SHOW_BETA must be one real number"):
            shown_beta(betas, bad)


def test_same_betas():
    assert same_betas([0.3, 0.1], (0.1, 0.1 + 0.2))
    assert same_betas(np.array([1.0, 2.0]), [2, 1])
    assert not same_betas([0.1], [0.1, 0.3])
    assert not same_betas([0.1, 0.3], [0.1, 0.31])
    assert same_betas([], [])
