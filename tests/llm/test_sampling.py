"""Tests of kl_helpers.llm.sampling and the two paths that use it (``rl_loop.sample_responses``,
``llm.sample``): the samples follow π = softmax(logits / T) exactly, by enumeration on a tiny Llama
(vocabulary 8), whatever the checkpoint's ``generation_config`` says; and on a clean config they
are ``generate``'s samples, token for token, for the same seed once ``generate``'s
``torch.multinomial`` is replaced by our draw (:func:`generate_with_our_draw`)."""

from __future__ import annotations

import inspect

import pytest
import torch

from kl_helpers.llm import model as llm
from kl_helpers.llm.sampling import draw_tokens, sample_tokens
from kl_helpers.rl.loop import sample_responses
from kl_helpers.rl.loss import RLConfig

V = 8
PROMPT = torch.tensor([[0, 3, 5]])
N = 20_000  # samples per check
Z = 5.0  # per-outcome tolerance in standard deviations: a false alarm has probability < 1e-4


def tiny_model() -> torch.nn.Module:
    """A 1-layer Llama, vocabulary 8, next-token probabilities between about 0.01 and 0.4."""
    model = llm.build_tiny_causal_lm(vocab_size=V, seed=0, hidden=16)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.25)
    return model


def generate_with_our_draw(model, monkeypatch, **kwargs) -> torch.Tensor:
    """``model.generate(**kwargs)`` with the one random step of its sampling,
    ``torch.multinomial(probs, num_samples=1)``, replaced by :func:`draw_tokens`: everything else
    (logits, positions, cache, EOS and padding) is ``generate``'s own."""

    def multinomial(probs, num_samples=1, **_):
        assert num_samples == 1
        return draw_tokens(probs)[:, None]

    with monkeypatch.context() as patch, torch.no_grad():
        patch.setattr(torch, "multinomial", multinomial)
        return model.generate(**kwargs)


def exact_probs(model, prefixes: torch.Tensor, temperature: float = 1.0, ban=None):
    """float64 softmax(logits / T) of the token after PROMPT + each prefix (n, t): (n, V)."""
    ids = torch.cat([PROMPT.expand(prefixes.shape[0], -1), prefixes], dim=1)
    with torch.no_grad():
        logits = model(ids).logits[:, -1].double() / temperature
    if ban is not None:
        logits[:, ban] = -torch.inf
    return torch.softmax(logits, dim=-1)


def sequence_probs(model, length: int, temperature: float = 1.0) -> torch.Tensor:
    """π(y) of every y in V^length by the chain rule, flattened in lexicographic order."""
    probs = torch.ones(1, dtype=torch.float64)
    prefixes = torch.zeros(1, 0, dtype=torch.long)
    for _ in range(length):
        step = exact_probs(model, prefixes, temperature)  # (V^t, V)
        probs = (probs[:, None] * step).reshape(-1)
        prefixes = torch.cat(
            [prefixes.repeat_interleave(V, 0), torch.arange(V).repeat(prefixes.shape[0])[:, None]],
            dim=1,
        )
    return probs


def check_follows(samples: torch.Tensor, probs: torch.Tensor) -> None:
    """Every outcome's frequency within Z multinomial standard deviations of its probability.

    ``samples`` (n, t) index the V^t outcomes lexicographically. Frequency f_k of n draws has
    standard deviation sqrt(p_k (1 − p_k) / n); a union bound over the outcomes gives the false
    alarm rate. The implied total-variation bound ½ Σ Z·sd_k is reported in the message.
    """
    n, t = samples.shape
    index = (samples * V ** torch.arange(t - 1, -1, -1)).sum(1)
    freq = torch.bincount(index, minlength=V**t).double() / n
    sd = (probs * (1 - probs) / n).sqrt()
    tv = 0.5 * (freq - probs).abs().sum().item()
    bound = 0.5 * Z * sd.sum().item()
    worst = ((freq - probs).abs() - Z * sd).max().item()
    assert worst <= 0, f"TV {tv:.4f} (noise bound {bound:.4f}); an outcome is off by > {Z} sd"
    assert tv <= bound


# What checkpoints ship in generation_config; none of it may change the samples.
CHECKPOINT_DEFAULTS = {
    "clean": {},
    "repetition_penalty": {"repetition_penalty": 1.5},
    "min_p": {"min_p": 0.5},
    "suppress_tokens": {"suppress_tokens": "argmax"},
    "top_k": {"top_k": 2},
    "top_p": {"top_p": 0.3},
    "temperature": {"temperature": 0.3},
    "greedy": {"do_sample": False},
}


