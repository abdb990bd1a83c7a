"""Tests of kl_helpers.rl.loss: baselines, masks, the loss, and where the KL penalty's gradient
points.

The gradient checks enumerate every response of a tiny causal LM (vocabulary 3, 2 tokens: 9
responses, 81 pairs for two generations per prompt) so expectations are exact sums, not samples.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from kl_helpers.llm.token_kl import sequence_kl, token_log_probs
from kl_helpers.regularizer import masked_sum, per_token_divergence
from kl_helpers.rl.best_of_n import best_of_n_kl_bound, best_of_n_pool, best_of_n_pool_kl
from kl_helpers.rl.evaluation import distinct_n
from kl_helpers.rl.forward import response_logits
from kl_helpers.rl.loss import RLConfig, group_advantages, response_mask, rl_loss, rloo_advantages

# --- baselines ---------------------------------------------------------------------------------


def test_rloo_advantages_match_hand_computation():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 1.0, -1.0])
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, 0.0, 0.0, 1.0, -1.0]
    expected[4:] = [r - (sum([0.0, 0.0, 1.0, -1.0]) - r) / 3 for r in [0.0, 0.0, 1.0, -1.0]]
    torch.testing.assert_close(rloo_advantages(rewards, 4), torch.tensor(expected))


def test_rloo_advantages_are_zero_mean_and_scaled_centred_rewards():
    rewards = torch.randn(12, generator=torch.Generator().manual_seed(0))
    adv = rloo_advantages(rewards, 3).reshape(4, 3)
    torch.testing.assert_close(adv.sum(dim=1), torch.zeros(4), atol=1e-6, rtol=0)
    grouped = rewards.reshape(4, 3)
    torch.testing.assert_close(adv, 1.5 * (grouped - grouped.mean(1, keepdim=True)))


def test_group_advantages_standardise_each_group_and_survive_ties():
    rewards = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    adv = group_advantages(rewards, 3)
    torch.testing.assert_close(adv[:3], torch.tensor([-1.0, 0.0, 1.0]) / (1 + 1e-4))
    assert torch.equal(adv[3:], torch.zeros(3))


@pytest.mark.parametrize("fn", [rloo_advantages, group_advantages])
def test_advantages_reject_bad_groups(fn):
    with pytest.raises(ValueError, match="num_generations"):
        fn(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="num_generations"):
        fn(torch.zeros(6), 1)
    with pytest.raises(ValueError, match="1-D"):
        fn(torch.zeros(2, 3), 3)


# --- config and masks --------------------------------------------------------------------------


def test_config_validates_names_and_round_trips():
    config = RLConfig(beta=0.1, kl_estimator="k3_loss", lora_targets=("q_proj",))
    assert config.label == "k3_loss_b0.1"
    assert RLConfig.from_dict(config.to_dict()) == config
    assert config.key("m") == RLConfig.from_dict(config.to_dict()).key("m")
    assert config.key("m") != config.replace(beta=0.2).key("m")
    assert config.batch_size == config.prompts_per_step * config.num_generations
    for bad in (
        {"kl_estimator": "k2"},
        {"baseline": "ppo"},
        {"beta": -1.0},
        {"num_generations": 1},
    ):
        with pytest.raises(ValueError):
            RLConfig(**bad)


def test_response_mask_stops_after_the_first_eos():
    eos = 2
    responses = torch.tensor([[5, 2, 7, 2], [5, 5, 5, 5], [2, 2, 2, 2]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(response_mask(responses, eos), expected)
    assert response_mask(responses, None).all()


def test_loss_ignores_masked_positions_and_has_no_nan():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    logits[..., 0] = -torch.inf  # a token no model can sample
    logits.requires_grad_(True)
    tokens = torch.randint(1, 5, (4, 3), generator=gen)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    ref_logits = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    ref_logp = token_log_probs(ref_logits, tokens, mask)
    for placement in ("k1_reward", "k3_loss"):
        out = rl_loss(
            token_log_probs(logits, tokens, mask), ref_logp, mask, rewards, 0.3, placement, 2
        )
        (grad,) = torch.autograd.grad(out.loss, logits)
        assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
        assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))  # nothing leaks past EOS
        # Garbage (even -inf logits) at masked positions changes nothing.
        other = logits.detach().clone()
        other[~mask] = -torch.inf
        again = rl_loss(
            token_log_probs(other, tokens, mask), ref_logp, mask, rewards, 0.3, placement, 2
        )
        torch.testing.assert_close(again.loss, out.loss.detach())


def test_beta_zero_makes_both_placements_identical():
    gen = torch.Generator().manual_seed(2)
    logp = -torch.rand(6, 4, generator=gen)
    ref = -torch.rand(6, 4, generator=gen)
    mask = torch.ones(6, 4, dtype=torch.bool)
    rewards = torch.rand(6, generator=gen)
    a = rl_loss(logp, ref, mask, rewards, 0.0, "k1_reward", 3)
    b = rl_loss(logp, ref, mask, rewards, 0.0, "k3_loss", 3)
    torch.testing.assert_close(a.loss, b.loss)
    c = rl_loss(logp, ref, mask, rewards, 0.5, "k1_reward", 3)
    torch.testing.assert_close(c.shaped_rewards, rewards - 0.5 * masked_sum(logp - ref, mask))
    torch.testing.assert_close(c.kl_k1, masked_sum(logp - ref, mask))


def test_rl_loss_rejects_bad_input():
    x, m = torch.zeros(4, 2), torch.ones(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="kl_estimator"):
        rl_loss(x, x, m, torch.zeros(4), 0.1, "k2_loss", 2)
    with pytest.raises(ValueError, match="rewards"):
        rl_loss(x, x, m, torch.zeros(3), 0.1, "k1_reward", 2)
    with pytest.raises(ValueError, match="beta"):
        rl_loss(x, x, m, torch.zeros(4), float("nan"), "k1_reward", 2)


# --- the KL placement's gradient, exactly, by enumeration -----------------------------------------

VOCAB, LENGTH, BETA = 3, 2, 0.7


def _tiny_llama(seed: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).double().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)  # distributions far from uniform
    return model


@pytest.fixture(scope="module")
def enumerated():
    """Policy, reference and every response (with one fixed prompt token) plus a reward table."""
    policy, ref = _tiny_llama(0), _tiny_llama(1)
    seqs = torch.tensor(list(itertools.product(range(VOCAB), repeat=LENGTH)))
    rewards = torch.linspace(-1.0, 1.0, len(seqs), dtype=torch.float64).roll(3)
    return policy, ref, seqs, rewards


def _logits(model, seqs):
    n = seqs.shape[0]
    prompt, pmask = torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long)
    mask = torch.ones_like(seqs, dtype=torch.bool)
    return response_logits(model, prompt, pmask, seqs, mask)


def _pair_expectation_grad(policy, ref, seqs, rewards, placement):
    """E over two independent responses y1, y2 ~ π of ∇ rl_loss on the batch (y1, y2)."""
    params = list(policy.parameters())
    logits, logp = _logits(policy, seqs)
    with torch.no_grad():
        _, ref_logp = _logits(ref, seqs)
    weight = logp.sum(1).exp().detach()
    i, j = (
        g.reshape(-1)
        for g in torch.meshgrid(torch.arange(len(seqs)), torch.arange(len(seqs)), indexing="ij")
    )
    pair = torch.stack([i, j], 1).reshape(-1)  # rows y1, y2, y1', y2', ...
    mask = torch.ones(len(pair), LENGTH, dtype=torch.bool)
    total = 0.0
    for p in range(len(i)):  # one loss per pair, as a step sees it, weighted by π(y1)π(y2)
        rows = pair[2 * p : 2 * p + 2]
        out = rl_loss(logp[rows], ref_logp[rows], mask[:2], rewards[rows], BETA, placement, 2)
        total = total + weight[i[p]] * weight[j[p]] * out.loss
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, params)])


def _assert_same_vector(estimate, exact):
    # Llama's RMSNorm computes in float32 even in a float64 model: agreement to ~1e-7, not 1e-15.
    assert (estimate - exact).norm() < 1e-5 * exact.norm(), (estimate - exact).norm() / exact.norm()


def _flat_grad(value, model):
    return torch.cat(
        [
            g.reshape(-1)
            for g in torch.autograd.grad(value, list(model.parameters()), retain_graph=True)
        ]
    )


def test_k1_in_reward_gives_the_exact_gradient_of_the_kl_regularised_objective(enumerated):
    policy, ref, seqs, rewards = enumerated
    _, logp = _logits(policy, seqs)
    with torch.no_grad():
        _, ref_logp = _logits(ref, seqs)
    seq_logp = logp.sum(1)
    objective = (seq_logp.exp() * rewards).sum() - BETA * sequence_kl(seq_logp, ref_logp.sum(1))
    exact = -_flat_grad(objective, policy)  # the loss descends −(E r − β·KL(π‖π_ref))
    estimated = _pair_expectation_grad(policy, ref, seqs, rewards, "k1_reward")
    _assert_same_vector(estimated, exact)


def test_k3_in_loss_gives_the_forward_kl_gradient_at_sampled_prefixes(enumerated):
    policy, ref, seqs, rewards = enumerated
    logits, logp = _logits(policy, seqs)
    with torch.no_grad():
        ref_logits, ref_logp = _logits(ref, seqs)
    seq_logp = logp.sum(1)
    weight = seq_logp.exp().detach()
    mask = torch.ones_like(seqs, dtype=torch.bool)
    forward = masked_sum(per_token_divergence(logits, ref_logits, mask, "forward"), mask)
    documented = (seq_logp.exp() * rewards).sum() - BETA * (weight * forward).sum()
    estimated = _pair_expectation_grad(policy, ref, seqs, rewards, "k3_loss")
    _assert_same_vector(estimated, -_flat_grad(documented, policy))
    # ... which is not the gradient of the sequence-level reverse KL that the k1 placement follows.
    zero = torch.zeros_like(rewards)
    k3_kl = _pair_expectation_grad(policy, ref, seqs, zero, "k3_loss")
    reverse_kl = -_flat_grad(-BETA * sequence_kl(seq_logp, ref_logp.sum(1)), policy)
    assert (k3_kl - reverse_kl).norm() > 0.2 * reverse_kl.norm()


# --- Best-of-N and repetition ------------------------------------------------------------------


def test_best_of_n_bound_matches_the_exact_kl_of_best_of_n_without_ties():
    # Without ties BoN picks the response ranked k of m with probability (k/m)^n − ((k−1)/m)^n
    # when π_ref is uniform over m responses; as m grows its KL tends to log n − (n−1)/n.
    m = 20_000
    for n in (1, 2, 4, 16):
        k = torch.arange(1, m + 1, dtype=torch.float64)
        p = (k / m) ** n - ((k - 1) / m) ** n
        exact = float((p * torch.log(p * m)).sum())
        assert exact <= best_of_n_kl_bound(n) + 1e-9
        assert exact == pytest.approx(best_of_n_kl_bound(n), abs=1e-3)
    assert best_of_n_kl_bound(1) == 0.0
    with pytest.raises(ValueError):
        best_of_n_kl_bound(0)


def test_best_of_n_over_a_pool_matches_sampling_and_the_bound():
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(12, generator=gen, dtype=torch.float64)
    texts = [f"r{i}" for i in range(12)]
    out = best_of_n_pool(rewards, texts, 4)
    assert out["p"].sum().item() == pytest.approx(1.0) and out["q"].sum().item() == pytest.approx(1)
    assert torch.all(out["reward"].diff() >= 0) and torch.all(out["p"].diff() > 0)
    draws = torch.randint(0, 12, (200_000, 4), generator=gen)  # best of 4 draws, by simulation
    best = rewards[draws].argmax(1)
    freq = torch.bincount(draws[torch.arange(len(draws)), best], minlength=12).double() / len(draws)
    torch.testing.assert_close(freq[out["index"]], out["p"], atol=5e-3, rtol=0)
    for n in (1, 2, 8):  # no ties: below the bound, and close to it for a large pool
        assert best_of_n_pool_kl(rewards, texts, n) <= best_of_n_kl_bound(n) + 1e-12
    big = torch.rand(5000, generator=gen, dtype=torch.float64)
    kl = best_of_n_pool_kl(big, [str(i) for i in range(5000)], 8)
    assert kl == pytest.approx(best_of_n_kl_bound(8), abs=1e-2)
    assert best_of_n_pool_kl(rewards, texts, 1) == pytest.approx(0.0, abs=1e-12)


def test_best_of_n_pool_merges_identical_responses():
    rewards = torch.tensor([0.9, 0.1, 0.9, 0.5])
    out = best_of_n_pool(rewards, ["a", "b", "a", "c"], 2)
    assert len(out["p"]) == 3 and out["q"].tolist() == [0.25, 0.25, 0.5]
    assert out["p"].tolist() == pytest.approx([1 / 16, 4 / 16 - 1 / 16, 1 - 4 / 16])
    # a response that fills half the pool cannot be "selected" much more: lower KL than unique
    merged = best_of_n_pool_kl(rewards, ["a", "b", "a", "c"], 2)
    unique = best_of_n_pool_kl(rewards + torch.tensor([0.0, 0, 0.01, 0]), list("abcd"), 2)
    assert merged < unique
    with pytest.raises(ValueError, match="one reward per text"):
        best_of_n_pool(rewards, ["a"], 2)
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n_pool(rewards, list("abcd"), 0)


def test_distinct_n_counts_repeated_ngrams():
    assert distinct_n(["a b c d"], 2) == 1.0
    assert distinct_n(["good good good good"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["a b", "a b"], 2) == 0.5 and distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)
