"""Token-level KL on a tiny causal LM built from a config: the chain rule, masks (prompt, padding,
−inf logits) without NaN, exact estimator moments, and the estimators' expected gradients."""

import pytest
import torch

from kl_helpers.llm import model as llm
from kl_helpers.llm import token_kl as tk
from kl_helpers.theory.rlhf import exact_estimator_moments

V, T = 5, 3


@pytest.fixture(scope="module")
def tiny_tree():
    """Every sequence of T tokens from two tiny Llamas (policy seed 0, reference seed 1)."""
    policy, ref = llm.build_tiny_causal_lm(V, seed=0), llm.build_tiny_causal_lm(V, seed=1)
    prompt = torch.tensor([[0, 2]])
    levels = llm.truncated_tree(policy, prompt, prompt, k=V, length=T, ref_model=ref)
    return policy, levels


def _tree(policy, levels, weight):
    logits = [llm.head_logits(policy, lv["hidden"], weight) for lv in levels]
    return tk.tree_sequences(logits, [lv["ref"] for lv in levels], [lv["support"] for lv in levels])


def test_enumeration_covers_every_sequence(tiny_tree):
    policy, levels = tiny_tree
    tree = _tree(policy, levels, policy.model.norm.weight)
    assert tree["tokens"].shape == (V**T, T)
    assert len({tuple(s) for s in tree["tokens"].tolist()}) == V**T
    assert torch.isclose(tree["policy_logp"].exp().sum(), torch.tensor(1.0), atol=1e-5)


def test_chain_rule_identity(tiny_tree):
    policy, levels = tiny_tree
    tree = _tree(policy, levels, policy.model.norm.weight)
    seq = tk.sequence_kl(tree["policy_logp"], tree["ref_logp"])
    assert seq > 0.05  # the two models really differ
    torch.testing.assert_close(tk.chain_rule_sum(tree["policy_logp"], tree["reverse"]), seq)
    # and against the full model's own log-probs of each sequence (no tree bookkeeping)
    ids = torch.cat([torch.tensor([[0, 2]]).expand(V**T, -1), tree["tokens"]], dim=1)
    with torch.no_grad():
        logits, targets, mask = tk.shift(policy(ids).logits, ids, prompt_len=2)
    torch.testing.assert_close(
        tk.sequence_log_probs(logits, targets, mask),
        tree["policy_logp"].detach(),
        atol=1e-4,
        rtol=0,
    )


