"""kl_helpers.rl.loop at its edges (issue 30), on the 2-layer Llama and character tokenizer of
test_loop: rollout's masks and texts against a loop that cuts each response at its first end
token (the tokenizer's EOS or the checkpoint's), a tokenizer without a pad id, the same seed
twice; rl_step's stats against float64 recomputation from one unpadded prompt at a time (exact
KL over the full vocabulary with a perturbed LoRA, lengths, rewards) at temperature 0.7, with
rewards as a list, a NumPy array, a (B, 1) float64 tensor or 0/1 ints, and a wrong number of
rewards refused; train_policy's prompt order against torch.randperm of the seed (wrapping past
the end), its evaluation schedule for eval_every 1, 2 and past the steps, modes kept, refusals
(evaluate without eval_every and the reverse, negative eval_every, too few prompts, nothing
trainable); RLHistory.append/len."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kl_helpers.rl import loop
from kl_helpers.rl.loop import RLHistory, add_lora, rl_step, rollout, train_policy
from kl_helpers.rl.loss import RLConfig
from tests.rl.test_loop import ASSISTANT, BOS, EOS, PAD, CharTokenizer, tiny_llama

CONFIG = RLConfig(
    beta=0.3, num_generations=2, prompts_per_step=2, max_new_tokens=5, steps=3, lr=0.05,
    lora_r=4, lora_alpha=8, seed=3, temperature=0.7,
)  # fmt: skip
PROMPTS = ["ab", "hello there"]


def cut(row, ends):
    """The response up to and including its first end token, as a list of ids."""
    out = []
    for t in row.tolist():
        out.append(t)
        if t in ends:
            break
    return out


def perturbed_policy(seed=0):
    policy = add_lora(tiny_llama(seed), CONFIG)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return policy


@pytest.mark.parametrize("extra_end", [None, 9])
def test_rollout_masks_and_texts_against_a_loop(extra_end):
    policy, tok = tiny_llama(), CharTokenizer()
    if extra_end is not None:
        policy.generation_config.eos_token_id = [EOS, extra_end]
    ends = {EOS} if extra_end is None else {EOS, extra_end}
    ids, attn, responses, mask, texts = rollout(policy, tok, PROMPTS, CONFIG, seed=11)
    assert ids.shape[0] == 2 and responses.shape[0] == 4 and responses.shape[1] <= 5
    for row, m, text in zip(responses, mask, texts, strict=True):
        kept = cut(row, ends)
        assert m.tolist() == [True] * len(kept) + [False] * (len(row) - len(kept))
        assert text == tok.batch_decode([kept])[0]
    again = rollout(policy, tok, PROMPTS, CONFIG, seed=11)
    assert torch.equal(again[2], responses) and again[4] == texts


def test_rollout_without_a_pad_id_pads_with_eos():
    tok = CharTokenizer()
    tok.pad_token_id = None
    ids, attn, responses, mask, texts = rollout(tiny_llama(), tok, PROMPTS, CONFIG, seed=2)
    assert (ids[attn == 0] == EOS).all()
    assert texts == [tok.batch_decode([cut(r, {EOS})])[0] for r in responses]


def float64_kl(policy, prompt, response, temperature):
    """KL(π‖π_ref) summed over one response's tokens, one unpadded prompt, float64."""
    tok = CharTokenizer()
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": prompt}]) + response])
    start = ids.shape[1] - len(response)
    with torch.no_grad():
        logits = policy(input_ids=ids).logits[0, start - 1 : -1].double() / temperature
        with policy.disable_adapter():
            ref = policy(input_ids=ids).logits[0, start - 1 : -1].double() / temperature
    logp, logq = logits.log_softmax(-1), ref.log_softmax(-1)
    return float((logp.exp() * (logp - logq)).sum())


