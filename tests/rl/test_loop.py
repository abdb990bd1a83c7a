"""Tests of kl_helpers.rl.loop on a tiny causal LM from a config (vocabulary 40, 2 layers) with a
character-level stand-in tokenizer: left padding, masks, sampling, the frozen reference, caching."""

from __future__ import annotations

import pytest
import torch

from kl_helpers.llm.model import encode_prompts
from kl_helpers.rl.forward import reference_logits, response_logits
from kl_helpers.rl.loop import add_lora, evaluate_policy, sample_responses, train_policy
from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.runs import policy_from_run, run_rl

PAD, EOS, BOS, ASSISTANT = 0, 1, 2, 3
LETTERS = "abcdefghijklmnopqrstuvwxyz ."
VOCAB = 4 + len(LETTERS) + 8  # specials, letters, unused ids


class CharTokenizer:
    """One token per character; a chat "template" = BOS + text + ASSISTANT."""

    pad_token_id, eos_token_id = PAD, EOS

    def __call__(self, text):
        return {"input_ids": [4 + LETTERS.index(c) for c in text if c in LETTERS]}

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        return [BOS, *self(messages[-1]["content"])["input_ids"], ASSISTANT]

    def batch_decode(self, rows, skip_special_tokens=True):
        out = []
        for row in rows:
            ids = [int(i) for i in row if not (skip_special_tokens and int(i) < 4)]
            out.append("".join(LETTERS[i - 4] if i - 4 < len(LETTERS) else "?" for i in ids))
        return out


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def a_reward(texts):
    """Share of the letter "a" in each response: a toy reward the policy can climb."""
    return torch.tensor([t.count("a") / max(len(t), 1) for t in texts])


CONFIG = RLConfig(
    beta=0.1, num_generations=3, prompts_per_step=2, max_new_tokens=6, steps=3, lr=0.05,
    lora_r=4, lora_alpha=8, seed=0,
)  # fmt: skip
PROMPTS = ["good day", "a review", "the pill", "so so"]


def test_encode_prompts_pads_on_the_left():
    ids, mask = encode_prompts(CharTokenizer(), ["ab", "abcd"])
    assert ids.shape == (2, 6) and torch.equal(mask.sum(1), torch.tensor([4, 6]))
    assert torch.equal(mask[0], torch.tensor([0, 0, 1, 1, 1, 1]))
    assert ids[0, 2] == BOS and ids[0, 0] == PAD and ids[:, -1].eq(ASSISTANT).all()
    with pytest.raises(ValueError, match="prompt"):
        encode_prompts(CharTokenizer(), [])


def test_left_padding_does_not_change_response_log_probs():
    model, tok = tiny_llama(), CharTokenizer()
    ids, mask = encode_prompts(tok, ["ab", "abcdef"])
    responses = torch.tensor([[5, 6, EOS, PAD], [7, 7, 8, 9]])
    resp_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        logits, logp = response_logits(model, ids, mask, responses, resp_mask)
        alone_ids, alone_mask = encode_prompts(tok, ["ab"])
        alone, alone_logp = response_logits(model, alone_ids, alone_mask, responses[:1, :3],
                                            resp_mask[:1, :3])  # fmt: skip
    torch.testing.assert_close(logits[0, :3], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logp[0, :3], alone_logp[0], atol=1e-5, rtol=1e-5)
    assert logp[0, 3] == 0  # past the EOS: masked out
    assert torch.isfinite(logp).all()


def test_sampling_is_seeded_grouped_and_masked_after_eos():
    model, tok = tiny_llama(), CharTokenizer()
    ids, mask = encode_prompts(tok, PROMPTS[:2])
    a = sample_responses(model, ids, mask, CONFIG, EOS, PAD, seed=3)
    b = sample_responses(model, ids, mask, CONFIG, EOS, PAD, seed=3)
    assert torch.equal(a[0], b[0]) and a[0].shape[0] == 2 * CONFIG.num_generations
    assert a[0].shape[1] <= CONFIG.max_new_tokens
    responses, resp_mask = a
    for row, m in zip(responses, resp_mask, strict=True):
        eos = (row == EOS).nonzero()
        if len(eos):  # everything after the first EOS is masked, the EOS itself is not
            assert m[: eos[0] + 1].all() and not m[eos[0] + 1 :].any()
        else:
            assert m.all()


