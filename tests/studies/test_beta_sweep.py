"""Notebook 07's sweep plumbing: quick-mode switch, plan, data adapter, tables, frontier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_helpers import runtime
from kl_helpers.data.sentiment import SentimentConfig
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.results import LossHistory, RunResult
from kl_helpers.studies import beta_sweep, metrics
from kl_helpers.theory import optima


@pytest.mark.parametrize(
    ("env", "quick"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "false"}, False),
        ({"KL_QUICK": "1"}, True),
        ({"KL_QUICK": "0", "CI": "true"}, False),
        ({"KL_QUICK": "yes"}, True),
    ],
)
def test_quick_mode_is_decided_by_the_environment(env, quick):
    assert runtime.quick_mode(env) is quick


def test_plans_cover_zero_and_betas_above_one():
    for plan in beta_sweep.PLANS.values():
        configs = plan.configs()
        betas = {c.beta for c in configs}
        assert 0.0 in betas and max(betas) > 1
        assert len(plan.seeds) >= 2
        assert len(configs) == len(plan.seeds) * (1 + 2 * len(plan.betas))
        assert plan.mode in plan.describe()
    assert len(beta_sweep.PLANS["full"].seeds) >= 3
    assert beta_sweep.sweep_plan(quick=True).mode == "quick"
    assert beta_sweep.sweep_plan(quick=False).mode == "full"


def test_sweep_data_keeps_validation_before_test():
    config = SentimentConfig(n_per_class=30, fractions=(1 / 3, 1 / 3, 1 / 3))
    sd = beta_sweep.sweep_data(config)
    assert sd.n_validation == 30 and sd.n_test == 30
    assert len(sd.text_data.test_texts) == 60
    assert len(sd.text_data.train_texts) == 30


def _fake_result(method: str, beta: float, seed: int, n_train=4, n_val=3, n_test=5) -> RunResult:
    gen = torch.Generator().manual_seed(seed * 100 + int(beta * 10))

    def probs(n):
        return torch.softmax(torch.randn(n, 3, generator=gen, dtype=torch.float64), 1)

    n_held = n_val + n_test
    return RunResult(
        config=ExperimentConfig(method=method, beta=beta, seed=seed),
        key="k",
        model_name="fake",
        device="cpu",
        wall_time_s=0.0,
        label_names=("a", "b", "c"),
        train_texts=tuple(f"t{i}" for i in range(n_train)),
        train_labels=tuple(i % 3 for i in range(n_train)),
        test_texts=tuple(f"h{i}" for i in range(n_held)),
        test_labels=tuple(i % 3 for i in range(n_held)),
        history=LossHistory([0], [1.0], [0.0], [0.0], beta, method),
        probs={
            "reference/train": probs(n_train),
            "reference/test": probs(n_held),
            "start/train": probs(n_train),
            "start/test": probs(n_held),
            "final/train": probs(n_train),
            "final/test": probs(n_held),
        },
    )


def test_evaluation_table_slices_validation_and_test():
    runs = [_fake_result("sft", 0.0, s) for s in (0, 1)] + [
        _fake_result(m, 1.0, s) for m in ("forward", "reverse") for s in (0, 1)
    ]
    table = beta_sweep.evaluation_table(runs, n_validation=3)
    assert set(table["split"]) == {"train", "validation", "test"}
    assert len(table) == len(runs) * 3 + 2 * 3  # + the reference once per seed and split
    r = runs[2]
    held = r.prob("final", "test")
    expected = metrics.evaluate(held[3:], list(r.test_labels[3:]), r.prob("reference", "test")[3:])
    row = table[(table.method == "forward") & (table.seed == 0) & (table.split == "test")].iloc[0]
    for name, value in expected.items():
        assert row[name] == pytest.approx(value)
    summary = beta_sweep.summarise(table, "test", ["nll", "ece"])
    assert list(summary.index.get_level_values("method")) == ["sft", "forward", "reverse"]
    assert "nll_sd" in summary.columns


def test_best_beta_picks_lowest_mean():
    import pandas as pd

    table = pd.DataFrame(
        {
            "method": ["sft", "sft", "forward", "forward", "forward", "forward"],
            "beta": [0.0, 0.0, 1.0, 1.0, 3.0, 3.0],
            "seed": [0, 1, 0, 1, 0, 1],
            "split": ["validation"] * 6,
            "nll": [0.9, 0.7, 0.5, 0.7, 0.55, 0.6],
        }
    )
    assert beta_sweep.best_beta(table, "forward") == 3.0
    with pytest.raises(ValueError, match="no rows"):
        beta_sweep.best_beta(table, "forward", split="test")


def test_pareto_frontier_against_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.random(40), rng.random(40)
    mask = beta_sweep.pareto_frontier(x, y)
    for i in range(40):
        dominated = any(
            x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i]) for j in range(40)
        )
        assert mask[i] == (not dominated)
    assert beta_sweep.pareto_frontier([1, 2, 3], [3, 2, 1]).all()
    with pytest.raises(ValueError, match="1-D"):
        beta_sweep.pareto_frontier([1, 2], [1])


def test_tradeoff_points_share_sft_between_methods():
    runs = [_fake_result("sft", 0.0, 0)] + [
        _fake_result(m, b, 0) for m in ("forward", "reverse") for b in (0.5, 2.0)
    ]
    table = beta_sweep.evaluation_table(runs, n_validation=3)
    pts = beta_sweep.tradeoff_points(table, "kl_rev", "nll")
    assert len(pts) == 6 and set(pts["method"]) == {"forward", "reverse"}
    assert pts["frontier"].any()


def test_theory_table_uses_the_closed_form():
    r = _fake_result("reverse", 0.5, 0)
    table = beta_sweep.theory_table([_fake_result("sft", 0.0, 0), r])
    assert len(table) == len(r.train_labels)
    row = table.iloc[1]
    r_y = r.prob("reference", "train")[1, r.train_labels[1]].item()
    assert row["predicted"] == pytest.approx(optima.reverse_kl_label_probability(r_y, 0.5))
    assert row["gap"] == pytest.approx(row["trained"] - row["predicted"])


def test_confidence_table_against_a_loop():
    runs = [_fake_result("forward", 0.5, 0), _fake_result("reverse", 0.5, 0)]
    table = beta_sweep.confidence_table(runs)
    assert len(table) == 4 and set(table["split"]) == {"train", "test"}
    r = runs[1]
    p, labels = r.prob("final", "test"), r.test_labels
    row = table[(table.method == "reverse") & (table.split == "test")].iloc[0]
    assert row["max_prob"] == pytest.approx(sum(max(p[i].tolist()) for i in range(len(p))) / len(p))
    assert row["label_prob"] == pytest.approx(sum(p[i, y].item() for i, y in enumerate(labels)) / 8)


def test_t_interval_against_the_t_table():
    mean, low, high = beta_sweep.t_interval([1.0, 2.0, 3.0])  # sd 1, n 3
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302652729911275 / 3**0.5)  # t(0.975, 2 df), from tables
    assert mean - low == pytest.approx(high - mean)
    _, low90, high90 = beta_sweep.t_interval([1.0, 2.0, 3.0], level=0.90)
    assert high90 - 2.0 == pytest.approx(2.919985580355516 / 3**0.5)  # t(0.95, 2 df)
    assert beta_sweep.t_interval([0.7]) == (0.7, -math.inf, math.inf)
    for bad in ([], [1.0, math.nan], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="values must be"):
            beta_sweep.t_interval(bad)
    with pytest.raises(ValueError, match="level"):
        beta_sweep.t_interval([1.0, 2.0], level=1.0)


def test_t_interval_covers_the_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws = rng.normal(0.3, 2.0, size=(4000, 3))
    covered = [low <= 0.3 <= high for _, low, high in map(beta_sweep.t_interval, draws)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.012)  # binomial sd 0.0034


def test_seed_comparisons_pair_runs_by_seed():
    import pandas as pd

    rows = []
    for seed, shift in ((0, 0.0), (1, 1.0), (2, 5.0), (3, 9.0)):  # seed effects far larger than a−b
        rows.append({"method": "sft", "beta": 0.0, "seed": seed, "split": "test", "nll": shift})
        if seed < 3:  # seed 3 has no forward run: it is left out of the pairs
            nll = shift - 0.1 - 0.01 * seed
            rows.append(
                {"method": "forward", "beta": 0.3, "seed": seed, "split": "test", "nll": nll}
            )
        rows.append({"method": "forward", "beta": 0.3, "seed": seed, "split": "train", "nll": 99.0})
    table = pd.DataFrame(rows)
    out = beta_sweep.seed_comparisons(table, "test", "nll", [(("forward", 0.3), ("sft", 0.0))])
    row = out.loc[("forward β=0.3", "SFT")]
    diffs = [-0.10, -0.11, -0.12]
    assert row["n"] == 3 and row["mean"] == pytest.approx(np.mean(diffs))
    half = 4.302652729911275 * 0.01 / 3**0.5  # sd of the paired differences is 0.01
    assert (row["low"], row["high"]) == pytest.approx((-0.11 - half, -0.11 + half))
    assert row["interval"] == f"{-0.11:+.3f} [{-0.11 - half:+.3f}, {-0.11 + half:+.3f}]"
    assert beta_sweep.seed_comparisons(table, "test", "nll", []).empty
    with pytest.raises(ValueError, match="share no seed"):
        beta_sweep.seed_comparisons(table, "test", "nll", [(("reverse", 1.0), ("sft", 0.0))])