@pytest.mark.parametrize(
    "reward_kind", ["list", "numpy", "column64", "ints"], ids=["list", "numpy", "B1", "int01"]
)
def test_rl_step_stats_against_float64(reward_kind):
    policy, tok = perturbed_policy(), CharTokenizer()
    before = copy.deepcopy(policy)
    seen = []

    def reward_fn(texts):
        seen.extend(texts)
        values = [float(len(t) % 3) for t in texts]
        return {
            "list": values,
            "numpy": np.array(values),
            "column64": torch.tensor(values, dtype=torch.float64)[:, None],
            "ints": torch.tensor([int(v > 0) for v in values]),
        }[reward_kind]

    _, _, responses, mask, texts = rollout(before, tok, PROMPTS, CONFIG, CONFIG.seed * 100_003 + 4)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    stats, got_texts = rl_step(policy, optimizer, tok, PROMPTS, reward_fn, CONFIG, step=4)
    assert got_texts == texts == seen
    kept = [cut(r, {EOS}) for r in responses]
    rewards = [float(len(t) % 3) for t in texts]
    if reward_kind == "ints":
        rewards = [float(r > 0) for r in rewards]
    assert stats["reward"] == pytest.approx(sum(rewards) / 4, rel=1e-6)
    assert stats["length"] == pytest.approx(sum(map(len, kept)) / 4, rel=1e-6)
    kls = [float64_kl(before, PROMPTS[i // 2], k, 0.7) for i, k in enumerate(kept)]
    assert stats["kl"] == pytest.approx(sum(kls) / 4, rel=1e-4, abs=1e-6) and stats["kl"] > 0
    assert all(isinstance(v, float) for v in stats.values())
    assert not all(
        torch.equal(a, b) for a, b in zip(policy.parameters(), before.parameters(), strict=True)
    )


def test_rl_step_refuses_a_wrong_number_of_rewards():
    policy, tok = perturbed_policy(), CharTokenizer()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    with pytest.raises(ValueError):
        rl_step(policy, optimizer, tok, PROMPTS, lambda texts: [1.0] * 3, CONFIG)


class Recorder:
    def __init__(self):
        self.batches, self.modes = [], []

    def __call__(self, policy, optimizer, tokenizer, batch, reward_fn, config, step):
        self.batches.append(batch)
        stats = {f: float(step) for f in loop.HISTORY_FIELDS}
        return stats, [f"text {step}"]


@pytest.mark.parametrize(
    ("steps", "every", "evals"),
    [(3, 1, [0, 1, 2, 3]), (5, 2, [0, 2, 4, 5]), (3, 7, [0, 3]), (3, 0, [])],
)
def test_train_policy_order_and_evaluation_schedule(monkeypatch, steps, every, evals):
    recorder = Recorder()
    monkeypatch.setattr(loop, "rl_step", recorder)
    policy = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train()
    policy[1].eval()  # a submodule in its own mode
    prompts = ["p0", "p1", "p2"]
    config = CONFIG.replace(steps=steps)
    seen_modes = []

    def evaluate(p):
        seen_modes.append(p.training)
        return {"score": 1.5}

    history = train_policy(
        policy, None, prompts, None, config, progress=False,
        evaluate=evaluate if every else None, eval_every=every,
    )  # fmt: skip
    order = torch.randperm(3, generator=torch.Generator().manual_seed(config.seed)).tolist()
    flat = [prompts[order[i % 3]] for i in range(2 * steps)]
    assert recorder.batches == [flat[2 * s : 2 * s + 2] for s in range(steps)]
    assert [e["step"] for e in history.evals] == evals
    assert all(e["score"] == 1.5 for e in history.evals) and not any(seen_modes)
    assert policy.training and not policy[1].training
    assert history.reward == [float(s) for s in range(steps)] and len(history) == steps
    assert history.samples == [f"text {steps - 1}"]


def test_train_policy_refusals():
    policy = torch.nn.Linear(2, 2)
    for evaluate, every in ((None, 2), (lambda p: {}, 0), (lambda p: {}, -1), (None, -1)):
        with pytest.raises(ValueError, match="evaluate and eval_every"):
            train_policy(
                policy, None, ["a", "b"], None, CONFIG, evaluate=evaluate, eval_every=every
            )
    with pytest.raises(ValueError, match="need >= 2 prompts, got 1"):
        train_policy(policy, None, ["a"], None, CONFIG)
    policy.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_policy(policy, None, ["a", "b"], None, CONFIG)


def test_rl_history_append():
    h = RLHistory()
    h.append({"reward": 1, "kl": np.float32(0.5), "kl_k1": torch.tensor(2.0), "kl_k3": 0.0,
              "length": 3, "loss": -1.0, "extra": "ignored"})  # fmt: skip
    assert len(h) == 1 and h.kl == [0.5] and h.kl_k1 == [2.0]
    assert all(type(getattr(h, f)[0]) is float for f in loop.HISTORY_FIELDS)
    # failed before the fix: reward was appended before the KeyError, so len(h) said 2 steps
    with pytest.raises(KeyError):
        h.append({"reward": 1.0, "kl": 1.0})
    assert len(h) == 1 and all(len(getattr(h, f)) == 1 for f in loop.HISTORY_FIELDS)
    assert BOS != ASSISTANT != PAD  # the tokenizer's specials stay distinct
