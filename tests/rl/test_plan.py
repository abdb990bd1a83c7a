"""Tests of kl_helpers.rl.plan (notebook 10's plan, held-out metrics, the Best-of-N pool) on the
tiny causal LM and character tokenizer of test_rl_loop."""

from __future__ import annotations

import numpy as np
import pytest

from kl_helpers.rl.best_of_n import best_of_n_kl_bound, best_of_n_table
from kl_helpers.rl.evaluation import (
    heldout_metrics,
    is_reference,
    mean_and_se,
    pool_baseline,
    seed_difference,
    seed_mean,
)
from kl_helpers.rl.loop import add_lora
from kl_helpers.rl.plan import PROMPTS, QUICK, RLHFPlan, reward_config, rlhf_plan
from kl_helpers.rl.reward import RECIPES
from kl_helpers.rl.runs import reference_pool
from tests.rl.test_loop import CONFIG, CharTokenizer, a_reward, tiny_llama
from tests.rl.test_loop import PROMPTS as TINY_PROMPTS


def test_plans_keep_held_out_prompts_apart_and_quick_is_smaller(monkeypatch):
    for plan in (RLHFPlan(), QUICK):
        assert not set(plan.train_prompts) & set(plan.heldout_prompts)
        assert set(plan.train_prompts) | set(plan.heldout_prompts) <= set(PROMPTS)
        assert plan.compare_beta in plan.betas and all(b > 0 for b in plan.betas)
        assert plan.hack_steps % plan.eval_every == 0 and plan.sweep_steps % plan.eval_every == 0
        assert max(plan.bon_ns) < plan.bon_pool and plan.bon_ns[0] == 1
    full = RLHFPlan()
    assert QUICK.hack_steps < full.hack_steps and QUICK.bon_pool < full.bon_pool
    monkeypatch.setenv("KL_QUICK", "1")
    assert rlhf_plan() is QUICK
    monkeypatch.setenv("KL_QUICK", "0")
    assert rlhf_plan().mode == "full"


def test_run_config_gives_beta_zero_the_long_run():
    plan = RLHFPlan()
    assert plan.run_config(0.0).steps == plan.hack_steps
    k3 = plan.run_config(0.1, "k3_loss")
    assert k3.steps == plan.sweep_steps and k3.beta == 0.1 and k3.kl_estimator == "k3_loss"
    assert plan.eval_config().num_generations == plan.eval_generations


def test_sweep_seeds_pair_runs_and_only_the_plans_seed_runs_long():
    plan = RLHFPlan(seed=4, sweep_seeds=3)
    assert plan.seeds() == (4, 5, 6)
    assert plan.run_config(0.0).steps == plan.hack_steps and plan.run_config(0.0).seed == 4
    other = plan.run_config(0.0, seed=5)
    assert other.steps == plan.sweep_steps and other.seed == 5 and other.beta == 0.0
    assert plan.run_config(0.3, "k3_loss", seed=6).seed == 6
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="sweep_seeds"):
            RLHFPlan(sweep_seeds=bad)


def test_seed_mean_and_seed_difference_against_numpy():
    a = [{"kl": 3.0, "reward": 1.0}, {"kl": 5.0, "reward": -1.0}, {"kl": 10.0, "reward": 0.5}]
    b = [{"kl": 1.0, "reward": 0.0}, {"kl": 4.0, "reward": 0.0}, {"kl": 2.0, "reward": 0.0}]
    out = seed_mean(a, ["kl", "reward"])
    kl = np.array([3.0, 5.0, 10.0])
    assert out["n_seeds"] == 3 and out["kl"] == pytest.approx(kl.mean())
    assert out["kl_se"] == pytest.approx(kl.std(ddof=1) / np.sqrt(3))
    d = np.array([2.0, 1.0, 8.0])
    mean, se = seed_difference(a, b, "kl")
    assert mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert seed_mean(a[:1], ["kl"])["kl_se"] == 0.0
    with pytest.raises(ValueError, match="paired"):
        seed_difference(a, b[:2], "kl")
    with pytest.raises(ValueError, match="at least one"):
        seed_mean([], ["kl"])


