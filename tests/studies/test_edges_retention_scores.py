"""kl_helpers.studies.retention_scores at its edges (issue 30): macro_f1 against scikit-learn
(classes never predicted or never present, ties in the arg-max, labels as list, tuple, NumPy and
tensor, probabilities as nested lists); held_out_scores against float64 loops (a zero probability of
the label: infinite NLL, equal distributions: KL 0); compared_to_reference's differences against the
per-example means (SEs from heldout.mean_and_se); keep_bounds, keeps_within and keeps on hand-made
rows at their boundaries (equal to a margin, infinite and NaN SEs), z, margins and k of 0, -1, NaN
refused; summarise and curve against groupby by hand; value_at_fit at both ends, inside, outside,
unsorted points and an empty curve. run_row on hand-made runs against float64 loops (fit NLL and
accuracy on the train texts, d_nll and nll_vs_prior on the held-out ones; kl_on "none" for SFT), the
prior as a tensor, list or NumPy array, a prior with a zero at a held-out label (infinite
nll_vs_prior); the rows of retention_table,, bound columns and keeps for two tasks, a task without
runs, and no runs at all (ValueError)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from kl_helpers.studies.heldout import mean_and_se
from kl_helpers.studies.retention_scores import (
    compared_to_reference,
    curve,
    held_out_scores,
    keep_bounds,
    keeps,
    keeps_within,
    macro_f1,
    retention_table,
    run_row,
    summarise,
    value_at_fit,
)
from tests.studies.test_edges_beta_sweep import FINAL_ROWS, REF_ROWS, TEST, TRAIN, fake_run

P = torch.tensor(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.4, 0.4, 0.2], [0.0, 0.5, 0.5], [0.6, 0.3, 0.1]],
    dtype=torch.float64,
)
Y = [0, 2, 1, 2, 0]
REF = torch.tensor(
    [[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.3, 0.5, 0.2], [0.2, 0.3, 0.5], [0.5, 0.25, 0.25]],
    dtype=torch.float64,
)


@pytest.mark.parametrize("as_labels", [list, tuple, np.array, torch.tensor])
def test_macro_f1_against_sklearn(as_labels):
    pred = P.argmax(-1).tolist()  # ties go to the first class, as torch's arg-max
    want = f1_score(Y, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert macro_f1(P, as_labels(Y), 3) == pytest.approx(want, rel=1e-12)
    assert macro_f1(P.tolist(), Y, 3) == pytest.approx(want, rel=1e-12)
    # a fourth class neither predicted nor present counts 0
    assert macro_f1(P, Y, 4) == pytest.approx(want * 3 / 4, rel=1e-12)


def test_held_out_scores_against_loops():
    got = held_out_scores(P, Y, REF)
    rows, refs = P.tolist(), REF.tolist()
    acc = sum(max(range(3), key=r.__getitem__) == y for r, y in zip(rows, Y, strict=True)) / 5
    nll = sum(-math.log(r[y]) for r, y in zip(rows, Y, strict=True)) / 5
    kl = (
        sum(
            sum(q * math.log(q / p) if p > 0 else math.inf for p, q in zip(r, s, strict=True))
            for r, s in zip(rows, refs, strict=True)
        )
        / 5
    )
    assert got["accuracy"] == acc and got["nll"] == pytest.approx(nll, rel=1e-12)
    assert got["kl_to_ref"] == kl == math.inf  # p = 0 where the reference has 0.2
    same = held_out_scores(REF, Y, REF)
    assert same["kl_to_ref"] == 0.0
    zero = held_out_scores(P, [0, 2, 1, 0, 0], REF)  # the label's probability is 0 in row 3
    assert zero["nll"] == math.inf


def test_compared_to_reference_against_per_example_means():
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    p = P.clamp_min(1e-3) / P.clamp_min(1e-3).sum(-1, keepdim=True)
    got = compared_to_reference(p, Y, REF, prior)
    nll = lambda q: torch.tensor([-math.log(q[i][y]) for i, y in enumerate(Y)], dtype=torch.float64)  # noqa: E731
    d, se = mean_and_se(nll(p.tolist()) - nll(REF.tolist()))
    assert got["d_nll"] == pytest.approx(float(d), rel=1e-12)
    assert got["d_nll_se"] == pytest.approx(float(se), rel=1e-12)
    vs, vs_se = mean_and_se(nll(p.tolist()) - nll([prior.tolist()] * 5))
    assert got["nll_vs_prior"] == pytest.approx(float(vs), rel=1e-12)
    assert got["nll_vs_prior_se"] == pytest.approx(float(vs_se), rel=1e-12)
    assert set(got) == {"d_nll", "d_nll_se", "d_macro_f1", "d_macro_f1_se", "kl_to_ref_se",
                        "nll_vs_prior", "nll_vs_prior_se"}  # fmt: skip


def rows(**columns):
    base = {"d_nll": 0.0, "d_nll_se": 0.0, "d_macro_f1": 0.0, "d_macro_f1_se": 0.0,
            "nll_vs_prior": -1.0, "nll_vs_prior_se": 0.1}  # fmt: skip
    n = max((len(v) for v in columns.values()), default=1)
    return pd.DataFrame({k: columns.get(k, [v] * n) for k, v in base.items()})


def test_keep_bounds_and_keeps_within_at_their_boundaries():
    z = 2.0
    t = rows(
        d_nll=[0.05, 0.06, -1.0, 0.0, 0.0, 0.0],
        d_nll_se=[0.025, 0.025, math.inf, 0.0, math.nan, 0.0],
        d_macro_f1=[0.0, 0.0, 0.5, -0.05, 0.0, 0.0],
        nll_vs_prior=[-1.0, -1.0, -1.0, -1.0, -1.0, -0.2],
    )
    b = keep_bounds(t, z)
    assert b["nll_bound"].tolist()[:4] == [0.1, 0.11, math.inf, 0.0]
    assert b["f1_bound"].tolist()[:4] == [0.0, 0.0, 0.5, -0.05]
    assert b["prior_bound"].tolist() == pytest.approx([-0.8] * 5 + [0.0], abs=1e-15)
    assert b.index.equals(t.index)
    got = keeps_within(t, nll_margin=0.1, f1_margin=0.05, z=z).tolist()
    # exactly at a margin does not clear it (strict), inf / NaN SEs never do, prior bound 0 fails
    assert got == [False, False, False, False, False, False]
    assert keeps_within(t, nll_margin=0.1 + 1e-12, f1_margin=0.05 + 1e-12, z=z).tolist() == [
        True, False, False, True, False, False
    ]  # fmt: skip


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_refusals(bad):
    t = rows()
    with pytest.raises(ValueError, match="z must be > 0"):
        keep_bounds(t, bad)
    with pytest.raises(ValueError, match="margins must be > 0"):
        keeps_within(t, nll_margin=bad)
    with pytest.raises(ValueError, match="margins must be > 0"):
        keeps_within(t, f1_margin=bad)
    # failed before the fix for NaN: k = NaN was taken and every run failed the rule silently
    with pytest.raises(ValueError, match="k must be > 0"):
        keeps(t, bad)


def test_keeps_older_rule_boundaries():
    t = rows(
        d_nll=[0.2, 0.2, 0.0], d_nll_se=[0.1, 0.0999, 0.0],
        d_macro_f1=[-0.2, 0.0, 0.0], d_macro_f1_se=[0.1, 0.0, 0.0],
        nll_vs_prior=[-0.2, -1.0, -0.2], nll_vs_prior_se=[0.05, 0.1, 0.1],
    )  # fmt: skip
    assert keeps(t, 2.0).tolist() == [True, False, False]


TABLE = pd.DataFrame(
    {
        "task": ["a"] * 6 + ["b"],
        "kl_on": ["none", "none", "task", "task", "replay", "task", "task"],
        "method": ["sft", "sft", "forward", "forward", "forward", "reverse", "forward"],
        "beta": [0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5],
        "seed": [0, 1, 0, 1, 0, 0, 0],
        "fit_nll": [0.1, 0.3, 0.5, 0.7, 2.0, 9.0, 8.0],
        "accuracy": [0.9, 0.7, 0.6, 0.4, 0.1, 0.0, 0.0],
    }
)


def test_summarise_and_curve_against_groupby_by_hand():
    out = summarise(TABLE)
    row = out.loc[("a", "task", "forward", 0.5)]
    assert row.tolist() == pytest.approx([0.6, 0.5, 0.5, 0.4, 0.7, 0.6])
    assert len(out) == 5
    c = curve(TABLE, "a", "forward", "task", "fit_nll", "accuracy")
    assert c["beta"].tolist() == [0.0, 0.5]
    assert c["fit_nll"].tolist() == pytest.approx([0.2, 0.6])
    assert c["accuracy_min"].tolist() == pytest.approx([0.7, 0.4])
    assert c["fit_nll_max"].tolist() == pytest.approx([0.3, 0.7])


def test_value_at_fit():
    pts = pd.DataFrame({"fit_nll": [0.6, 0.2, 1.0], "accuracy": [0.5, 0.8, 0.1]})  # unsorted
    assert value_at_fit(pts, 0.2) == 0.8 and value_at_fit(pts, 1.0) == 0.1
    assert value_at_fit(pts, 0.4) == pytest.approx(0.65)
    for outside in (0.1999, 1.0001, math.nan, math.inf):
        assert math.isnan(value_at_fit(pts, outside))
    # failed before the fix: an empty curve raised IndexError
    assert math.isnan(value_at_fit(pts.iloc[:0], 0.5))


# ----------------------------------------------------------------------------- run_row, table


def nll(rows, labels):
    return sum(-math.log(r[y]) for r, y in zip(rows, labels, strict=True)) / len(labels)


@pytest.mark.parametrize("prior_as", [torch.tensor, list, np.array])
@pytest.mark.parametrize(("method", "beta"), [("sft", 0.0), ("forward", 0.5), ("reverse", 3.0)])
def test_run_row_against_loops(prior_as, method, beta):
    run = fake_run(method, beta, 4, REF_ROWS, FINAL_ROWS, TRAIN, TEST)
    prior = [0.5, 0.25, 0.25]
    row = run_row("task A", run, prior_as(prior))
    n = len(TRAIN)
    fin_test, ref_test = FINAL_ROWS[n:], REF_ROWS[n:]
    assert (row["task"], row["method"], row["beta"], row["seed"]) == ("task A", method, beta, 4)
    assert row["kl_on"] == ("none" if method == "sft" else "task")
    assert row["fit_nll"] == pytest.approx(nll(FINAL_ROWS[:n], TRAIN), rel=1e-14)
    hits = [max(range(3), key=r.__getitem__) == y for r, y in zip(FINAL_ROWS, TRAIN, strict=False)]
    assert row["fit_acc"] == sum(hits) / n
    assert row["nll"] == pytest.approx(nll(fin_test, TEST), rel=1e-14)
    d_nll = nll(fin_test, TEST) - nll(ref_test, TEST)
    assert row["d_nll"] == pytest.approx(d_nll, rel=1e-12)
    vs_prior = nll(fin_test, TEST) - nll([prior] * len(TEST), TEST)
    assert row["nll_vs_prior"] == pytest.approx(vs_prior, rel=1e-12)


def test_run_row_prior_without_mass_on_a_held_out_label():
    run = fake_run("forward", 0.5, 0, REF_ROWS, FINAL_ROWS, TRAIN, TEST)
    row = run_row("t", run, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))  # TEST has a 2
    assert row["nll_vs_prior"] == -math.inf


def test_retention_table_rows_and_columns():
    prior = torch.tensor([0.4, 0.3, 0.3], dtype=torch.float64)
    a = [fake_run("sft", 0.0, 0, REF_ROWS, FINAL_ROWS, TRAIN, TEST),
         fake_run("forward", 0.5, 0, REF_ROWS, REF_ROWS, TRAIN, TEST)]  # fmt: skip
    b = [fake_run("reverse", 2.0, 1, REF_ROWS, FINAL_ROWS, TRAIN, TEST)]
    table = retention_table({"A": a, "B": b, "C": []}, prior)
    assert table["task"].tolist() == ["A", "A", "B"]
    for i, (task, run) in enumerate([("A", a[0]), ("A", a[1]), ("B", b[0])]):
        for key, value in run_row(task, run, prior).items():
            assert table[key].iloc[i] == value, key
    bounds = keep_bounds(table)
    for col in ("nll_bound", "f1_bound", "prior_bound"):
        assert table[col].tolist() == bounds[col].tolist()
    assert table["keeps"].tolist() == keeps_within(table).tolist()
    assert table["d_nll"].iloc[1] == 0.0  # the run is its reference


def test_retention_table_without_runs_is_a_value_error():
    # keep_bounds raised KeyError('d_nll') on the column-less empty table before the fix
    for runs in ({}, {"A": []}):
        with pytest.raises(ValueError, match="no runs"):
            retention_table(runs, torch.tensor([0.5, 0.5]))
