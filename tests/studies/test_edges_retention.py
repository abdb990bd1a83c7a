"""kl_helpers.studies.retention at its edges (issue 30): RetentionPlan.configs, replay_configs and
n_runs against an enumeration for both plans and edited ones (one seed, no replay β, both
directions, replay task absent); name and describe for truncation "left" and "right";
retention_plan(True/False/None) under $KL_QUICK; edited_plan with lists, NumPy β and seeds, and
refusing bool seeds, bool or string βs, NaN, duplicates and unknown tasks/methods; task_data for
both tasks against the article and SWAP_POSITIVE_NEGATIVE, an unknown task; run_task's sweeps
(replay only with texts, a replay task and replay βs) with run_sweep recorded; trained_reference
refusing a truncation side before loading anything."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from kl_helpers.data.article import article_data
from kl_helpers.encoding import TextData
from kl_helpers.studies import retention
from kl_helpers.studies.retention import (
    KL_METHODS,
    PLANS,
    SWAP_POSITIVE_NEGATIVE,
    Reference,
    edited_plan,
    retention_plan,
    run_task,
    task_data,
    trained_reference,
)

HELD_OUT = TextData(
    ("x",), (0,), ("r1", "r2", "r3"), (0, 1, 2), ("positive", "negative", "neutral")
)


def enumerate_configs(plan, task):
    out = []
    for seed in plan.seeds:
        base = plan.task.replace(seed=seed)
        out.append(base.replace(method="sft", beta=0.0))
        out += [base.replace(method=m, beta=b) for m in KL_METHODS for b in plan.betas]
    return out


PLAN_VARIANTS = [
    PLANS["full"],
    PLANS["quick"],
    edited_plan(PLANS["quick"], seeds=[4], replay_betas=[]),
    edited_plan(PLANS["full"], replay_methods=["reverse", "forward"], tasks=["flipped", "article"]),
    dataclasses.replace(PLANS["quick"], replay_tasks=("flipped",)),
]


@pytest.mark.parametrize("plan", PLAN_VARIANTS)
def test_configs_and_run_count_against_enumeration(plan):
    for task in plan.tasks:
        assert plan.configs(task) == enumerate_configs(plan, task)
    replay = [
        plan.task.replace(seed=s, method=m, beta=b, kl_inputs="replay",
                          replay_batch_size=plan.replay_batch_size)
        for s in plan.seeds for m in plan.replay_methods for b in plan.replay_betas
    ]  # fmt: skip
    assert plan.replay_configs() == replay
    with_replay = sum(t in plan.tasks for t in plan.replay_tasks)
    assert (
        plan.n_runs()
        == len(plan.tasks) * len(enumerate_configs(plan, "")) + len(replay) * with_replay
    )
    assert f"{plan.n_runs()} runs" in plan.describe()


@pytest.mark.parametrize("side", ["left", "right"])
def test_name_and_describe(side):
    plan = dataclasses.replace(PLANS["full"], truncation_side=side)
    word = "last" if side == "left" else "first"
    assert plan.name == f"full (reference: {word} 64 tokens, 3 epochs, lr 0.0001, batch 16)"
    assert plan.describe().startswith(
        f"full: reference 3 epochs on the training reviews ({word} 64"
    )


@pytest.mark.parametrize(
    ("quick", "env", "mode"),
    [(True, "0", "quick"), (False, "1", "full"), (None, "1", "quick"), (None, "0", "full")],
)
def test_retention_plan(monkeypatch, quick, env, mode):
    monkeypatch.setenv("KL_QUICK", env)
    assert retention_plan(quick) is PLANS[mode]


def test_edited_plan_takes_lists_and_numpy_values():
    plan = edited_plan(PLANS["quick"], betas=np.array([0.5, 2.0]), replay_betas=(np.float32(1.0),),
                       seeds=np.array([2, 0]), tasks=["flipped"])  # fmt: skip
    # failed before the fix: NumPy seeds were refused ("SEEDS must be distinct ...")
    assert plan.betas == (0.5, 2.0) and plan.replay_betas == (1.0,) and plan.tasks == ("flipped",)
    assert plan.seeds == (2, 0) and all(type(s) is int for s in plan.seeds)
    assert all(type(b) is float for b in plan.betas + plan.replay_betas)


@pytest.mark.parametrize(
    "edit",
    [
        {"seeds": [True]},  # failed before the fix: True was seed 1
        {"seeds": [0, False]},
        {"betas": [True]},  # failed before the fix: True was β = 1
        {"betas": ["0.3"]},  # failed before the fix: the string became β = 0.3
        {"replay_betas": [np.bool_(True)]},  # failed before the fix
        {"betas": [math.nan]},
        {"replay_betas": [0.0]},
        {"seeds": [-1]},
        {"seeds": [np.int64(3), 3]},
        {"tasks": ["article", "Flipped"]},
        {"tasks": []},
        {"replay_methods": ["reverse", "js"]},
    ],
)
def test_edited_plan_refuses(edit):
    with pytest.raises(ValueError):
        edited_plan(PLANS["quick"], **edit)


def test_task_data_for_both_tasks():
    article = article_data()
    plain = task_data("article", HELD_OUT)
    assert plain.train_texts == article.train_texts and plain.train_labels == article.train_labels
    assert plain.test_texts == HELD_OUT.test_texts and plain.test_labels == HELD_OUT.test_labels
    flipped = task_data("flipped", HELD_OUT)
    assert flipped.train_labels == tuple(SWAP_POSITIVE_NEGATIVE[y] for y in article.train_labels)
    assert sorted(SWAP_POSITIVE_NEGATIVE) == sorted(SWAP_POSITIVE_NEGATIVE.values()) == [0, 1, 2]
    assert flipped.label_names == plain.label_names == article.label_names
    with pytest.raises(ValueError, match="task must be one of"):
        task_data("Article", HELD_OUT)


@pytest.mark.parametrize(
    ("replay_texts", "task", "replay_betas", "sweeps"),
    [((), "article", (3.0,), 1), (("a", "b"), "article", (3.0,), 2), (("a",), "flipped", (3.0,), 1),
     (("a",), "article", (), 1)],
)  # fmt: skip
def test_run_task_sweeps(monkeypatch, tmp_path, replay_texts, task, replay_betas, sweeps):
    calls = []

    def sweep(configs, data, folder, **kw):
        calls.append((configs, data, folder, kw))
        return ["run"]

    monkeypatch.setattr(retention, "run_sweep", sweep)
    plan = dataclasses.replace(
        PLANS["quick"], tasks=("article", "flipped"), replay_betas=replay_betas
    )
    ref = Reference("MODEL", "TOK", None, "ref-name")
    runs = run_task(plan, task, ref, HELD_OUT, replay_texts, tmp_path, progress=False)
    assert runs == ["run"] * sweeps and len(calls) == sweeps
    configs, data, folder, kw = calls[0]
    assert (
        configs == plan.configs(task) and data == task_data(task, HELD_OUT) and folder == tmp_path
    )
    assert kw == {"model": "MODEL", "tokenizer": "TOK", "model_name": "ref-name", "progress": False,
                  "reference_logits": ref.logits}  # fmt: skip
    if sweeps == 2:
        assert calls[1][0] == plan.replay_configs()
        assert calls[1][1].replay_texts == tuple(replay_texts)


@pytest.mark.parametrize("side", ["Left", "both", ""])
def test_trained_reference_refuses_a_truncation_side(monkeypatch, side):
    monkeypatch.setattr(retention.models, "resolve_model", lambda m: pytest.fail("loaded"))
    with pytest.raises(ValueError, match="truncation_side must be 'left' or 'right'"):
        trained_reference(PLANS["quick"].reference, HELD_OUT, truncation_side=side)
