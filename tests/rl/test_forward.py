"""Tests of kl_helpers.rl.forward and the shared-prompt sampler: running each prompt once and
repeating its KV cache for its G responses gives the numbers of the unshared computation (the
prompt repeated G times, one forward over prompt + response) on the same samples: logits, log-probs,
exact KL, loss and LoRA gradients, with left-padded prompts of different lengths and responses
that end early at EOS; and the shared sampler's samples follow π by enumeration."""

from __future__ import annotations

import pytest
import torch

from kl_helpers.llm import model as llm
from kl_helpers.llm.sampling import sample_tokens
from kl_helpers.rl.forward import reference_logits, response_kl, response_logits
from kl_helpers.rl.loop import add_lora
from kl_helpers.rl.loss import rl_loss
from tests.llm.test_sampling import V, check_follows, generate_with_our_draw
from tests.rl.test_loop import CONFIG, EOS, PAD, tiny_llama

G = 3
# two left-padded prompts of different lengths (3 and 6 real tokens)
PROMPT_IDS = torch.tensor([[PAD, PAD, PAD, 2, 9, 11], [2, 5, 6, 7, 8, 3]])
PROMPT_MASK = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
# P·G = 6 responses of up to 5 tokens; rows 0, 2 and 4 end early at EOS (PAD after it)
RESPONSES = torch.tensor([
    [12, EOS, PAD, PAD, PAD], [13, 14, 15, 16, 17], [18, 19, EOS, PAD, PAD],
    [EOS, PAD, PAD, PAD, PAD], [20, 21, 22, 23, 24], [25, 26, 27, 28, EOS],
])  # fmt: skip
RESP_MASK = torch.tensor([
    [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0],
    [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1],
], dtype=torch.bool)  # fmt: skip


def trained_policy(config=CONFIG) -> torch.nn.Module:
    """A LoRA policy (q/v, ``config``'s rank) whose adapters are not zero, so π ≠ π_ref and every
    LoRA weight gets a gradient."""
    policy = add_lora(tiny_llama(), config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return policy


def step_numbers(policy, shared: bool, temperature: float):
    """Policy and reference logits/log-probs, exact KL, loss and LoRA gradients of one step."""
    ids, mask, group = PROMPT_IDS, PROMPT_MASK, G
    if not shared:  # the unshared computation: every prompt repeated for each response
        ids, mask, group = ids.repeat_interleave(G, 0), mask.repeat_interleave(G, 0), 1
    ref, ref_logp = reference_logits(
        policy, ids, mask, RESPONSES, RESP_MASK, temperature, num_generations=group
    )
    policy.train()
    policy.zero_grad(set_to_none=True)
    logits, logp = response_logits(policy, ids, mask, RESPONSES, RESP_MASK, temperature, group)
    rewards = torch.tensor([0.3, -1.0, 2.0, 0.5, 0.1, -0.4])
    loss = rl_loss(logp, ref_logp, RESP_MASK, rewards, 0.1, "k3_loss", G).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}
    with torch.no_grad():
        kl = response_kl(logits, ref, RESP_MASK)
    keep = RESP_MASK[..., None]
    return {
        "logits": torch.where(keep, logits, 0).detach(), "ref": torch.where(keep, ref, 0),
        "logp": logp.detach(), "ref_logp": ref_logp, "kl": kl, "loss": loss.detach(),
    }, grads  # fmt: skip


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompt_step_equals_the_unshared_step(temperature):
    torch.set_num_threads(1)
    policy = trained_policy()
    want, want_grads = step_numbers(policy, shared=False, temperature=temperature)
    got, got_grads = step_numbers(policy, shared=True, temperature=temperature)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)
    assert (want["kl"] > 1e-3).all()  # the policy is away from the reference: a real check
    assert want_grads.keys() == got_grads.keys() and len(want_grads) == 4 * 2  # 2 layers x q, v
    for name, grad in want_grads.items():
        assert grad.abs().max() > 1e-4, name  # every LoRA weight gets a gradient
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_prompt_cache_carries_the_gradient():
    """With the prompt's keys/values cut from the graph, the LoRA gradients change: the equality
    above depends on the gradient that flows through the repeated cache."""
    from kl_helpers.llm import sampling

    torch.set_num_threads(1)
    policy = trained_policy()
    _, want = step_numbers(policy, shared=True, temperature=1.0)
    original = sampling._returned_cache

    def detached(out):
        cache = original(out)
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys.detach(), layer.values.detach()
        return cache

    sampling._returned_cache = detached
    try:
        _, cut = step_numbers(policy, shared=True, temperature=1.0)
    finally:
        sampling._returned_cache = original
    assert max((cut[n] - want[n]).abs().max() for n in want) > 1e-4


