"""kl_helpers.rl.runs at its edges (issue 30): save_rl_run/load_rl_run round trips bit for bit
(float32, bfloat16, int64 and non-contiguous adapter tensors, NaN/inf/-0.0/5e-324 stats, no steps,
samples with commas, quotes, newlines and non-ASCII, nested evals), a replaced stale folder, an
unfinished run refused; run_rl's cache key against RLConfig.key of model, reward, prompts and
evaluation (eval_every/eval_name count only with an evaluator) and a cached run loaded without
touching the model; reference_pool's chunks, seeds and truncation against an enumeration with a
fake rollout (size 1, chunk 1, chunk past size), its per-prompt cache, size/chunk < 1 refused;
PlanRuns.eval_name, evaluate (π_ref evaluated once) and train (eval_every None or given, seed);
policy_from_run against the trained LoRA policy's logits, the model left untouched, eval mode."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from kl_helpers.rl import runs
from kl_helpers.rl.loop import HISTORY_FIELDS, RLHistory
from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.runs import (
    PlanRuns,
    RLRun,
    load_rl_run,
    policy_from_run,
    reference_pool,
    run_rl,
    save_rl_run,
)

SAMPLES = ["a, b", 'say "hi"', "line\nbreak\r\n", "", "naïve 😀"]


def history(steps):
    h = RLHistory(samples=list(SAMPLES), evals=[{"step": 0, "gold": 0.5, "texts": ["x"]}])
    special = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 0.1 + 0.2]
    for i in range(steps):
        h.append({f: special[(i + j) % len(special)] for j, f in enumerate(HISTORY_FIELDS)})
    return h


def adapter():
    weight = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    return {
        "a.lora_A.weight": weight.t(),  # not contiguous
        "a.lora_B.weight": torch.full((2, 2), 5e-39, dtype=torch.float32),
        "b.bf16": torch.tensor([1.5, -0.0, 3e38], dtype=torch.bfloat16),
        "c.ids": torch.tensor([-100, 2**40]),
    }


def floats_equal(a, b):
    return [x.hex() for x in a] == [x.hex() for x in b] or all(
        (x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("steps", [0, 1, 7])
def test_save_load_round_trip_is_bit_exact(tmp_path, steps):
    config = RLConfig(beta=1e-300)
    run = RLRun(config, "k3y", history(steps), adapter(), "tiny llama", 0.1 + 0.2)
    folder = save_rl_run(run, str(tmp_path))
    assert folder == tmp_path / f"{config.label}-k3y"
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter.safetensors", "history.csv", "run.json"
    ]  # fmt: skip
    back = load_rl_run(tmp_path, config, "k3y")
    assert back.config == config and back.key == "k3y" and back.model_name == "tiny llama"
    assert back.wall_time_s == 0.1 + 0.2 and len(back.history) == steps
    for name in HISTORY_FIELDS:
        got, want = getattr(back.history, name), getattr(run.history, name)
        assert len(got) == len(want) and all(
            x.hex() == y.hex() if not math.isnan(y) else math.isnan(x)
            for x, y in zip(got, want, strict=True)
        ), name
    assert back.history.samples == SAMPLES and back.history.evals == run.history.evals
    assert back.adapter.keys() == run.adapter.keys()
    for name, tensor in run.adapter.items():
        assert back.adapter[name].dtype == tensor.dtype and torch.equal(back.adapter[name], tensor)


def test_save_replaces_a_stale_folder_and_load_refuses_unfinished(tmp_path):
    config = RLConfig()
    with pytest.raises(FileNotFoundError, match=f"no finished run {config.label}-k"):
        load_rl_run(tmp_path, config, "k")
    stale = tmp_path / f"{config.label}-k"
    stale.mkdir()
    (stale / "partial.csv").write_text("x")
    save_rl_run(RLRun(config, "k", history(2), adapter(), "m", 1.0), tmp_path)
    assert not (stale / "partial.csv").exists() and (stale / "run.json").is_file()


def test_run_rl_key_and_cache_hit(tmp_path):
    config = RLConfig(beta=0.0, steps=3)
    prompts = ["p1", "p2, with comma"]
    evaluate = object()
    keys = {
        (None, 0, ""): config.key("m", "r", *prompts),
        (None, 5, "x"): config.key("m", "r", *prompts),
        (evaluate, 5, "x"): config.key("m", "r", *prompts, "eval:5:x"),
        (evaluate, 0, ""): config.key("m", "r", *prompts, "eval:0:"),
    }
    assert len(set(keys.values())) == 3
    for (fn, every, name), key in keys.items():
        saved = RLRun(config, key, history(3), adapter(), "m", 2.0)
        save_rl_run(saved, tmp_path)
        got = run_rl(
            config,
            None,
            None,
            prompts,
            None,
            model_name="m",
            reward_name="r",
            results_dir=tmp_path,
            evaluate=fn,
            eval_every=every,
            eval_name=name,
        )  # fmt: skip  (model None: a cached run never touches it)
        assert got.key == key and got.wall_time_s == 2.0 and len(got.history) == 3


class Reward:
    def __init__(self, label, scale):
        self.label, self.scale = label, scale

    def __call__(self, texts):
        return torch.tensor([self.scale * len(t) for t in texts], dtype=torch.float64)


@pytest.mark.parametrize(("size", "chunk"), [(1, 1), (5, 2), (3, 16), (4, 4), (2, 1)])
def test_reference_pool_chunks_seeds_and_cache(tmp_path, monkeypatch, size, chunk):
    # failed before the fix for size 2, chunk 1: each chunk of 1 kept the 2 responses rollout
    # samples at least, so a prompt got 3 responses, not 2
    calls = []

    def rollout(model, tokenizer, prompts, cfg, seed):
        calls.append((prompts[0], cfg.num_generations, seed))
        texts = [f"{prompts[0]}|{seed}|{j}" for j in range(cfg.num_generations)]
        return None, None, None, None, texts

    monkeypatch.setattr(runs, "rollout", rollout)
    monkeypatch.setattr(runs, "code_fingerprint", lambda: "c0de")
    config = RLConfig(seed=3)
    prompts = ["first", "second"]
    proxy, gold = Reward("proxy", 1.0), Reward("gold", -0.5)
    kw = dict(model_name="m", results_dir=tmp_path, chunk=chunk, progress=False)
    pool = reference_pool(None, None, prompts, proxy, gold, config, size, **kw)
    expected_calls, expected = [], []
    for i, prompt in enumerate(prompts):
        texts = []
        for start in range(0, size, chunk):
            n = max(2, min(chunk, size - start))
            seed = 3 * 100_003 + 50_000 + i * 1_000 + start
            expected_calls.append((prompt, n, seed))
            texts += [f"{prompt}|{seed}|{j}" for j in range(n)][: min(chunk, size - start)]
        rewards = [float(len(t)) for t in texts]
        expected.append(
            {"prompt": prompt, "texts": texts, "reward": rewards, "gold": [-r / 2 for r in rewards]}
        )
    assert calls == expected_calls and pool == expected
    assert all(len(e["texts"]) == size for e in pool)
    folder = (
        tmp_path
        / f"bon-pool-{config.key('m', 'proxy', 'gold', str(size), str(chunk), 'c0de', *prompts)}"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["prompt-0.json", "prompt-1.json"]
    calls.clear()
    assert reference_pool(None, None, prompts, proxy, gold, config, size, **kw) == expected
    assert calls == []


@pytest.mark.parametrize(("size", "chunk"), [(0, 4), (4, 0), (-1, 1)])
def test_reference_pool_refuses_sizes_below_one(tmp_path, size, chunk):
    with pytest.raises(ValueError, match="size and chunk must be >= 1"):
        reference_pool(None, None, ["p"], None, None, RLConfig(), size, model_name="m",
                       results_dir=tmp_path, chunk=chunk)  # fmt: skip


def plan_runs(tmp_path):
    plan = SimpleNamespace(
        heldout_prompts=("h1", "h2"), eval_generations=3, seed=11, train_prompts=("t",),
        eval_config=lambda: RLConfig(seed=11),
        run_config=lambda beta, est, seed: RLConfig(beta=beta, kl_estimator=est, seed=seed or 11),
    )  # fmt: skip
    return PlanRuns(plan, "MODEL", "TOK", Reward("proxy", 1), Reward("gold", 2), "m", tmp_path)


def test_plan_runs_eval_name_evaluate_and_train(tmp_path, monkeypatch):
    pr = plan_runs(tmp_path)
    assert pr.eval_name == "('h1', 'h2')|proxy|gold|3|seed11|all texts"
    assert pr.eval_config == RLConfig(seed=11)
    metrics = []

    def heldout(policy, tokenizer, prompts, proxy, gold, config, *, seed, keep_texts):
        metrics.append((policy, prompts, seed, keep_texts))
        return {"gold": float(len(metrics))}

    monkeypatch.setattr(runs, "heldout_metrics", heldout)
    monkeypatch.setattr(runs, "is_reference", lambda policy: policy == "REF")
    assert pr.evaluate("REF") == {"gold": 1.0}
    first = pr.evaluate("REF")
    first["gold"] = -1.0  # a caller's change does not reach the cache
    assert pr.evaluate("REF") == {"gold": 1.0} and len(metrics) == 1
    assert pr.evaluate("POLICY") == {"gold": 2.0} and pr.evaluate("POLICY") == {"gold": 3.0}
    assert metrics[0] == ("REF", ("h1", "h2"), 11 + 123, 6)
    seen = []
    monkeypatch.setattr(runs, "run_rl", lambda config, *args, **kw: seen.append((config, args, kw)))
    pr.train(0.0)
    pr.train(1e6, "k3_loss", seed=5, eval_every=2)
    (c0, a0, k0), (c1, _, k1) = seen
    assert c0 == RLConfig(beta=0.0, seed=11) and a0 == ("MODEL", "TOK", ("t",), pr.proxy)
    assert k0["eval_every"] == c0.steps and k0["eval_name"] == pr.eval_name
    assert k0["reward_name"] == "proxy" and k0["results_dir"] == tmp_path
    assert c1 == RLConfig(beta=1e6, kl_estimator="k3_loss", seed=5) and k1["eval_every"] == 2


def test_policy_from_run_carries_the_adapter():
    from peft import get_peft_model_state_dict

    from tests.rl.test_forward import trained_policy
    from tests.rl.test_loop import tiny_llama

    config = RLConfig(lora_r=4, lora_alpha=8, seed=5)
    base = tiny_llama()
    trained = trained_policy(config)
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(trained).items()}
    run = RLRun(config, "k", history(1), state, "tiny", 1.0)
    before = [p.detach().clone() for p in base.parameters()]
    policy = policy_from_run(base.train(), run)
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    with torch.no_grad():
        want = trained.eval()(input_ids=ids).logits
        got = policy(input_ids=ids).logits
    assert not policy.training and torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, base.eval()(input_ids=ids).logits, atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(before, base.parameters(), strict=True))