def test_lora_policy_starts_at_the_reference_and_the_reference_never_moves():
    tok = CharTokenizer()
    base = tiny_llama()
    policy = add_lora(tiny_llama(), CONFIG.replace(steps=4))
    ids, mask = encode_prompts(tok, PROMPTS[:2])
    responses, resp_mask = sample_responses(policy, ids, mask, CONFIG, EOS, PAD, seed=0)
    ids, mask = ids.repeat_interleave(3, 0), mask.repeat_interleave(3, 0)
    before, _ = reference_logits(policy, ids, mask, responses, resp_mask)
    with torch.no_grad():
        base_logits, _ = response_logits(base, ids, mask, responses, resp_mask)
        start, _ = response_logits(policy, ids, mask, responses, resp_mask)
    torch.testing.assert_close(before, base_logits)  # reference = the base model
    torch.testing.assert_close(start, base_logits)  # LoRA's B = 0: the policy starts there
    history = train_policy(policy, tok, PROMPTS, a_reward, CONFIG.replace(steps=4), progress=False)
    after, _ = reference_logits(policy, ids, mask, responses, resp_mask)
    with torch.no_grad():
        moved, _ = response_logits(policy, ids, mask, responses, resp_mask)
    assert torch.equal(before, after)
    assert (moved - start).abs().max() > 1e-3  # the adapters did learn something
    assert len(history) == 4 and abs(history.kl[0]) < 1e-6  # KL = 0 before the first update
    assert all(k >= -1e-6 for k in history.kl)  # exact KL summed over tokens: never negative
    assert len(history.samples) == CONFIG.batch_size


def test_train_policy_rejects_a_model_without_adapters():
    with pytest.raises(ValueError, match="add_lora"):
        model = tiny_llama().requires_grad_(False)
        train_policy(model, CharTokenizer(), PROMPTS, a_reward, CONFIG, progress=False)


def test_run_rl_caches_history_and_adapter(tmp_path):
    model, tok = tiny_llama(), CharTokenizer()
    kwargs = {"model_name": "tiny", "reward_name": "a", "results_dir": tmp_path, "progress": False}
    first = run_rl(CONFIG, model, tok, PROMPTS, a_reward, **kwargs)
    assert (tmp_path / f"{CONFIG.label}-{first.key}" / "run.json").is_file()

    def no_reward(texts):
        raise AssertionError("a cached run must not train again")

    second = run_rl(CONFIG, model, tok, PROMPTS, no_reward, **kwargs)
    assert second.history.reward == pytest.approx(first.history.reward)
    assert second.history.samples == first.history.samples
    assert second.adapter.keys() == first.adapter.keys()
    for k in first.adapter:
        assert torch.equal(second.adapter[k], first.adapter[k])
    assert all(p.grad is None for p in model.parameters())  # the given model was not trained
    assert (
        run_rl(CONFIG.replace(beta=0.2), model, tok, PROMPTS, a_reward, **kwargs).key != first.key
    )


def test_a_cached_adapter_rebuilds_the_trained_policy(tmp_path):
    model, tok = tiny_llama(), CharTokenizer()
    kwargs = {"model_name": "tiny", "reward_name": "a", "results_dir": tmp_path, "progress": False}
    run = run_rl(CONFIG, model, tok, PROMPTS, a_reward, **kwargs)
    policy = policy_from_run(model, run)
    trained = add_lora(tiny_llama(), CONFIG)
    train_policy(trained, tok, PROMPTS, a_reward, CONFIG, progress=False)  # same seed: same run
    ids, mask = encode_prompts(tok, PROMPTS[:1])
    responses, resp_mask = torch.tensor([[4, 5, 6]]), torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        want, _ = response_logits(trained.eval(), ids, mask, responses, resp_mask)
        got, _ = response_logits(policy, ids, mask, responses, resp_mask)
        base, _ = response_logits(model, ids, mask, responses, resp_mask)
    torch.testing.assert_close(got, want)
    assert (got - base).abs().max() > 1e-3