def with_defaults(case: str) -> torch.nn.Module:
    model = tiny_model()
    for name, value in CHECKPOINT_DEFAULTS[case].items():
        if value == "argmax":
            value = [int(exact_probs(model, torch.zeros(1, 0, dtype=torch.long)).argmax())]
        setattr(model.generation_config, name, value)
    return model


@pytest.mark.parametrize("case", CHECKPOINT_DEFAULTS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sample_responses_follow_pi_one_token(case, temperature):
    torch.set_num_threads(1)
    model = with_defaults(case)
    config = RLConfig(num_generations=N, prompts_per_step=1, max_new_tokens=1,
                      temperature=temperature)  # fmt: skip
    responses, _ = sample_responses(model, PROMPT, torch.ones_like(PROMPT), config, None, None, 0)
    probs = exact_probs(model, torch.zeros(1, 0, dtype=torch.long), temperature)[0]
    check_follows(responses, probs)


@pytest.mark.parametrize("case", ["clean", "repetition_penalty", "min_p", "top_k"])
def test_sample_responses_follow_pi_two_tokens_by_the_chain_rule(case):
    torch.set_num_threads(1)
    model = with_defaults(case)
    config = RLConfig(num_generations=N, prompts_per_step=1, max_new_tokens=2)
    responses, _ = sample_responses(model, PROMPT, torch.ones_like(PROMPT), config, None, None, 1)
    check_follows(responses, sequence_probs(model, 2))  # all 64 sequences


@pytest.mark.parametrize("case", CHECKPOINT_DEFAULTS)
def test_llm_sample_follows_pi_with_eos_forbidden_first(case):
    torch.set_num_threads(1)
    model, eos = with_defaults(case), 2
    tokens, mask = llm.sample(model, PROMPT, N, max_new_tokens=1, eos_id=eos, seed=2)
    assert tokens.device.type == "cpu" and mask.all()
    probs = exact_probs(model, torch.zeros(1, 0, dtype=torch.long), ban=eos)[0]
    check_follows(tokens, probs)


def test_the_check_detects_a_wrong_distribution():
    """The noise bound is tight enough to see a fault (a mild penalty on the prompt's tokens)."""
    torch.set_num_threads(1)
    model = tiny_model()
    probs = exact_probs(model, torch.zeros(1, 0, dtype=torch.long))[0]
    wrong = probs.clone()
    wrong[PROMPT[0]] *= 0.8  # what a mild penalty on the prompt's tokens does
    wrong /= wrong.sum()
    draws = torch.multinomial(
        wrong, N, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    with pytest.raises(AssertionError, match="TV"):
        check_follows(draws[:, None], probs)


@pytest.mark.parametrize(
    ("temperature", "min_new", "use_cache"), [(1.0, 0, True), (0.7, 3, True), (1.3, 0, False)]
)
def test_same_tokens_as_generate_on_a_clean_config(temperature, min_new, use_cache, monkeypatch):
    torch.set_num_threads(1)
    model = llm.build_tiny_causal_lm(vocab_size=V, seed=1, hidden=16)
    ids = torch.tensor([[5, 5, 0, 3, 4], [0, 1, 2, 3, 4], [5, 5, 5, 0, 2], [7, 0, 1, 1, 1]])
    mask = (torch.arange(5) >= torch.tensor([[2], [0], [3], [1]])).long()  # left padding
    kwargs = {"max_new_tokens": 8, "min_new_tokens": min_new, "pad_token_id": 7,
              "eos_token_id": 6, "use_cache": use_cache}  # fmt: skip
    ended = False
    for seed in range(12):  # several seeds, so that some row ends with EOS and is padded
        torch.manual_seed(seed)
        expected = generate_with_our_draw(
            model, monkeypatch, input_ids=ids, attention_mask=mask, do_sample=True,
            temperature=temperature, top_k=0, top_p=1.0, **kwargs,
        )[:, ids.shape[1] :]  # fmt: skip
        torch.manual_seed(seed)
        got = sample_tokens(model, ids, mask, temperature=temperature, **kwargs)
        assert torch.equal(got, expected)
        ended |= bool((got == 6).any())
    assert ended or min_new  # the EOS/pad path is exercised


def test_eos_pads_min_new_tokens_mode_and_no_gradient():
    torch.set_num_threads(1)
    model = tiny_model().train()
    ids = PROMPT.repeat(64, 1)
    torch.manual_seed(0)
    out = sample_tokens(model, ids, max_new_tokens=6, eos_token_id=1, pad_token_id=7,
                        min_new_tokens=2)  # fmt: skip
    assert model.training and not out.requires_grad and out.device == ids.device
    assert not (out[:, :2] == 1).any()  # EOS forbidden before min_new_tokens
    for row in out.tolist():
        if 1 in row:
            assert all(t == 7 for t in row[row.index(1) + 1 :])  # pad after the first EOS
    ended = (out == 1).any(1)
    assert out.shape[1] == 6 or ended.all()  # stops early only when every row has ended


def test_bad_input_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(1, 3\)"):
        sample_tokens(model, PROMPT, torch.ones(2, 3, dtype=torch.long), max_new_tokens=1)
    with pytest.raises(ValueError, match="left-padded"):
        sample_tokens(model, PROMPT, torch.tensor([[1, 1, 0]]), max_new_tokens=1)
    with pytest.raises(ValueError, match="min_new_tokens"):
        sample_tokens(model, PROMPT, max_new_tokens=1, min_new_tokens=2, eos_token_id=1)
    with pytest.raises(ValueError, match="temperature"):
        sample_tokens(model, PROMPT, max_new_tokens=1, temperature=0.0)


def test_same_tokens_as_generate_on_a_lora_policy(monkeypatch):
    """The RL path samples from a peft-wrapped policy: same tokens as its generate, too."""
    from kl_helpers.rl.loop import add_lora

    torch.set_num_threads(1)
    base = llm.build_tiny_causal_lm(vocab_size=V, seed=2, hidden=16)
    policy = add_lora(base, RLConfig(lora_r=2, lora_alpha=4))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    ids, mask = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]]), torch.tensor([[0, 0, 1, 1], [1] * 4])
    kwargs = {"max_new_tokens": 6, "pad_token_id": 7, "eos_token_id": 6}
    torch.manual_seed(5)
    expected = generate_with_our_draw(
        policy, monkeypatch, input_ids=ids, attention_mask=mask, do_sample=True,
        temperature=0.9, top_k=0, top_p=1.0, **kwargs,
    )[:, 4:]  # fmt: skip
    torch.manual_seed(5)
    assert torch.equal(sample_tokens(policy, ids, mask, temperature=0.9, **kwargs), expected)