def test_one_token_responses_and_bad_shapes():
    torch.set_num_threads(1)
    model = tiny_llama()
    with torch.no_grad():
        one, one_logp = response_logits(model, PROMPT_IDS, PROMPT_MASK, RESPONSES[:, :1],
                                        RESP_MASK[:, :1], num_generations=G)  # fmt: skip
        full, full_logp = response_logits(model, PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK,
                                          num_generations=G)  # fmt: skip
    torch.testing.assert_close(one[:, 0], full[:, 0])
    torch.testing.assert_close(one_logp[:, 0], full_logp[:, 0])
    with pytest.raises(ValueError, match=r"\(2, 6\).*\(6, 5\)"):
        response_logits(model, PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, num_generations=2)
    with pytest.raises(ValueError, match="num_generations"):
        response_logits(model, PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, num_generations=0)


# --- the shared-prompt sampler -------------------------------------------------------------------

N = 20_000  # responses per prompt
LEFT_PADDED = torch.tensor([[0, 3, 5], [7, 7, 4]])  # prompt 2 is [4], left-padded with 7
LEFT_MASK = torch.tensor([[1, 1, 1], [0, 0, 1]])


def tiny_model() -> torch.nn.Module:
    model = llm.build_tiny_causal_lm(vocab_size=V, seed=0, hidden=16)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.25)
    return model


def chain_rule_probs(model, prompt: torch.Tensor, length: int) -> torch.Tensor:
    """π(y) for every y in V^length after ``prompt`` (1-D, no padding), float64, lexicographic."""
    probs = torch.ones(1, dtype=torch.float64)
    prefixes = torch.zeros(1, 0, dtype=torch.long)
    for _ in range(length):
        ids = torch.cat([prompt.expand(prefixes.shape[0], -1), prefixes], dim=1)
        with torch.no_grad():
            step = torch.softmax(model(ids).logits[:, -1].double(), dim=-1)
        probs = (probs[:, None] * step).reshape(-1)
        prefixes = torch.cat(
            [prefixes.repeat_interleave(V, 0), torch.arange(V).repeat(prefixes.shape[0])[:, None]],
            dim=1,
        )
    return probs


@pytest.mark.parametrize("length", [1, 2])
def test_shared_sampler_follows_pi_for_each_left_padded_prompt(length):
    torch.set_num_threads(1)
    model = tiny_model()
    torch.manual_seed(4)
    out = sample_tokens(model, LEFT_PADDED, LEFT_MASK, max_new_tokens=length, num_generations=N)
    assert out.shape == (2 * N, length)
    check_follows(out[:N], chain_rule_probs(model, torch.tensor([0, 3, 5]), length))
    check_follows(out[N:], chain_rule_probs(model, torch.tensor([4]), length))


def test_shared_sampler_draws_generates_tokens_for_the_repeated_prompts(monkeypatch):
    """Same seed, same tokens as ``generate`` on the prompts repeated G times (rows
    prompt-major), with left padding and EOS: the cache is repeated in the right order."""
    torch.set_num_threads(1)
    model = llm.build_tiny_causal_lm(vocab_size=V, seed=1, hidden=16)
    kwargs = {"max_new_tokens": 8, "pad_token_id": 7, "eos_token_id": 6}
    torch.manual_seed(11)
    expected = generate_with_our_draw(
        model, monkeypatch, input_ids=LEFT_PADDED.repeat_interleave(5, 0),
        attention_mask=LEFT_MASK.repeat_interleave(5, 0), do_sample=True, top_k=0, top_p=1.0,
        **kwargs,
    )[:, 3:]  # fmt: skip
    torch.manual_seed(11)
    got = sample_tokens(model, LEFT_PADDED, LEFT_MASK, num_generations=5, **kwargs)
    assert torch.equal(got, expected) and (got == 6).any()
    with pytest.raises(ValueError, match="num_generations"):
        sample_tokens(model, LEFT_PADDED, LEFT_MASK, max_new_tokens=1, num_generations=0)