def test_reward_config_overrides_only_the_epochs():
    assert reward_config("reviews", None) == RECIPES["reviews"]
    assert reward_config("sentiment", 2) == RECIPES["sentiment"].replace(epochs=2)
    with pytest.raises(ValueError, match="recipe"):
        reward_config("nope", None)


def test_heldout_metrics_at_the_start_show_no_kl():
    policy, tok = add_lora(tiny_llama(), CONFIG), CharTokenizer()
    out = heldout_metrics(policy, tok, TINY_PROMPTS[:2], a_reward, a_reward, CONFIG, keep_texts=2)
    assert out["kl"] == pytest.approx(0.0, abs=1e-6) and out["reward"] == out["gold"]
    assert 0 <= out["distinct2"] <= 1 and out["ref_nll"] > 0 and len(out["texts"]) == 2
    n = CONFIG.num_generations * 2
    assert out["n"] == n and out["kl_se"] == pytest.approx(0.0, abs=1e-6)
    assert out["reward_se"] == out["gold_se"] and out["reward_se"] >= 0


def test_mean_and_se_is_the_sample_std_over_root_n():
    mean, se = mean_and_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and se == pytest.approx((14 / 3) ** 0.5 / 2)
    assert mean_and_se([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_se([])
    pool = [{"texts": ["a", "b"], "reward": [0.0, 2.0], "gold": [1.0, 1.0]},
            {"texts": ["c"], "reward": [4.0], "gold": [4.0]}]  # fmt: skip
    base = pool_baseline(pool)
    assert base["reward"] == 2.0 and base["gold"] == 2.0 and base["n"] == 3
    assert base["reward_se"] == pytest.approx(mean_and_se([0.0, 2.0, 4.0])[1])


def test_is_reference_until_a_lora_weight_moves():
    import torch

    policy = add_lora(tiny_llama(), CONFIG)
    assert is_reference(policy)
    with torch.no_grad():
        next(p for n, p in policy.named_parameters() if "lora_B" in n)[0, 0] = 1e-3
    assert not is_reference(policy)
    assert not is_reference(tiny_llama())  # no adapters at all


def test_short_prompts_keep_the_held_out_items():
    plan = RLHFPlan()
    assert plan.short_prompts()[0] == "Describe the vitamin supplement you take daily in one word."
    assert len(plan.short_prompts()) == len(plan.heldout_prompts)


def test_reference_pool_is_cached_and_feeds_best_of_n(tmp_path):
    model, tok = tiny_llama(), CharTokenizer()
    kw = {"model_name": "tiny", "results_dir": tmp_path, "chunk": 4, "progress": False}

    class Named:
        label = "a-share"

        def __call__(self, texts):
            return a_reward(texts)

    pool = reference_pool(model, tok, TINY_PROMPTS[:2], Named(), Named(), CONFIG, 10, **kw)
    assert [len(e["texts"]) for e in pool] == [10, 10]
    assert pool[0]["reward"] == pytest.approx(a_reward(pool[0]["texts"]).tolist())

    class Refuses(Named):
        def __call__(self, texts):
            raise AssertionError("a cached pool must not be scored again")

    assert (
        reference_pool(model, tok, TINY_PROMPTS[:2], Refuses(), Refuses(), CONFIG, 10, **kw) == pool
    )
    table = best_of_n_table(pool, [1, 2, 4])
    assert list(table["N"]) == [1, 2, 4] and table["kl"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert (table["kl"] <= table["bound"] + 1e-12).all()
    assert table["bound"].iloc[-1] == pytest.approx(best_of_n_kl_bound(4))
    assert (table["reward"].diff().dropna() >= -1e-12).all()  # best of more is never worse
    # ties (here many: the reward counts a's) only coarsen Best-of-N, so its KL cannot exceed
    # the KL of a pool of distinct rewards
    assert (table["kl"] <= table["M distinct (M, N only)"] + 1e-12).all()
    with pytest.raises(ValueError):
        reference_pool(model, tok, TINY_PROMPTS[:1], Named(), Named(), CONFIG, 0, **kw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"betas": (0.0, 0.3)}, "finite βs > 0"),
        ({"betas": (0.3, 0.3)}, "twice"),
        ({"compare_beta": 0.5}, "compare_beta"),
        ({"sweep_steps": 15}, "multiple of eval_every"),
        ({"hack_steps": 5}, "sweep_steps <= hack_steps"),
        ({"bon_ns": (2, 4)}, "starting at 1"),
        ({"bon_pool": 20}, "bon_pool"),
        ({"heldout_prompts": PROMPTS[:1]}, "also a training prompt"),
        ({"gold": "imdb"}, "gold must be one of"),
        ({"reward_kind": "score"}, "reward_kind"),
        ({"mode": "fast"}, "mode"),
        ({"short_prompt": "one word"}, "short_prompt"),
        ({"short_ns": (2, 8)}, "short_ns"),
        ({"short_top_p": 0.0}, "short_top_p"),
        ({"optimum_betas": (1.0, 0.0)}, "optimum_betas"),
    ],
)
def test_an_edit_that_cannot_run_fails_in_the_edit_cell(change, message):
    with pytest.raises(ValueError, match=message):
        RLHFPlan().replace(**change)


