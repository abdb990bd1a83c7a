"""kl_helpers.studies.retention: the plan, the tasks, the cached reference weights, retention
metrics."""

import dataclasses
import math

import pandas as pd
import pytest
import torch

from kl_helpers.encoding import TextData
from kl_helpers.engine.config import ARTICLE_BETAS, ExperimentConfig
from kl_helpers.studies import retention, retention_scores

HELD_OUT = TextData(
    train_texts=("great drug", "awful side effects", "it was fine", "works well"),
    train_labels=(0, 1, 2, 0),
    test_texts=("really helped me", "made me sick", "no change at all"),
    test_labels=(0, 1, 2),
    label_names=("positive", "negative", "neutral"),
)
TINY = ExperimentConfig(model="minilm", epochs=1, max_length=16, batch_size=4)


def test_full_plan_covers_the_issue():
    plan = retention.PLANS["full"]
    assert len(plan.seeds) >= 3
    assert set(ARTICLE_BETAS) <= set(plan.betas) and max(plan.betas) > 1
    assert plan.replay_betas and min(plan.replay_betas) < 1  # a β the task-KL runs do not keep at
    assert (plan.task.lr, plan.task.batch_size, plan.task.epochs) == (1e-4, 8, 100)
    configs = plan.configs("article")
    assert len(configs) == len(plan.seeds) * (1 + 2 * len(plan.betas))
    assert {c.method for c in configs} == {"sft", *retention.KL_METHODS}
    for beta in plan.betas:  # every β with every seed, in both directions
        runs = {(c.method, c.seed) for c in configs if c.beta == beta}
        assert runs == {(m, s) for m in retention.KL_METHODS for s in plan.seeds}
    replay = plan.replay_configs()
    assert len(replay) == len(plan.seeds) * len(plan.replay_methods) * len(plan.replay_betas)
    assert {c.method for c in replay} == set(plan.replay_methods) == {"forward"}
    assert {c.kl_inputs for c in replay} == {"replay"}
    assert {c.replay_batch_size for c in replay} == {plan.replay_batch_size}
    assert plan.n_runs() == len(configs) + len(replay)


def test_plans_cut_reviews_as_the_reference_and_name_the_saved_run():
    from kl_helpers.notebook import claims

    for plan in retention.PLANS.values():  # step 2 evaluates the texts the reference learned
        assert plan.task.max_length == plan.reference.max_length
        assert plan.truncation_side in ("left", "right") and plan.mode in plan.name
    assert claims.SAVED_RUNS["08_forgetting"].plan == retention.PLANS["full"].name
    assert retention.PLANS["quick"].name != retention.PLANS["full"].name


def test_edited_plan_overrides_and_validates():
    plan = retention.PLANS["quick"]
    assert retention.edited_plan(plan) == plan
    edited = retention.edited_plan(plan, betas=[1, 10], replay_betas=[], seeds=[3], model="minilm")
    assert edited.betas == (1.0, 10.0) and edited.replay_betas == () and edited.seeds == (3,)
    assert edited.reference.model == "minilm" and edited.task == plan.task
    assert retention.edited_plan(plan, tasks=["flipped"]).tasks == ("flipped",)
    both = retention.edited_plan(plan, replay_methods=["forward", "reverse"])
    assert {c.method for c in both.replay_configs()} == {"forward", "reverse"}
    bad = [
        {"betas": []},
        {"betas": [0.0]},
        {"betas": [float("inf")]},
        {"replay_betas": [-1]},
        {"seeds": []},
        {"seeds": [1, 1]},
        {"seeds": [0.5]},
        {"tasks": ["nonsense"]},
        {"replay_methods": []},
        {"replay_methods": ["js"]},
        {"replay_methods": ["forward", "forward"]},
    ]
    for edit in bad:
        with pytest.raises(ValueError):
            retention.edited_plan(plan, **edit)


def test_quick_plan_is_smaller_and_chosen_by_the_switch():
    full, quick = retention.PLANS["full"], retention.PLANS["quick"]
    assert quick.n_runs() < full.n_runs() and quick.task.epochs < full.task.epochs
    assert retention.retention_plan(quick=True) is quick
    assert retention.retention_plan(quick=False) is full


def test_tasks_keep_the_sentences_and_flip_only_positive_and_negative():
    article = retention.task_data("article", HELD_OUT)
    flipped = retention.task_data("flipped", HELD_OUT)
    assert article.train_texts == flipped.train_texts and len(article.train_texts) == 7
    assert article.test_texts == HELD_OUT.test_texts
    swap = {0: 1, 1: 0, 2: 2}
    assert flipped.train_labels == tuple(swap[y] for y in article.train_labels)
    with pytest.raises(ValueError, match="task must be"):
        retention.task_data("nonsense", HELD_OUT)


def test_macro_f1_matches_a_hand_computation():
    probs = torch.eye(3, dtype=torch.float64)[[0, 0, 1, 2, 2, 0]]
    labels = [0, 1, 1, 2, 0, 0]
    # class 0: tp 2, predicted 3, true 3 -> 4/6; class 1: tp 1, 1, 2 -> 2/3; class 2: 1, 2, 1
    expected = (4 / 6 + 2 / 3 + 2 / 3) / 3
    assert math.isclose(retention_scores.macro_f1(probs, labels, 3), expected)
    assert retention_scores.macro_f1(torch.eye(3)[[0, 0]], [0, 0], 3) == pytest.approx(1 / 3)


