"""kl_helpers.studies.retention_scores: "keeps" as equivalence within a margin (keep_bounds,
keeps_within), against hand-computed interval ends."""

import math

import pandas as pd
import pytest

from kl_helpers.studies import retention_scores

BASE = {"d_nll": 0.03, "d_nll_se": 0.02, "d_macro_f1": 0.01, "d_macro_f1_se": 0.02}
BASE |= {"nll_vs_prior": -0.1, "nll_vs_prior_se": 0.03}


def test_keep_bounds_are_the_one_sided_interval_ends():
    bounds = retention_scores.keep_bounds(pd.DataFrame([BASE]), z=2.0)
    assert bounds.loc[0, "nll_bound"] == pytest.approx(0.03 + 2 * 0.02)
    assert bounds.loc[0, "f1_bound"] == pytest.approx(0.01 - 2 * 0.02)
    assert bounds.loc[0, "prior_bound"] == pytest.approx(-0.1 + 2 * 0.03)
    default = retention_scores.keep_bounds(pd.DataFrame([BASE]))
    assert default.loc[0, "nll_bound"] == pytest.approx(0.03 + 1.645 * 0.02)
    with pytest.raises(ValueError):
        retention_scores.keep_bounds(pd.DataFrame([BASE]), z=0)


def test_keeps_within_needs_every_interval_inside_its_margin():
    rows = [
        BASE,  # 0.063 < 0.1, -0.023 > -0.05, -0.051 < 0: keeps
        BASE | {"d_nll": 0.07},  # upper end 0.103: may have lost more than 0.1 nats
        BASE | {"d_macro_f1": -0.02},  # lower end -0.053: may have lost more than 0.05
        BASE | {"nll_vs_prior": -0.04},  # upper end +0.009: not shown better than the prior
        BASE | {"d_nll": -0.3, "d_macro_f1": 0.2},  # better than the reference: keeps
        BASE | {"d_nll_se": float("nan")},  # no interval, no claim
    ]
    table = pd.DataFrame(rows)
    assert retention_scores.keeps_within(table).tolist() == [True, False, False, False, True, False]
    looser = retention_scores.keeps_within(table, nll_margin=0.2, f1_margin=0.1)
    assert looser.tolist() == [True, True, True, False, True, False]
    with pytest.raises(ValueError):
        retention_scores.keeps_within(table, nll_margin=0)


def test_a_noisier_run_does_not_keep_more_easily():
    # The older rule (not significantly worse) passes the noisy run and fails the precise one;
    # equivalence within a margin does the opposite.
    precise = BASE | {"d_nll": 0.05, "d_nll_se": 0.01}
    noisy = BASE | {"d_nll": 0.05, "d_nll_se": 0.04}
    table = pd.DataFrame([precise, noisy])
    assert retention_scores.keeps(table).tolist() == [False, True]
    assert retention_scores.keeps_within(table).tolist() == [True, False]


def test_the_margins_say_what_they_mean():
    # 0.1 nats per text: the true label keeps at least 90% of the reference's probability.
    assert math.exp(-retention_scores.NLL_MARGIN) > 0.9
    assert 0 < retention_scores.F1_MARGIN < 1
