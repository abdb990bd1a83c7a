"""Tests for kl_helpers.edits and the sweep plan's edits: every bad edit names what to change."""

from __future__ import annotations

import pytest

from kl_helpers.edits import (
    check_betas,
    check_seed,
    check_seeds,
    middle_beta,
    same_betas,
    shown_beta,
)
from kl_helpers.engine.config import ARTICLE_BETAS
from kl_helpers.studies import beta_sweep


def test_betas_are_sorted_floats():
    assert check_betas([2, 0.05]) == (0.05, 2.0)
    assert check_betas(ARTICLE_BETAS) == ARTICLE_BETAS


@pytest.mark.parametrize(
    ("betas", "message"),
    [
        ((), "empty"),
        ((0.0, 0.5), "remove"),
        ((-1.0,), "remove"),
        ((float("nan"),), "remove"),
        ((0.5, 0.5), "twice"),
        (0.5, "list or tuple"),
    ],
)
def test_bad_betas_say_what_to_change(betas, message):
    with pytest.raises(ValueError, match=message):
        check_betas(betas)


def test_shown_beta_is_the_middle_one_unless_a_run_beta_is_chosen():
    assert shown_beta(ARTICLE_BETAS) == 0.5 == middle_beta(ARTICLE_BETAS)
    assert shown_beta((0.05, 2.0)) == 0.05  # lower middle of an even count
    assert shown_beta((0.05, 2.0), 2) == 2.0
    with pytest.raises(ValueError, match=r"SHOW_BETA = 0.5 is not one of .*\(0.05, 2.0\)"):
        shown_beta((0.05, 2.0), 0.5)


def test_seeds():
    assert check_seeds((3, 1)) == (3, 1) and check_seed(7) == 7
    for bad in ((), (1, 1), (-1,), (1.5,), (True,)):
        with pytest.raises(ValueError, match="SEEDS"):
            check_seeds(bad)


def test_same_betas_ignores_order_and_spelling():
    assert same_betas((0.3, 0.1), [0.1, 0.30000000000000004])
    assert not same_betas((0.1,), (0.1, 0.3))


def test_edited_plan_and_default_plan():
    for mode, plan in beta_sweep.PLANS.items():
        assert beta_sweep.is_default_plan(plan), mode
        assert beta_sweep.edited_plan(plan) == plan
    quick = beta_sweep.PLANS["quick"]
    edited = beta_sweep.edited_plan(quick, betas=(2.0, 0.05), seeds=(5,))
    assert edited.betas == (0.05, 2.0) and edited.seeds == (5,)
    assert not beta_sweep.is_default_plan(edited)
    assert [c.seed for c in edited.configs()] == [5] * 5
    assert beta_sweep.is_default_plan(beta_sweep.edited_plan(quick, betas=(3.0, 0.3)))
    with pytest.raises(ValueError, match="BETAS"):
        beta_sweep.edited_plan(quick, betas=(0.0,))
    with pytest.raises(ValueError, match="SEEDS"):
        beta_sweep.edited_plan(quick, seeds=(1, 1))