def test_keeps_needs_all_three_conditions_in_se_units():
    base = {"d_nll": 0.05, "d_nll_se": 0.03, "d_macro_f1": -0.02, "d_macro_f1_se": 0.02}
    base |= {"nll_vs_prior": -0.2, "nll_vs_prior_se": 0.05}
    rows = [
        base,  # 0.05 <= 2·0.03, -0.02 >= -2·0.02, -0.2 < -2·0.05: keeps
        base | {"d_nll": 0.07},  # NLL more than 2 SE above the reference's
        base | {"d_macro_f1": -0.05},  # macro-F1 more than 2 SE below
        base | {"nll_vs_prior": -0.09},  # not clearly better than the class prior
        base | {"d_nll": -0.3, "d_macro_f1": 0.1},  # better than the reference: keeps
    ]
    table = pd.DataFrame(rows)
    assert retention_scores.keeps(table).tolist() == [True, False, False, False, True]
    assert retention_scores.keeps(table, k=3).tolist() == [True, True, True, False, True]
    with pytest.raises(ValueError):
        retention_scores.keeps(table, k=0)


def test_value_at_fit_interpolates_and_refuses_to_extrapolate():
    curve = pd.DataFrame({"fit_nll": [0.1, 0.5, 1.0], "accuracy": [0.5, 0.7, 0.8]})
    assert retention_scores.value_at_fit(curve, 0.3) == pytest.approx(0.6)
    assert math.isnan(retention_scores.value_at_fit(curve, 2.0))


def _nll(probs, labels):
    return -sum(math.log(probs[i, t].item()) for i, t in enumerate(labels)) / len(labels)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("retention")


def test_reference_weights_are_kept_and_reloaded(cache):
    tmp_path = cache
    first = retention.trained_reference(TINY, HELD_OUT, tmp_path)
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and (folders[0] / retention.WEIGHTS_FILE).is_file()
    assert first.run.key in first.name
    second = retention.trained_reference(TINY, HELD_OUT, tmp_path)  # loads, does not retrain
    assert second.run.wall_time_s == first.run.wall_time_s
    for (k, a), b in zip(
        first.model.state_dict().items(), second.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)
    # the loaded weights are the trained ones: they reproduce the run's saved probabilities
    from kl_helpers.encoding import encode
    from kl_helpers.reference import predict_logits

    enc = encode(second.tokenizer, HELD_OUT.test_texts, HELD_OUT.test_labels, TINY.max_length)
    probs = torch.softmax(predict_logits(second.model, enc).double(), -1)
    torch.testing.assert_close(probs, second.run.prob("final", "test"), atol=1e-5, rtol=0)
    assert not torch.allclose(second.run.prob("final", "test"), second.run.prob("start", "test"))


def test_the_source_changing_while_the_reference_trains_does_not_lose_its_weights(
    tmp_path, monkeypatch
):
    """make run stopped in notebook 08 when kl_helpers was edited during the reference's training:
    the weights were written next to a key computed before the run, whose folder never existed."""
    from kl_helpers.engine import results

    calls = iter(range(1000))
    monkeypatch.setattr(results, "code_fingerprint", lambda root=None: f"edit{next(calls):08d}")
    reference = retention.trained_reference(TINY, HELD_OUT, tmp_path)
    folder = results.run_dir(tmp_path, reference.run.config, reference.run.key)
    assert (folder / retention.WEIGHTS_FILE).is_file()


def test_run_task_and_table_with_replay(cache):
    reference = retention.trained_reference(TINY, HELD_OUT, cache)  # read back from the cache
    plan = dataclasses.replace(
        retention.PLANS["quick"],
        task=TINY.replace(epochs=2, batch_size=8),
        tasks=("flipped",),
        betas=(1.0,),
        seeds=(0,),
        replay_betas=(1.0,),
        replay_batch_size=2,
        replay_tasks=("flipped",),
        replay_methods=retention.KL_METHODS,
    )
    runs = retention.run_task(plan, "flipped", reference, HELD_OUT, HELD_OUT.train_texts, cache)
    assert len(runs) == plan.n_runs() == 5
    prior = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    table = retention_scores.retention_table({"flipped": runs}, prior)
    assert sorted(table["kl_on"].unique()) == ["none", "replay", "task"]
    assert set(table.columns) >= {"fit_nll", "accuracy", "macro_f1", "nll", "kl_to_ref", "keeps"}
    for run, (_, row) in zip(runs, table.iterrows(), strict=True):  # the columns' definitions
        ref, probs = run.prob("reference", "test"), run.prob("final", "test")
        y = list(run.test_labels)
        assert row["d_nll"] == pytest.approx(_nll(probs, y) - _nll(ref, y))
        assert row["nll_vs_prior"] == pytest.approx(
            _nll(probs, y) - _nll(prior.expand(len(y), 3), y)
        )
        assert row["d_macro_f1"] == pytest.approx(
            retention_scores.macro_f1(probs, y, 3) - retention_scores.macro_f1(ref, y, 3)
        )
    assert (table["kl_to_ref"] >= 0).all()
    summary = retention_scores.summarise(table)
    assert {"accuracy_min", "accuracy_max"} <= set(summary.columns)
    # every step-2 run starts from the reference: its start probabilities are the reference's
    for run in runs:
        torch.testing.assert_close(
            run.prob("reference", "test"), reference.run.prob("final", "test"), atol=1e-5, rtol=0
        )
