"""kl_helpers.llm.token_kl's sequence-level functions at their edges (issue 30), against float64
enumeration of small autoregressive tables (vocabulary 3, length 1 and 2): exact_token_kl in both
directions with garbage logits (NaN, ±inf) at masked positions and a bad direction;
all_sequences against itertools.product (V = 1, L = 1, and the 1e6 limit); sequence_kl against a
loop (zeros in π, π_ref 0 where π is not: inf), probabilities that do not sum to 1 refused;
chain_rule_sum equal to sequence_kl (the chain rule) and shape refusals; the surrogates' expected
gradients under π equal to ∇KL(π‖π_ref) (k1 in reward, k2 in loss), ∇KL(π_ref‖π) (k3 in loss) and
0 (k1 in loss), with and without a masked position holding garbage log-probs; flat_grad with unused
parameters and a kept graph, per_sequence_grads; cosine against NumPy; relative_error;
tree_sequences against a loop over every sequence of a k = 2, T = 2 tree."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from kl_helpers.llm.token_kl import (
    all_sequences,
    chain_rule_sum,
    cosine,
    exact_token_kl,
    flat_grad,
    k1_in_loss_surrogate,
    k1_in_reward_surrogate,
    k2_in_loss_surrogate,
    k3_in_loss_surrogate,
    per_sequence_grads,
    relative_error,
    sequence_kl,
    tree_sequences,
)

V = 3


def kl_loop(a_logits, b_logits):
    la, lb = (
        torch.log_softmax(a_logits.double(), -1).tolist(),
        torch.log_softmax(b_logits.double(), -1).tolist(),
    )
    return sum(math.exp(x) * (x - y) for x, y in zip(la, lb, strict=True) if x > -math.inf)


def test_exact_token_kl_against_a_loop_with_garbage_masked():
    gen = torch.Generator().manual_seed(0)
    pol, ref = torch.randn(2, 3, V, generator=gen), torch.randn(2, 3, V, generator=gen)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    pol[0, 2] = torch.tensor([math.nan, math.inf, -math.inf])
    ref[1, 1] = math.nan
    for direction in ("reverse", "forward"):
        got = exact_token_kl(pol, ref, mask, direction)
        for b, t in itertools.product(range(2), range(3)):
            if not mask[b, t]:
                assert got[b, t] == 0
                continue
            a, c = (pol[b, t], ref[b, t]) if direction == "reverse" else (ref[b, t], pol[b, t])
            assert float(got[b, t]) == pytest.approx(kl_loop(a, c), rel=1e-6)
    with pytest.raises(ValueError):
        exact_token_kl(pol, ref, mask, "sideways")


@pytest.mark.parametrize(("v", "length"), [(1, 1), (1, 4), (3, 1), (3, 2), (2, 5)])
def test_all_sequences_against_itertools(v, length):
    got = all_sequences(v, length)
    assert got.tolist() == [list(s) for s in itertools.product(range(v), repeat=length)]


@pytest.mark.parametrize(("v", "length"), [(0, 1), (3, 0), (-1, 2), (10, 7), (1001, 2)])
def test_all_sequences_refuses(v, length):
    with pytest.raises(ValueError):
        all_sequences(v, length)


def tables(seed=0):
    """π and π_ref over 2 tokens from V: first-token logits (V,), second-token logits (V, V)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        first = torch.randn(V, generator=gen, dtype=torch.float64) * 2
        out.append((first, torch.randn(V, V, generator=gen, dtype=torch.float64) * 2))
    return out


def sequence_logps(first, second):
    """log π(y1 y2) for every sequence, in itertools order."""
    l1, l2 = torch.log_softmax(first, -1), torch.log_softmax(second, -1)
    return torch.stack([l1[a] + l2[a, b] for a, b in itertools.product(range(V), repeat=2)])


def test_sequence_kl_and_the_chain_rule():
    (pf, ps), (rf, rs) = tables()
    p_seq, r_seq = sequence_logps(pf, ps), sequence_logps(rf, rs)
    want = sum(math.exp(a) * (a - b) for a, b in zip(p_seq.tolist(), r_seq.tolist(), strict=True))
    assert float(sequence_kl(p_seq, r_seq)) == pytest.approx(want, rel=1e-12)
    seqs = all_sequences(V, 2)
    pol_logits = torch.stack([torch.stack([pf, ps[a]]) for a in seqs[:, 0].tolist()])  # (9, 2, V)
    ref_logits = torch.stack([torch.stack([rf, rs[a]]) for a in seqs[:, 0].tolist()])
    token_kl = exact_token_kl(pol_logits, ref_logits)
    assert float(chain_rule_sum(p_seq, token_kl)) == pytest.approx(want, rel=1e-12)
    only_first = torch.tensor([[True, False]] * 9)
    first_kl = kl_loop(pf, rf)
    assert float(chain_rule_sum(p_seq, token_kl, only_first)) == pytest.approx(first_kl, rel=1e-12)
    with pytest.raises(ValueError, match="must be"):
        chain_rule_sum(p_seq, token_kl[:8])
    with pytest.raises(ValueError, match="must be"):
        chain_rule_sum(p_seq[None], token_kl)


def test_sequence_kl_edges():
    p = torch.log(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    r = torch.log(torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))
    assert float(sequence_kl(p, r)) == pytest.approx(math.log(2), rel=1e-15)  # 0·log 0 = 0
    assert float(sequence_kl(r, p)) == math.inf
    with pytest.raises(ValueError, match="sum to 0.900000, not 1"):
        sequence_kl(torch.log(torch.tensor([0.5, 0.4])), torch.log(torch.tensor([0.5, 0.5])))