def test_truncated_tree_has_minus_inf_and_stays_finite(tiny_tree):
    policy, levels = tiny_tree
    small = [dict(lv, support=lv["support"][:, :2]) for lv in levels]
    weight = policy.model.norm.weight.detach().clone().requires_grad_(True)
    tree = _tree(policy, small, weight)
    seq = tk.sequence_kl(tree["policy_logp"], tree["ref_logp"])
    torch.testing.assert_close(tk.chain_rule_sum(tree["policy_logp"], tree["reverse"]), seq)
    (grad,) = torch.autograd.grad(seq + tree["forward"].sum(), weight)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_shift_mask_excludes_prompt_and_padding():
    ids = torch.tensor([[1, 2, 3, 4, 0], [1, 2, 3, 0, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    logits = torch.randn(2, 5, 6)
    _, targets, mask = tk.shift(logits, ids, attention, prompt_len=torch.tensor([2, 1]))
    assert targets.tolist() == [[2, 3, 4, 0], [2, 3, 0, 0]]
    assert mask.tolist() == [[False, True, True, False], [True, True, False, False]]


def test_masked_token_kl_and_log_probs_without_nan():
    g = torch.Generator().manual_seed(0)
    policy = torch.randn(2, 4, 6, generator=g).requires_grad_(True)
    ref = torch.randn(2, 4, 6, generator=g)
    tokens = torch.tensor([[1, 2, 3, 5], [0, 4, 4, 4]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    banned = torch.zeros(6, dtype=torch.bool)
    banned[5] = True  # a token both models forbid: logit −inf everywhere
    p_in, r_in = policy.masked_fill(banned, float("-inf")), ref.masked_fill(banned, float("-inf"))
    p_in = torch.where(mask.unsqueeze(-1), p_in, torch.full_like(p_in, float("-inf")))
    kl = tk.exact_token_kl(p_in, r_in, mask, "reverse")
    logp = tk.token_log_probs(p_in, tokens, mask)  # tokens[0, 3] = 5 is banned but masked
    est = tk.token_estimates(logp, tk.token_log_probs(r_in, tokens, mask), mask)
    total = kl.sum() + logp.sum() + sum(v.sum() for v in est.values())
    (grad,) = torch.autograd.grad(total, policy)
    assert torch.isfinite(total) and torch.isfinite(grad).all()
    assert (kl[~mask] == 0).all() and (logp[~mask] == 0).all()
    assert all((v[~mask] == 0).all() for v in est.values())
    assert (grad[..., 5] == 0).all()


def test_estimator_moments_k1_k3_unbiased_k2_not():
    g = torch.Generator().manual_seed(1)
    policy = torch.randn(3, 2, 7, generator=g, dtype=torch.float64) * 2
    ref = policy + 0.3 * torch.randn(3, 2, 7, generator=g, dtype=torch.float64)
    exact = tk.exact_token_kl(policy, ref)
    moments = tk.estimator_moments(policy, ref)
    torch.testing.assert_close(moments["k1"][0], exact)
    torch.testing.assert_close(moments["k3"][0], exact)
    assert (moments["k2"][0] - exact).abs().max() > 1e-4
    assert (moments["k3"][1] < moments["k1"][1]).all()  # close distributions: k3 is less noisy
    # the same numbers as notebook 05's one-distribution version
    one = exact_estimator_moments(policy[1, 0].softmax(-1), ref[1, 0].softmax(-1))
    for name, (mean, var) in one.items():
        assert abs(moments[name][0][1, 0].item() - mean) < 1e-10
        assert abs(moments[name][1][1, 0].item() - var) < 1e-10


def test_expected_gradients(tiny_tree):
    policy, levels = tiny_tree
    weight = policy.model.norm.weight.detach().clone().requires_grad_(True)
    tree = _tree(policy, levels, weight)
    p, lp, lr = (
        tree["policy_logp"].exp().detach(),
        tree["policy_token_logp"],
        tree["ref_token_logp"],
    )
    exact_rev = tk.flat_grad(tk.sequence_kl(tree["policy_logp"], tree["ref_logp"]), [weight])
    expected = {
        name: tk.flat_grad((p * fn(lp, lr)).sum(), [weight]) for name, fn in tk.SURROGATES.items()
    }
    # k1 as a (REINFORCE) cost: the exact gradient of the sequence-level reverse KL
    torch.testing.assert_close(expected["k1 in reward"], exact_rev, atol=1e-5, rtol=1e-4)
    # k3 in the loss: the forward KL's gradient at the sampled prefixes, not the reverse KL's
    fwd_at_prefixes = tk.flat_grad((p * tree["forward"].sum(1)).sum(), [weight])
    torch.testing.assert_close(expected["k3 in loss"], fwd_at_prefixes, atol=1e-5, rtol=1e-4)
    assert tk.relative_error(expected["k3 in loss"], exact_rev) > 0.05
    # k2 in the loss: the reverse KL's gradient at the sampled prefixes (prefixes held fixed)
    rev_at_prefixes = tk.flat_grad((p * tree["reverse"].sum(1)).sum(), [weight])
    torch.testing.assert_close(expected["k2 in loss"], rev_at_prefixes, atol=1e-5, rtol=1e-4)
    # per-sequence gradients average to the same thing
    jac = tk.per_sequence_grads(tk.k1_in_reward_surrogate(lp, lr), [weight])
    torch.testing.assert_close(p @ jac, exact_rev, atol=1e-5, rtol=1e-4)
    # k1 in the loss: zero in expectation
    assert expected["k1 in loss"].norm() < 1e-4 * exact_rev.norm() + 1e-6


def test_all_sequences_and_guards():
    assert tk.all_sequences(3, 2).shape == (9, 2)
    with pytest.raises(ValueError):
        tk.all_sequences(50_000, 3)
    with pytest.raises(ValueError, match="sum to"):
        tk.sequence_kl(torch.log(torch.tensor([0.2, 0.3])), torch.log(torch.tensor([0.5, 0.5])))
    with pytest.raises(ValueError, match="mask"):
        tk.token_log_probs(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), torch.ones(2))


def test_blend_landscape_forward_covers_reverse_seeks():
    # two contexts with disjoint favourite tokens, one shared token and a long flat tail
    tail = [0.0] * 500
    a = torch.tensor([8.0, 7.0, 4.0, -6.0, -6.0, *tail], dtype=torch.float64)
    b = torch.tensor([-6.0, -6.0, 4.0, 7.0, 8.0, *tail], dtype=torch.float64)
    target = tk.mixture_log_probs(a, b)
    torch.testing.assert_close(target.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    alphas, taus = torch.linspace(0, 1, 41), torch.logspace(-0.3, 1, 41)
    fwd = tk.blend_landscape(a, b, target, alphas, taus, "forward")
    rev = tk.blend_landscape(a, b, target, alphas, taus, "reverse")
    best_fwd = min(tk.landscape_minima(fwd, alphas, taus), key=lambda m: m["kl"])
    rev_minima = tk.landscape_minima(rev, alphas, taus)
    assert 0.25 <= best_fwd["alpha"] <= 0.75  # a blend in between the modes
    assert rev_minima[0]["alpha"] <= 0.1 and rev_minima[1]["alpha"] >= 0.9  # one mode each


def test_log_probs_of_half_precision_logits_are_upcast():
    """bf16 log-softmax was off by 0.052 nats per token at V = 4096 (issue 20, part 4)."""
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 5, 4096, generator=g)).to(torch.bfloat16)
    tokens = torch.randint(0, 4096, (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = torch.log_softmax(logits.double(), -1).gather(-1, tokens[..., None])[..., 0]
    expected = expected * mask
    got = tk.token_log_probs(logits, tokens, mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)
    seq = tk.sequence_log_probs(logits, tokens, mask)
    torch.testing.assert_close(seq.double(), expected.sum(1), rtol=0, atol=5e-5)
