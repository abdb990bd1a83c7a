"""Issue 30, faults 1 and 3: several end-of-sequence ids, and the caller's train/eval modes.

Chat models often end on more than one token (``generation_config.eos_token_id`` is a list for
Llama 3); every path that ends a response must honour all of them, checked against a plain Python
loop over the sampled rows. Functions that evaluate a caller's model must leave every submodule in
the mode it was in, a frozen (eval-mode) part of a training policy included.
"""

from __future__ import annotations

import pytest
import torch

from kl_helpers.llm.model import end_token_ids, sample
from kl_helpers.llm.sampling import sample_tokens
from kl_helpers.rl.best_of_n import one_token_responses
from kl_helpers.rl.loop import add_lora, evaluate_policy, rollout, sample_responses
from kl_helpers.rl.loss import response_mask
from tests.rl.test_loop import CONFIG, EOS, PAD, CharTokenizer, a_reward, tiny_llama

ENDS = [EOS, 5]  # the tokenizer's EOS and a second end token (as Llama 3's <|eot_id|>)


def naive_mask(rows: torch.Tensor, ends) -> torch.Tensor:
    """True up to and including each row's first end token: a Python loop, no tensor ops."""
    out = []
    for row in rows.tolist():
        keep, ended = [], False
        for token in row:
            keep.append(not ended)
            ended = ended or token in ends
        out.append(keep)
    return torch.tensor(out, dtype=torch.bool)


def test_sample_tokens_ends_a_row_at_any_of_several_eos_ids():
    torch.manual_seed(0)
    prompt = torch.tensor([[2, 7, 8, 3]])
    out = sample_tokens(tiny_llama(), prompt, max_new_tokens=6, eos_token_id=ENDS,
                        pad_token_id=PAD, num_generations=200)  # fmt: skip
    mask = naive_mask(out, ENDS)
    assert (out[~mask] == PAD).all(), "tokens after an end token must be padding"
    ended_on = {int(row[m].tolist()[-1]) for row, m in zip(out, mask, strict=True) if (~m).any()}
    assert ended_on == set(ENDS), f"both end tokens must end some rows, got {ended_on}"


def test_a_list_of_one_eos_id_is_the_int():
    prompt = torch.tensor([[2, 7, 8, 3]])
    torch.manual_seed(1)
    a = sample_tokens(tiny_llama(), prompt, max_new_tokens=6, eos_token_id=EOS, num_generations=50)
    torch.manual_seed(1)
    b = sample_tokens(
        tiny_llama(), prompt, max_new_tokens=6, eos_token_id=[EOS], num_generations=50
    )
    assert torch.equal(a, b)


def test_min_new_tokens_forbids_every_end_token():
    torch.manual_seed(0)
    out = sample_tokens(tiny_llama(), torch.tensor([[2, 7, 3]]), max_new_tokens=4,
                        eos_token_id=ENDS, min_new_tokens=3, num_generations=100)  # fmt: skip
    assert not torch.isin(out[:, :3], torch.tensor(ENDS)).any()


@pytest.mark.parametrize("ends", [ENDS, tuple(ENDS), torch.tensor(ENDS), EOS, [EOS, EOS]])
def test_response_mask_takes_one_or_several_eos_ids(ends):
    rows = torch.tensor([[9, 5, 1, 9], [1, 9, 9, 5], [9, 9, 9, 9], [5, 1, 5, 1]])
    expected = naive_mask(rows, torch.as_tensor(ends).reshape(-1).tolist())
    assert torch.equal(response_mask(rows, ends), expected)


@pytest.mark.parametrize("bad", [-1, [1, -2], 1.5, [[1]], "1", True])
def test_bad_eos_ids_raise_a_value_error(bad):
    with pytest.raises(ValueError, match="eos"):
        response_mask(torch.zeros(1, 2, dtype=torch.long), bad)


def test_an_eos_id_outside_the_vocabulary_raises():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sample_tokens(
            tiny_llama(), torch.tensor([[2, 3]]), max_new_tokens=2, eos_token_id=[1, 10**6]
        )


def test_llm_sample_ends_at_any_eos_id():
    tokens, mask = sample(tiny_llama(), torch.tensor([[2, 7, 3]]), 100, 6, ENDS, seed=0)
    assert torch.equal(mask, naive_mask(tokens, ENDS))
    assert (tokens[~mask] == EOS).all()  # padded with the first end token


def test_rollout_honours_the_checkpoints_end_tokens():
    """The tokenizer says EOS = 1; the checkpoint's generation config also ends on 5."""
    policy = add_lora(tiny_llama(), CONFIG)
    policy.generation_config.eos_token_id = ENDS
    assert end_token_ids(policy, CharTokenizer()) == tuple(ENDS)
    config = CONFIG.replace(num_generations=40, max_new_tokens=6)
    _, _, responses, mask, _ = rollout(policy, CharTokenizer(), ["good day"], config, seed=0)
    assert torch.equal(mask, naive_mask(responses, ENDS))
    assert (responses[mask] == 5).any(), "some response must end on the second end token"


def mixed_modes(model: torch.nn.Module) -> dict[str, bool]:
    """Train mode, with one submodule frozen in eval mode as a caller may have set it."""
    model.train()
    frozen = dict(model.named_modules())
    name = next(n for n in frozen if n.endswith("layers.0.mlp"))
    frozen[name].eval()
    return {n: m.training for n, m in model.named_modules()}


def modes(model: torch.nn.Module) -> dict[str, bool]:
    return {n: m.training for n, m in model.named_modules()}


def test_sample_tokens_gives_back_every_submodules_mode():
    model = tiny_llama()
    before = mixed_modes(model)
    sample_tokens(model, torch.tensor([[2, 7, 3]]), max_new_tokens=3, eos_token_id=EOS)
    assert modes(model) == before


def test_sample_responses_gives_back_every_submodules_mode():
    policy = add_lora(tiny_llama(), CONFIG)
    before = mixed_modes(policy)
    ids = torch.tensor([[2, 7, 3]])
    sample_responses(policy, ids, torch.ones_like(ids), CONFIG, EOS, PAD, seed=0)
    assert modes(policy) == before


def test_evaluate_policy_gives_back_every_submodules_mode():
    """It left the whole policy in eval mode (74 submodules changed on SmolLM2 + LoRA)."""
    policy = add_lora(tiny_llama(), CONFIG)
    before = mixed_modes(policy)
    evaluate_policy(policy, CharTokenizer(), ["good day"], a_reward, CONFIG)
    assert modes(policy) == before


def test_one_token_responses_gives_back_every_submodules_mode():
    model = tiny_llama()
    before = mixed_modes(model)
    one_token_responses(model, CharTokenizer(), "good day")
    assert modes(model) == before