def expected_grad(surrogate, theta, ref_logits, extra_mask=False):
    """Σ_y π(y) ∇ surrogate(y) for one-token responses y, by enumeration (float64)."""
    logp_all = torch.log_softmax(theta, -1)
    ref_all = torch.log_softmax(ref_logits, -1)
    total = torch.zeros_like(theta)
    for y in range(V):
        # the response's one real token at t = 0; t = 1 is masked and holds garbage
        policy_logp = torch.stack([logp_all[y], torch.tensor(123.0, dtype=torch.float64)])[None]
        ref_logp = torch.stack([ref_all[y], torch.tensor(-7.0, dtype=torch.float64)])[None]
        mask = torch.tensor([[True, False]]) if extra_mask else None
        if not extra_mask:
            policy_logp, ref_logp = policy_logp[:, :1], ref_logp[:, :1]
        value = surrogate(policy_logp, ref_logp, mask).sum()
        (g,) = torch.autograd.grad(value, theta, retain_graph=True)
        total += logp_all[y].exp().detach() * g
    return total


@pytest.mark.parametrize("masked", [False, True])
def test_surrogates_expected_gradients(masked):
    gen = torch.Generator().manual_seed(3)
    theta = (torch.randn(V, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    ref_logits = torch.randn(V, generator=gen, dtype=torch.float64) * 2
    logp, logr = torch.log_softmax(theta, -1), torch.log_softmax(ref_logits, -1)
    (reverse,) = torch.autograd.grad((logp.exp() * (logp - logr)).sum(), theta, retain_graph=True)
    (forward,) = torch.autograd.grad((logr.exp() * (logr - logp)).sum(), theta)
    zero = torch.zeros(V, dtype=torch.float64)
    want = {
        k1_in_reward_surrogate: reverse,
        k2_in_loss_surrogate: reverse,
        k3_in_loss_surrogate: forward,
        k1_in_loss_surrogate: zero,
    }
    for surrogate, grad in want.items():
        got = expected_grad(surrogate, theta, ref_logits, masked)
        assert torch.allclose(got, grad, atol=1e-12), surrogate.__name__


def test_flat_grad_and_per_sequence_grads():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[3.0]], dtype=torch.float64, requires_grad=True)
    unused = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    value = (a**2).sum() * b.sum()
    g = flat_grad(value, iter([a, b, unused]))
    assert g.tolist() == [6.0, 12.0, 5.0, 0.0, 0.0, 0.0, 0.0]
    assert torch.equal(flat_grad(value, [a, b, unused]), g)  # the graph is kept
    values = torch.stack([(a**2).sum(), a[0] * b.sum()])
    rows = per_sequence_grads(values, [a, b])
    assert rows.tolist() == [[2.0, 4.0, 0.0], [3.0, 0.0, 1.0]]


def test_cosine_and_relative_error():
    x, y = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -4.0])
    want = x @ y / np.linalg.norm(x) / np.linalg.norm(y)
    assert cosine(torch.tensor(x), torch.tensor(y)) == pytest.approx(want, rel=1e-12)
    assert cosine(
        torch.tensor(x).reshape(3, 1), torch.tensor(-2 * x).reshape(3, 1)
    ) == pytest.approx(-1.0)
    assert relative_error(torch.tensor(x), torch.tensor(y)) == pytest.approx(
        np.linalg.norm(x - y) / np.linalg.norm(y), rel=1e-12
    )
    assert relative_error(torch.tensor(y), torch.tensor(y)) == 0.0
    for f in (cosine, relative_error):
        with pytest.raises(ValueError):
            f(torch.zeros(3), torch.zeros(4))


def test_tree_sequences_against_a_loop():
    k, length, vocab = 2, 2, 5
    gen = torch.Generator().manual_seed(1)
    pol = [torch.randn(k**t, vocab, generator=gen, dtype=torch.float64) for t in range(length)]
    ref = [torch.randn(k**t, vocab, generator=gen, dtype=torch.float64) for t in range(length)]
    sup = [
        torch.stack([torch.randperm(vocab, generator=gen)[:k] for _ in range(k**t)])
        for t in range(length)
    ]
    out = tree_sequences(pol, ref, sup)
    assert out["tokens"].shape == (4, 2) and out["reverse"].shape == (4, 2)
    for n, (i, j) in enumerate(itertools.product(range(k), repeat=length)):
        prefixes = [0, i]  # row of level 0 and of level 1
        children = [i, j]
        lp = lr = 0.0
        for t in range(length):
            row, c = prefixes[t], children[t]
            allowed = sup[t][row].tolist()
            tok = allowed[c]
            assert int(out["tokens"][n, t]) == tok
            p_sub = torch.log_softmax(pol[t][row, allowed], -1)
            r_sub = torch.log_softmax(ref[t][row, allowed], -1)
            lp += float(p_sub[c])
            lr += float(r_sub[c])
            rev = sum(
                math.exp(a) * (a - b) for a, b in zip(p_sub.tolist(), r_sub.tolist(), strict=True)
            )
            fwd = sum(
                math.exp(b) * (b - a) for a, b in zip(p_sub.tolist(), r_sub.tolist(), strict=True)
            )
            assert float(out["reverse"][n, t]) == pytest.approx(rev, rel=1e-10, abs=1e-14)
            assert float(out["forward"][n, t]) == pytest.approx(fwd, rel=1e-10, abs=1e-14)
        assert float(out["policy_logp"][n]) == pytest.approx(lp, rel=1e-12)
        assert float(out["ref_logp"][n]) == pytest.approx(lr, rel=1e-12)
    assert float(out["policy_logp"].exp().sum()) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="a row per prefix"):
        tree_sequences(pol, ref, [sup[0], sup[1][:1]])
