"""kl_helpers.rl.plan at its edges (issue 30): RLHFPlan refusing every setting its checks name
(mode, empty or shared prompts, too few prompts, recipes, reward kind, βs 0/-1/NaN/inf/twice,
compare_beta off the grid, eval_every/sweep_steps/hack_steps order and multiples,
eval_generations 1, bon_ns and short_ns not increasing integers from 1 (2.5), bon_pool < 2·N,
short_prompt without "{}", short_top_p 0/NaN/1.5, optimum_betas empty, 0, NaN or inf, seeds
-1/True/0.5, sweep_seeds 0/True/2.0); lists where tuples are usual; betas sorted as floats;
run_config for β = 0, -0.0, 5e-324 and 1e6 at the plan's seed and others, negative β and seed;
seeds(); short_prompts for the plan's prompts and for prompts of another form; eval_config;
rlhf_plan(True/False/None) under $KL_QUICK and $CI; reward_config for every recipe and epochs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.plan import PROMPTS, QUICK, RLHFPlan, reward_config, rlhf_plan
from kl_helpers.rl.reward import RECIPES

BAD = [
    ({"mode": "Full"}, "mode must be"),
    ({"train_prompts": ()}, "must both be non-empty"),
    ({"heldout_prompts": []}, "must both be non-empty"),
    ({"heldout_prompts": PROMPTS[11:13]}, "also a training prompt"),
    ({"train_prompts": PROMPTS[:1]}, "train_prompts"),
    ({"proxy": "imdb"}, "proxy must be one of"),
    ({"gold": None}, "gold must be one of"),
    ({"reward_kind": "logits"}, "reward_kind must be one of"),
    ({"betas": (0.0, 0.3)}, "finite βs > 0"),
    ({"betas": (-1.0, 0.3)}, "finite βs > 0"),
    ({"betas": (math.nan, 0.3)}, "finite βs > 0"),
    ({"betas": (math.inf, 0.3)}, "finite βs > 0"),
    ({"betas": (0.3, 0.3 * (1 + 1e-14))}, "twice"),
    ({"compare_beta": 0.5}, "compare_beta"),
    ({"eval_every": 0}, "eval_every <= sweep_steps"),
    ({"sweep_steps": 50}, "eval_every <= sweep_steps"),
    ({"sweep_steps": 8, "eval_every": 3}, "multiple of eval_every"),
    ({"eval_generations": 1}, "eval_generations"),
    ({"bon_ns": ()}, "bon_ns"),
    ({"bon_ns": (2, 4)}, "bon_ns"),
    ({"bon_ns": (1, 4, 2)}, "bon_ns"),
    ({"bon_ns": (1, 1, 2)}, "bon_ns"),
    ({"bon_ns": (1, 2.5)}, "bon_ns"),
    ({"bon_pool": 31}, "bon_pool"),
    ({"short_prompt": "Describe it in one word."}, "short_prompt"),
    ({"short_ns": (1, 2.5, 4)}, "short_ns"),  # failed before the fix: 2.5 was accepted
    ({"short_ns": (0, 1)}, "short_ns"),
    ({"short_top_p": 0.0}, "short_top_p"),
    ({"short_top_p": math.nan}, "short_top_p"),
    ({"short_top_p": 1.5}, "short_top_p"),
    ({"optimum_betas": ()}, "optimum_betas"),
    ({"optimum_betas": (1.0, 0.0)}, "optimum_betas"),
    ({"optimum_betas": (1.0, math.nan)}, "optimum_betas"),  # failed before the fix: accepted
    ({"optimum_betas": (math.inf, 1.0)}, "optimum_betas"),  # failed before the fix: accepted
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"seed": 0.5}, "seed"),
    ({"sweep_seeds": 0}, "sweep_seeds"),
    ({"sweep_seeds": True}, "sweep_seeds"),
    ({"sweep_seeds": 2.0}, "sweep_seeds"),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_plan_refuses(changes, message):
    with pytest.raises(ValueError, match=message):
        RLHFPlan(**changes)


def test_lists_numpy_values_and_edge_settings_are_taken():
    plan = RLHFPlan(
        train_prompts=list(PROMPTS[:3]),
        heldout_prompts=[PROMPTS[15]],
        betas=[np.float64(1.0), 0.1, np.float32(0.25)],
        compare_beta=0.25,
        eval_every=1,
        sweep_steps=1,
        hack_steps=1,
        bon_ns=[1],
        bon_pool=2,
        short_ns=[1],
        short_top_p=1.0,
        optimum_betas=[5e-324, 1e300],
        seed=np.int64(2**40),
        sweep_seeds=1,
        base=RLConfig(prompts_per_step=3),
    )
    assert plan.betas == (0.1, 0.25, 1.0) and all(type(b) is float for b in plan.betas)
    assert plan.seeds() == (2**40,) and plan.eval_config().num_generations == 8
    assert plan.short_prompts() == ("Describe the cough syrup you bought in one word.",)


@pytest.mark.parametrize("plan", [RLHFPlan(), QUICK, QUICK.replace(seed=7, sweep_seeds=4)])
def test_run_config_steps_and_seeds(plan):
    assert plan.seeds() == tuple(range(plan.seed, plan.seed + plan.sweep_seeds))
    for beta in (0.0, -0.0):
        hack = plan.run_config(beta)
        assert hack == plan.base.replace(beta=beta, steps=plan.hack_steps, seed=plan.seed)
        other = plan.run_config(beta, seed=plan.seed + 1)
        assert other.steps == plan.sweep_steps and other.seed == plan.seed + 1
    for beta in (5e-324, 0.3, 1e6):
        config = plan.run_config(beta, "k3_loss")
        assert config == plan.base.replace(
            beta=beta, kl_estimator="k3_loss", steps=plan.sweep_steps, seed=plan.seed
        )
    assert plan.run_config(0.0, seed=0 if plan.seed else 1).steps == plan.sweep_steps
    with pytest.raises(ValueError, match="beta must be finite and >= 0"):
        plan.run_config(-1e-300)
    with pytest.raises(ValueError, match="beta must be finite"):
        plan.run_config(math.inf)
    # failed before the fix: RLConfig took seed -1 (NumPy then refused it mid-run)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        plan.run_config(0.1, seed=-1)
    with pytest.raises(ValueError, match="kl_estimator"):
        plan.run_config(0.1, "k2")
    assert plan.eval_config() == plan.base.replace(num_generations=plan.eval_generations)


def test_short_prompts_strip_only_the_review_frame():
    plan = RLHFPlan(
        train_prompts=PROMPTS[:2] + ("Write a one-sentence review of X",),
        heldout_prompts=("Rate the ointment.", "Write a one-sentence review of ."),
        short_prompt="{}|",
        base=RLConfig(prompts_per_step=2),
    )
    assert plan.short_prompts() == ("Rate the ointment|", "|")  # only the frame's parts go
    expected = tuple(f"Describe {p[31:-1]} in one word." for p in PROMPTS[12:])
    assert RLHFPlan().short_prompts() == expected


@pytest.mark.parametrize(
    ("quick", "env", "expected"),
    [
        (True, {"KL_QUICK": "0"}, QUICK),
        (False, {"KL_QUICK": "1"}, RLHFPlan()),
        (None, {"KL_QUICK": "1"}, QUICK),
        (None, {"CI": "true"}, QUICK),
        (None, {"KL_QUICK": "no", "CI": "true"}, RLHFPlan()),
        (None, {}, RLHFPlan()),
    ],
)
def test_rlhf_plan(monkeypatch, quick, env, expected):
    for name in ("KL_QUICK", "CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert rlhf_plan(quick) == expected


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_reward_config(recipe):
    assert reward_config(recipe, None) is RECIPES[recipe]
    for epochs in (1, 50):
        assert reward_config(recipe, epochs) == RECIPES[recipe].replace(epochs=epochs)
    with pytest.raises(ValueError, match="epochs"):
        reward_config(recipe, 0)
    with pytest.raises(ValueError, match="recipe must be one of"):
        reward_config(recipe.upper(), None)