def test_evaluate_policy_reports_zero_kl_for_an_untrained_policy():
    policy, tok = add_lora(tiny_llama(), CONFIG), CharTokenizer()
    out = evaluate_policy(policy, tok, PROMPTS[:2], a_reward, CONFIG, seed=1)
    n = 2 * CONFIG.num_generations
    assert out["reward"].shape == out["kl"].shape == out["length"].shape == (n,)
    assert len(out["texts"]) == n and out["kl"].abs().max() < 1e-6
    assert (out["length"] >= 1).all() and (out["length"] <= CONFIG.max_new_tokens).all()


def test_k3_placement_and_group_baseline_also_train():
    config = CONFIG.replace(kl_estimator="k3_loss", baseline="group")
    policy = add_lora(tiny_llama(), config)
    history = train_policy(policy, CharTokenizer(), PROMPTS, a_reward, config, progress=False)
    assert all(torch.isfinite(torch.tensor(history.loss)))
    assert all(k >= -1e-6 for k in history.kl_k3)  # k3 ≥ 0 for every token


def test_samples_come_from_the_distribution_the_loss_scores():
    """generate's own next-token logits (left-padded prompts, KV cache) = response_logits'."""
    from transformers import GenerationConfig

    model, tok = tiny_llama(), CharTokenizer()
    ids, mask = encode_prompts(tok, ["ab", "abcdef"])
    gen = GenerationConfig(
        do_sample=True, top_k=0, top_p=1.0, max_new_tokens=5, min_new_tokens=5,
        pad_token_id=PAD, eos_token_id=EOS, output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        responses = out.sequences[:, ids.shape[1] :]
        logits, _ = response_logits(model, ids, mask, responses, torch.ones_like(responses).bool())
    torch.testing.assert_close(logits, torch.stack(out.logits, dim=1), atol=1e-4, rtol=1e-4)


def test_train_policy_evaluates_every_k_steps_and_the_cache_keeps_it(tmp_path):
    model, tok = tiny_llama(), CharTokenizer()
    config = CONFIG.replace(steps=5)
    seen = []

    def evaluate(policy):
        out = evaluate_policy(policy, tok, PROMPTS[2:], a_reward, config, seed=7)
        seen.append(out["kl"].mean().item())
        return {"kl": seen[-1], "ref_nll": out["ref_nll"].mean().item(), "texts": out["texts"][:2]}

    kwargs = {"model_name": "tiny", "reward_name": "a", "results_dir": tmp_path, "progress": False}
    run = run_rl(config, model, tok, PROMPTS, a_reward, **kwargs, evaluate=evaluate, eval_every=2)
    assert [e["step"] for e in run.history.evals] == [0, 2, 4, 5]  # start, every 2, the last
    assert run.history.evals[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # π = π_ref at the start
    assert run.history.evals[-1]["kl"] > 1e-4 and len(run.history.evals[-1]["texts"]) == 2
    plain = run_rl(config, model, tok, PROMPTS, a_reward, **kwargs)  # same training, no evals
    assert plain.key != run.key and plain.history.evals == []
    assert plain.history.reward == pytest.approx(run.history.reward)  # evals do not disturb it

    def no_eval(policy):
        raise AssertionError("a cached run must not evaluate again")

    again = run_rl(config, model, tok, PROMPTS, a_reward, **kwargs, evaluate=no_eval, eval_every=2)
    assert again.history.evals == run.history.evals
    with pytest.raises(ValueError, match="together"):
        train_policy(add_lora(tiny_llama(), config), tok, PROMPTS, a_reward, config, eval_every=2)


def test_evaluate_policy_reports_the_reference_nll_per_token():
    policy, tok = add_lora(tiny_llama(), CONFIG), CharTokenizer()
    out = evaluate_policy(policy, tok, PROMPTS[:2], a_reward, CONFIG, seed=1)
    assert out["ref_nll"].shape == (2 * CONFIG.num_generations,)
    assert (out["ref_nll"] > 0).all()  # a random 40-token model is far from certain
    assert (out["ref_nll"] < 2 * torch.log(torch.tensor(float(VOCAB)))).all()