def test_edited_betas_are_sorted_floats():
    assert RLHFPlan().replace(betas=(1, 0.1, 0.3)).betas == (0.1, 0.3, 1.0)


def test_plan_runs_share_one_reference_evaluation_and_the_cache(tmp_path):
    """PlanRuns (notebooks 10 and 11): π_ref is evaluated once for every run's step 0, a second
    PlanRuns on the same folder loads the runs (same keys) without calling the reward, and each
    run is the plan's config at the β, estimator and seed asked for."""
    from kl_helpers.rl.runs import PlanRuns

    class Counted:
        label, calls = "a-share", 0

        def __call__(self, texts):
            Counted.calls += 1
            return a_reward(texts)

    plan = RLHFPlan(
        train_prompts=tuple(TINY_PROMPTS[:2]), heldout_prompts=tuple(TINY_PROMPTS[2:]),
        base=CONFIG.replace(steps=2), hack_steps=2, sweep_steps=1, eval_every=1,
        eval_generations=2, bon_ns=(1, 2), bon_pool=4,
    )  # fmt: skip
    model, tok = tiny_llama(), CharTokenizer()
    runs = PlanRuns(plan, model, tok, Counted(), Counted(), "tiny", results_dir=tmp_path)
    long = runs.train(0.0, eval_every=plan.eval_every, progress=False)
    short = runs.train(0.3, "k3_loss", seed=1, progress=False)
    assert (long.config.steps, long.config.beta, long.config.seed) == (2, 0.0, 0)
    assert (short.config.steps, short.config.kl_estimator, short.config.seed) == (1, "k3_loss", 1)
    assert [e["step"] for e in long.history.evals] == [0, 1, 2]
    assert short.history.evals[0] == long.history.evals[0]  # π_ref's step 0, computed once
    assert long.history.evals[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert len(long.history.evals[0]["texts"]) == len(plan.heldout_prompts) * 2
    pool = runs.reference_pool(progress=False)
    assert [len(e["texts"]) for e in pool] == [plan.bon_pool] * len(plan.heldout_prompts)

    Counted.calls = 0
    again = PlanRuns(plan, model, tok, Counted(), Counted(), "tiny", results_dir=tmp_path)
    assert again.train(0.3, "k3_loss", seed=1).history.evals == short.history.evals
    assert again.reference_pool() == pool
    assert Counted.calls == 0  # loaded, not trained, evaluated or scored again
    assert (
        PlanRuns(plan, model, tok, Counted(), Counted(), "other", results_dir=tmp_path)
        .train(0.3, "k3_loss", seed=1, progress=False)
        .key
        != short.key
    )  # another model name: another run