class Output(dict):
    """A model output read by attribute, as transformers' ModelOutput is."""

    __getattr__ = dict.get


class OlderCacheName(torch.nn.Module):
    """A causal LM whose forward takes the KV cache as ``past_key_values`` and swallows unknown
    keywords (transformers before the ``cache`` rename, e.g. Colab's 5.15): a sampler that passed
    ``cache=`` here would drop the prompt silently."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, logits_to_keep=0, **ignored):  # fmt: skip
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else None
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=use_cache, logits_to_keep=logits_to_keep,
            **{name or "past_key_values": past_key_values},
        )  # fmt: skip
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return Output(logits=out.logits, past_key_values=cache)


def test_the_kv_cache_is_passed_under_the_name_the_forward_takes():
    torch.set_num_threads(1)
    model = llm.build_tiny_causal_lm(vocab_size=V, seed=1, hidden=16)
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    torch.manual_seed(3)
    naive = sample_tokens(model, ids, max_new_tokens=6, use_cache=False)
    torch.manual_seed(3)
    cached = sample_tokens(OlderCacheName(model), ids, max_new_tokens=6, use_cache=True)
    assert torch.equal(cached, naive)


def test_draw_tokens_is_the_inverse_cdf_of_a_naive_float64_loop():
    """Same uniforms, same indices as a Python loop over the cumulative sum; zero-probability
    tokens (also the last one, also after rounding) are never drawn; unnormalised rows are fine."""
    probs = torch.tensor(
        [[0.0, 0.2, 0.0, 0.5, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0] * 5 + [3.0],
         [0.1, 0.1, 0.1, 0.1, 0.1, 0.0]]
    )  # fmt: skip
    for seed in range(200):
        torch.manual_seed(seed)
        got = draw_tokens(probs)
        torch.manual_seed(seed)
        uniforms = torch.rand(probs.shape[0], 1, dtype=torch.float64)[:, 0].tolist()
        for row, u, index in zip(probs.double().tolist(), uniforms, got.tolist(), strict=True):
            running, first = 0.0, None
            for k, p in enumerate(row):
                running += p
                if first is None and running > u * sum(row):
                    first = k
            assert index == first and row[index] > 0


def test_draw_tokens_follows_a_distribution_and_refuses_bad_rows():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(V, dtype=torch.float64), 0)
    draws = draw_tokens(probs.float().expand(N, -1))
    check_follows(draws[:, None], probs)
    with pytest.raises(ValueError, match=r"\(8,\)"):
        draw_tokens(probs)
    with pytest.raises(ValueError, match="positive total"):
        draw_tokens(torch.zeros(2, V))
    with pytest.raises(ValueError, match="positive total"):
        draw_tokens(torch.full((1, V), torch.nan))
