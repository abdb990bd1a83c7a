"""kl_helpers.studies.beta_sweep at its edges (issue 30): t_interval against scipy's t.interval at n
= 1, 2, 5 and 50, levels 1e-9, 0.5, 0.95 and 1 - 1e-12, scales 1e-300 and 1e300, equal values,
lists/tuples/arrays, and refusals (none, 2-D, NaN, inf, level 0, 1, NaN, and values whose mean or
spread overflows float64); pareto_frontier against a brute-force enumeration with ties, duplicates,
±inf, one point and none, and bad shapes; run_name for β = 0, -0.0, 5e-324 and 1e6; best_beta with
ties, NaN seeds and no rows; summarise's means and sample sds against numpy and its method order;
seed_comparisons against t_interval of the per-seed differences (partial seed overlap, duplicate
rows per seed, no pairs, no shared seed); both plans' configs against an enumeration, describe,
sweep_plan under $KL_QUICK, edited_plan (unsorted βs, NumPy seeds, refusals) and is_default_plan (βs
within 1e-12); on hand-made runs: split_probs for validation sizes 0..all and outside them
(refused), evaluation_table's reference rows once per seed, theory_table against the forward closed
form and the reverse fixed-point equation (SFT left out), confidence_table against loops.
SweepPlan's fields: frozen, the default base, one β and one seed, βs that are not positive, finite
and distinct, seeds that are not distinct non-negative ints, and a mode that is no plan's refused;
sweep_data/SweepData against make_sentiment_splits (validation then test, Python-int labels, the
split sizes) at the smallest config; tradeoff_points against a hand-built frontier by enumeration
(SFT shared by both methods at β = 0, x from another split, equal points on both methods, reference
rows left out)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from kl_helpers.data.sentiment import SentimentConfig, make_sentiment_splits
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.results import LossHistory, RunResult
from kl_helpers.studies.beta_sweep import (
    PLANS,
    SweepData,
    SweepPlan,
    best_beta,
    confidence_table,
    edited_plan,
    evaluation_table,
    is_default_plan,
    pareto_frontier,
    run_name,
    seed_comparisons,
    split_probs,
    summarise,
    sweep_data,
    sweep_plan,
    t_interval,
    theory_table,
    tradeoff_points,
)

rng = np.random.default_rng(0)


@pytest.mark.parametrize("n", [2, 5, 50])
@pytest.mark.parametrize("level", [1e-9, 0.5, 0.95, 1 - 1e-12])
@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e300])
def test_t_interval_against_scipy(n, level, scale):
    values = list(rng.normal(size=n) * scale)
    mean, low, high = t_interval(values, level)
    exact_mean = statistics.fmean(values)  # sums exactly (math.fsum), as does stdev
    half = float(stats.t.isf((1 - level) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    # 0.5 + level / 2 rounds away digits of the quantile's argument: about 1e-4 of the tail at
    # level 1 - 1e-12, 1e-7 of the distance to the median at level 1e-9
    rel = {1e-9: 1e-6, 1 - 1e-12: 1e-3}.get(level, 1e-9)
    assert mean == pytest.approx(exact_mean, rel=1e-12)
    assert high - mean == pytest.approx(half, rel=rel)
    assert mean - low == pytest.approx(half, rel=rel)
    assert t_interval(tuple(values), level) == t_interval(np.asarray(values), level)


def test_t_interval_at_float64s_limit():
    # failed before the fix: sums and squares overflowed (mean inf, NaN bounds; scale 1e300
    # above gave infinite half-widths)
    assert t_interval([1e308, 1e308]) == (1e308, 1e308, 1e308)
    assert t_interval([1e308, -1e308]) == (0.0, -math.inf, math.inf)  # true half-width 1.3e309
    mean, low, high = t_interval([1.7e308, 1.6e308, 1.5e308], 0.5)
    half = stats.t.isf(0.25, 2) * statistics.stdev([1.7, 1.6, 1.5]) * 1e308 / math.sqrt(3)
    assert mean == pytest.approx(1.6e308, rel=1e-15)
    assert high - mean == pytest.approx(half, rel=1e-9) and mean - low == pytest.approx(
        half, rel=1e-9
    )


def test_t_interval_one_value_and_equal_values():
    assert t_interval([2.5]) == (2.5, -math.inf, math.inf)
    assert t_interval((7.0, 7.0, 7.0)) == (7.0, 7.0, 7.0)


@pytest.mark.parametrize(
    ("values", "level", "message"),
    [
        ([], 0.95, "non-empty 1-D"),
        ([[1.0, 2.0]], 0.95, "non-empty 1-D"),
        ([1.0, math.nan], 0.95, "finite"),
        ([1.0, math.inf], 0.95, "finite"),
        ([1.0, 2.0], 0.0, "level"),
        ([1.0, 2.0], 1.0, "level"),
        ([1.0, 2.0], math.nan, "level"),
    ],
)
def test_t_interval_refuses(values, level, message):
    with pytest.raises(ValueError, match=message):
        t_interval(values, level)


def frontier_by_enumeration(x, y):
    keep = []
    for i in range(len(x)):
        dominated = any(
            x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i]) for j in range(len(x))
        )
        keep.append(not dominated)
    return keep


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([], []),
        ([3.0], [-1.0]),
        ([1, 2, 3], [3, 2, 1]),
        ([1.0, 1.0, 2.0], [2.0, 2.0, 1.0]),  # a duplicate: neither dominates the other
        ([1.0, 1.0], [1.0, 2.0]),  # a tie in x, lower y wins
        ([-math.inf, 0.0, 5.0], [math.inf, 0.0, -1.0]),
        ([0.0, -0.0], [1.0, 1.0]),
    ],
)
def test_pareto_frontier_against_enumeration(x, y):
    mask = pareto_frontier(x, y)
    assert mask.dtype == bool and mask.tolist() == frontier_by_enumeration(x, y)


def test_pareto_frontier_random_points_and_refusals():
    for n in (2, 7, 30):
        x, y = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)
        assert pareto_frontier(x, y).tolist() == frontier_by_enumeration(list(x), list(y))
    for x, y in (([1.0, 2.0], [1.0]), ([[1.0]], [[1.0]])):
        with pytest.raises(ValueError, match="1-D of equal length"):
            pareto_frontier(x, y)


def test_run_name():
    assert run_name(("sft", 0.0)) == run_name(("forward", -0.0)) == "SFT"
    assert run_name(("forward", 0.3)) == "forward β=0.3"
    assert run_name(("reverse", 5e-324)) == "reverse β=4.94066e-324"
    assert run_name(("reverse", 1e6)) == "reverse β=1e+06"


def table(rows):
    return pd.DataFrame(rows, columns=["method", "beta", "seed", "split", "nll", "acc"])


ROWS = [
    ("sft", 0.0, 0, "validation", 1.0, 0.5),
    ("sft", 0.0, 1, "validation", 3.0, 0.7),
    ("forward", 0.3, 0, "validation", 0.5, 0.6),
    ("forward", 0.3, 1, "validation", 2.5, 0.8),
    ("forward", 1.0, 0, "validation", 2.0, 0.1),
    ("forward", 1.0, 1, "validation", 1.0, 0.2),
    ("reverse", 0.3, 0, "validation", 9.0, 0.0),
    ("reverse", 0.3, 2, "validation", 1.0, 0.0),
    ("reference", math.inf, 0, "validation", 0.0, 1.0),
    ("forward", 0.3, 0, "test", -5.0, 1.0),
]


def test_best_beta_ties_nan_and_no_rows():
    t = table(ROWS)
    assert best_beta(t, "forward") == 0.3  # means: SFT 2.0, 0.3 -> 1.5, 1.0 -> 1.5: first wins
    assert best_beta(t, "forward", "acc") == 1.0
    assert best_beta(t, "reverse") == 0.0 and best_beta(t, "forward", split="test") == 0.3
    nan = table(ROWS + [("forward", 3.0, 0, "validation", math.nan, 0.0)])
    assert best_beta(nan, "forward") == 0.3
    with pytest.raises(ValueError, match="no rows for method 'js'"):
        best_beta(t[t["method"] != "sft"], "js")


def test_summarise_against_numpy_in_method_order():
    out = summarise(table(ROWS), "validation", ["nll", "acc"])
    assert list(out.index) == [("sft", 0.0), ("forward", 0.3), ("forward", 1.0), ("reverse", 0.3)]
    for (method, beta), row in out.iterrows():
        chosen = [r for r in ROWS if r[0] == method and r[1] == beta and r[3] == "validation"]
        for i, col in ((4, "nll"), (5, "acc")):
            values = np.array([r[i] for r in chosen])
            assert row[col] == pytest.approx(values.mean(), rel=1e-15)
            assert row[f"{col}_sd"] == pytest.approx(values.std(ddof=1), rel=1e-12)


def test_seed_comparisons_against_t_interval():
    rows = ROWS + [("forward", 0.3, 1, "validation", 4.5, 0.8)]  # a second row for seed 1
    pairs = [(("forward", 0.3), ("sft", 0.0)), (("reverse", 0.3), ("forward", 1.0))]
    out = seed_comparisons(table(rows), "validation", "nll", pairs, level=0.9)
    first = t_interval([0.5 - 1.0, (2.5 + 4.5) / 2 - 3.0], 0.9)
    assert out.loc[("forward β=0.3", "SFT")][["mean", "low", "high"]].tolist() == list(first)
    second = out.loc[("reverse β=0.3", "forward β=1")]
    assert second["n"] == 1 and second["mean"] == 7.0 and second["low"] == -math.inf
    assert out["interval"].iloc[0] == f"{first[0]:+.3f} [{first[1]:+.3f}, {first[2]:+.3f}]"
    empty = seed_comparisons(table(rows), "validation", "nll", [])
    assert empty.empty and list(empty.columns) == ["mean", "low", "high", "n", "interval"]
    with pytest.raises(ValueError, match="share no seed"):
        seed_comparisons(table(rows), "test", "nll", [(("forward", 0.3), ("sft", 0.0))])
    assert list(itertools.chain(*out.index)) == [
        "forward β=0.3",
        "SFT",
        "reverse β=0.3",
        "forward β=1",
    ]


# --- plans and the tables built from runs -------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "quick"])
def test_plan_configs_describe_and_defaults(monkeypatch, mode):
    plan = PLANS[mode]
    want = []
    for seed in plan.seeds:
        base = plan.base.replace(seed=seed)
        want.append(base.replace(method="sft", beta=0.0))
        want += [base.replace(method=m, beta=b) for m in ("forward", "reverse") for b in plan.betas]
    assert plan.configs() == want and f"= {len(want)} runs" in plan.describe()
    monkeypatch.setenv("KL_QUICK", "1" if mode == "quick" else "0")
    assert sweep_plan() is plan and sweep_plan(mode == "quick") is plan
    assert is_default_plan(plan) and is_default_plan(edited_plan(plan))
    near = edited_plan(plan, betas=[b * (1 + 1e-13) for b in plan.betas])
    assert is_default_plan(near)  # within 1e-12: the same β
    assert not is_default_plan(edited_plan(plan, seeds=[*plan.seeds, 99]))
    assert not is_default_plan(edited_plan(plan, betas=[*plan.betas, 50.0]))
    reordered = edited_plan(
        plan, betas=list(reversed(plan.betas)), seeds=[np.int64(s) for s in plan.seeds]
    )
    assert reordered.betas == plan.betas and reordered.seeds == plan.seeds
    for bad in ({"betas": [0.0]}, {"betas": [1.0, 1.0]}, {"seeds": [True]}, {"seeds": [-1]}):
        with pytest.raises(ValueError):
            edited_plan(plan, **bad)


def fake_run(method, beta, seed, ref_rows, final_rows, train_labels, test_labels):
    config = ExperimentConfig(method=method, beta=beta, seed=seed)
    n = len(train_labels)
    ref = torch.tensor(ref_rows, dtype=torch.float64)
    fin = torch.tensor(final_rows, dtype=torch.float64)
    probs = {
        "reference/train": ref[:n], "reference/test": ref[n:], "start/train": ref[:n],
        "start/test": ref[n:], "final/train": fin[:n], "final/test": fin[n:],
    }  # fmt: skip
    history = LossHistory([0], [1.0], [0.0], [0.0], beta, method)
    labels = ("a", "b", "c")
    return RunResult(config, "k", "m", "cpu", 0.0, labels, ("t",) * n, tuple(train_labels),
                     ("u",) * len(test_labels), tuple(test_labels), history, probs)  # fmt: skip


REF_ROWS = [
    [0.6, 0.3, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.1, 0.8],
    [1 / 3, 1 / 3, 1 / 3],
    [0.5, 0.5, 0.0],
]
FINAL_ROWS = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]]
TRAIN, TEST = [0, 1], [2, 0, 1]


def runs():
    return [
        fake_run("sft", 0.0, 0, REF_ROWS, FINAL_ROWS, TRAIN, TEST),
        fake_run("forward", 0.5, 0, REF_ROWS, REF_ROWS, TRAIN, TEST),
        fake_run("reverse", 2.0, 1, REF_ROWS, FINAL_ROWS, TRAIN, TEST),
    ]


@pytest.mark.parametrize("n_validation", [0, 1, 3])
def test_split_probs(n_validation):
    parts = split_probs(runs()[0], "final", n_validation)
    assert parts["train"][0].tolist() == FINAL_ROWS[:2] and parts["train"][1] == TRAIN
    assert parts["validation"][0].tolist() == FINAL_ROWS[2 : 2 + n_validation]
    assert parts["validation"][1] == TEST[:n_validation] and parts["test"][1] == TEST[n_validation:]
    assert parts["test"][0].tolist() == FINAL_ROWS[2 + n_validation :]


@pytest.mark.parametrize("bad", [-1, 4, 1.5])
def test_split_probs_refuses_a_validation_size_outside_the_texts(bad):
    # failed before the fix: -1 put all but the last text in "validation", 4 left "test" empty
    with pytest.raises(ValueError, match="n_validation must be an integer in"):
        split_probs(runs()[0], "final", bad)


def test_evaluation_table_reference_rows_once_per_seed():
    table = evaluation_table(runs(), 1)
    ref = table[table["method"] == "reference"]
    assert (
        sorted(set(ref["seed"])) == [0, 1] and len(ref) == 2 * 3 and (ref["beta"] == math.inf).all()
    )
    assert len(table) == 3 * 3 + 6
    row = table[(table["method"] == "forward") & (table["split"] == "test")].iloc[0]
    nll = -(math.log(REF_ROWS[3][0]) + math.log(REF_ROWS[4][1])) / 2
    assert row["nll"] == pytest.approx(nll, rel=1e-12)


def test_theory_table_against_the_closed_forms():
    table = theory_table(runs())
    assert set(table["method"]) == {"forward", "reverse"} and len(table) == 4
    fwd = table[table["method"] == "forward"]
    for i, y in enumerate(TRAIN):
        r_y = REF_ROWS[i][y]
        row = fwd[fwd["sentence"] == i].iloc[0]
        assert row["r_y"] == r_y and row["predicted"] == pytest.approx(
            (1 + 0.5 * r_y) / 1.5, rel=1e-12
        )
        assert row["trained"] == r_y and row["gap"] == pytest.approx(
            r_y - row["predicted"], rel=1e-12
        )
    rev = table[table["method"] == "reverse"]
    for i, y in enumerate(TRAIN):
        r_y, beta = REF_ROWS[i][y], 2.0
        # reverse optimum: π_y solves π_y = r_y·exp(1/(β π_y)) / (r_y·exp(1/(β π_y)) + 1 − r_y)
        pred = float(rev[rev["sentence"] == i]["predicted"].iloc[0])
        e = r_y * math.exp(1 / (beta * pred))
        assert pred == pytest.approx(e / (e + 1 - r_y), rel=1e-9)


def test_confidence_table_against_loops():
    table = confidence_table(runs()[:1])
    assert list(table["split"]) == ["train", "test"]
    train, test = table.iloc[0], table.iloc[1]
    assert train["max_prob"] == pytest.approx((0.7 + 0.8) / 2, rel=1e-12)
    assert train["label_prob"] == pytest.approx((0.7 + 0.8) / 2, rel=1e-12)
    assert test["max_prob"] == pytest.approx((0.4 + 0.6 + 0.9) / 3, rel=1e-12)
    assert test["label_prob"] == pytest.approx((0.4 + 0.2 + 0.05) / 3, rel=1e-12)


# --- SweepPlan, sweep_data, tradeoff_points ------------------------------------------------------


def test_sweep_plan_fields_at_their_smallest():
    data = SentimentConfig(n_per_class=8, label_noise=0.0)
    plan = SweepPlan(mode="quick", data=data, betas=(2.0,), seeds=(5,))
    assert plan.base == ExperimentConfig()  # the default factory
    assert [(c.method, c.beta, c.seed) for c in plan.configs()] == [
        ("sft", 0.0, 5), ("forward", 2.0, 5), ("reverse", 2.0, 5),
    ]  # fmt: skip
    assert "= 3 runs" in plan.describe() and "24 sentences" in plan.describe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.betas = (1.0,)
    for name in ("full", "quick"):  # the shipped plans pass their own checks unchanged
        assert dataclasses.replace(PLANS[name]) == PLANS[name]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"betas": (0.0, 1.0)}, "β = 0 is plain SFT"),
        ({"betas": (-1.0,)}, "finite βs > 0"),
        ({"betas": (math.inf,)}, "finite βs > 0"),
        ({"betas": (1.0, 1.0)}, "a β twice"),
        ({"betas": ()}, "empty"),
        ({"seeds": (0, 0)}, "a seed twice"),
        ({"seeds": (-1,)}, "integers >= 0"),
        ({"seeds": (1.5,)}, "integers >= 0"),
        ({"mode": "fast"}, "mode must be"),
    ],
)
def test_sweep_plan_refuses_what_its_fields_rule_out(changes, match):
    # Before the fix each of these was accepted: β = 0 added a second SFT run per seed, β twice
    # and a seed twice duplicated runs, and mode "fast" made is_default_plan raise KeyError.
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(PLANS["quick"], **changes)


def test_sweep_data_is_the_splits_with_validation_then_test():
    config = SentimentConfig(n_per_class=8, label_noise=0.0, seed=3)
    out = sweep_data(config)
    splits = make_sentiment_splits(config)
    val, test = splits["validation"], splits["test"]
    assert isinstance(out, SweepData)
    assert (out.n_validation, out.n_test) == (len(val), len(test)) and len(val) > 0
    data = out.text_data
    assert list(data.train_texts) == list(splits["train"]["text"])
    assert list(data.train_labels) == [int(y) for y in splits["train"]["label"]]
    assert list(data.test_texts) == list(val["text"]) + list(test["text"])
    assert list(data.test_labels) == [int(y) for y in val["label"]] + [
        int(y) for y in test["label"]
    ]
    assert all(type(y) is int for y in data.train_labels + data.test_labels)
    assert len(data.test_texts) == out.n_validation + out.n_test
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.n_test = 0


def points_by_hand(rows, x, y, split, x_split):
    """Mean x and y per (method, β) from the rows, SFT copied to each method, and the frontier
    by enumeration of the distinct (β, x, y) points."""

    def mean(method, beta, metric, which):
        values = [r[metric] for r in rows if r["method"] == method and r["beta"] == beta
                  and r["split"] == which]  # fmt: skip
        return sum(values) / len(values)

    keys = sorted({(r["method"], r["beta"]) for r in rows if r["method"] != "reference"})
    pts = []
    for method, beta in keys:
        point = (beta, mean(method, beta, x, x_split), mean(method, beta, y, split))
        pts += [(m, *point) for m in ("forward", "reverse")] if method == "sft" else [
            (method, *point)]  # fmt: skip
    distinct = set((b, a, c) for _, b, a, c in pts)
    front = {
        p for p in distinct
        if not any(q[1] <= p[1] and q[2] <= p[2] and (q[1] < p[1] or q[2] < p[2]) for q in distinct)
    }  # fmt: skip
    return sorted((m, b, a, c, (b, a, c) in front) for m, b, a, c in pts)


@pytest.mark.parametrize("x_split", [None, "validation"])
def test_tradeoff_points_against_enumeration(x_split):
    rows = []
    values = {  # (method, β): [(seed, split, nll, acc)]
        ("sft", 0.0): [(0, "test", 1.0, 0.5), (1, "test", 2.0, 0.7), (0, "validation", 3.0, 0.1)],
        ("forward", 0.5): [(0, "test", 0.5, 0.6), (1, "test", 0.5, 0.6),
                           (0, "validation", 0.2, 0.3)],
        ("forward", 2.0): [(0, "test", 4.0, 0.2), (0, "validation", 0.1, 0.9)],
        ("reverse", 0.5): [(0, "test", 0.5, 0.6), (0, "validation", 0.2, 0.3)],
        ("reverse", 2.0): [(0, "test", 1.5, 0.1), (0, "validation", 5.0, 0.0)],
        ("reference", math.inf): [(0, "test", 0.0, 0.0), (0, "validation", 0.0, 0.0)],
    }  # fmt: skip
    for (method, beta), entries in values.items():
        for seed, split, nll, acc in entries:
            rows.append({"method": method, "beta": beta, "seed": seed, "split": split,
                         "nll": nll, "acc": acc})  # fmt: skip
    got = tradeoff_points(pd.DataFrame(rows), "acc", "nll", x_split=x_split)
    want = points_by_hand(rows, "acc", "nll", "test", x_split or "test")
    assert list(got.columns) == ["method", "beta", "x", "y", "frontier"]
    got_rows = sorted(
        (m, b, a, c, bool(f)) for m, b, a, c, f in got.itertuples(index=False, name=None)
    )
    assert got_rows == [pytest.approx(w) for w in want]
    assert len(got) == 6 and set(got["method"]) == {"forward", "reverse"}
