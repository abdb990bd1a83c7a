"""kl_helpers.llm.token_kl at the edges its docstrings name (issue 30): masked tokens holding −100
or ids past the vocabulary, garbage logits at masked positions, prompt lengths as ints, lists and
tensors, every dtype, temperatures τ, empty grids. Expected values come from float64 Python loops,
never from kl_helpers."""

from __future__ import annotations

import math
import re

import pytest
import torch

from kl_helpers.llm import token_kl as tk

INF = math.inf


def log_softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    z = m + math.log(sum(math.exp(v - m) for v in row if v > -INF))
    return [v - z for v in row]


def logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return 2 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


MASK = torch.tensor([[True, True, False, False], [True, False, True, False]])


@pytest.mark.parametrize("pad", [-100, -1, 7, 10**9], ids=["hf-ignore", "minus-one", "V", "huge"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_masked_tokens_may_hold_any_id_and_logits_any_garbage(pad, dtype):
    """−100 or a pad id past V at masked positions raised a RuntimeError from gather (a device
    assert on CUDA); the docstring promises 0 there."""
    x = logits(2, 4, 7, seed=1)
    x[0, 2], x[1, 3] = math.nan, INF
    x = x.to(dtype).requires_grad_(True)
    tokens = torch.tensor([[3, 6, pad, pad], [0, pad, 2, pad]])
    got = tk.token_log_probs(x, tokens, MASK)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    want = [
        [
            log_softmax_row(x[b, t].double().tolist())[tokens[b, t]] if MASK[b, t] else 0.0
            for t in range(4)
        ]
        for b in range(2)
    ]
    for b in range(2):
        assert got[b].tolist() == pytest.approx(want[b], rel=1e-6, abs=1e-6)
    seq = tk.sequence_log_probs(x, tokens, MASK)
    assert seq.tolist() == pytest.approx([sum(w) for w in want], rel=1e-6)
    seq.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[~MASK] == 0).all()


@pytest.mark.parametrize("bad", [-100, -1, 7, 10**9])
def test_an_unmasked_id_outside_the_vocabulary_raises_value_error(bad):
    tokens = torch.tensor([[3, bad, 0, 0], [0, 0, 2, 0]])
    with pytest.raises(ValueError, match=rf"tokens must be ids in \[0, 7\).*got {bad}$"):
        tk.token_log_probs(logits(2, 4, 7), tokens, MASK)
    with pytest.raises(ValueError, match=rf"got {bad}$"):
        tk.sequence_log_probs(logits(2, 4, 7), tokens)  # no mask: every token counts


def test_int_masks_and_int32_tokens_and_empty_sequences():
    x = logits(1, 3, 5, seed=2).double()
    tokens = torch.tensor([[4, 0, 2]], dtype=torch.int32)
    got = tk.token_log_probs(x, tokens.long(), torch.tensor([[1, 0, 5]]))
    rows = [log_softmax_row(r) for r in x[0].tolist()]
    assert got.tolist() == [pytest.approx([rows[0][4], 0.0, rows[2][2]], rel=1e-12)]
    empty = tk.token_log_probs(torch.zeros(2, 0, 5), torch.zeros(2, 0, dtype=torch.long))
    assert empty.shape == (2, 0)
    assert tk.sequence_log_probs(
        torch.zeros(2, 0, 5), torch.zeros(2, 0, dtype=torch.long)
    ).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "prompt_len",
    [2, torch.tensor(2), [2, 3], (2, 3), torch.tensor([2, 3]), 0, 99, -5],
    ids=["int", "0-d", "list", "tuple", "tensor", "zero", "past-the-end", "negative"],
)
def test_shift_reads_every_form_of_prompt_length(prompt_len):
    ids = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 7, 8, 9]])
    attention = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    x = logits(2, 5, 10)
    out, targets, mask = tk.shift(x, ids, attention, prompt_len)
    lengths = prompt_len.tolist() if torch.is_tensor(prompt_len) else prompt_len
    lengths = [lengths] * 2 if isinstance(lengths, int) else list(lengths)
    want = [[t >= lengths[b] and attention[b, t] == 1 for t in range(1, 5)] for b in range(2)]
    assert mask.tolist() == want
    assert targets.tolist() == [[6, 7, 8, 0], [6, 7, 8, 9]] and torch.equal(out, x[:, :-1])


@pytest.mark.parametrize("prompt_len", [[1, 2, 3], (1,) * 3, torch.tensor([1, 2, 3])])
def test_shift_refuses_prompt_lengths_that_are_not_one_per_row(prompt_len):
    """A list of the wrong length raised a broadcasting RuntimeError (only tensors were checked)."""
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=re.escape("prompt_len (3,) must be (B,) for ids (2, 4)")):
        tk.shift(logits(2, 4, 5), ids, prompt_len=prompt_len)


def test_shift_of_one_position_is_empty():
    out, targets, mask = tk.shift(logits(2, 1, 5), torch.zeros(2, 1, dtype=torch.long))
    assert out.shape == (2, 0, 5) and targets.shape == mask.shape == (2, 0)


def naive_estimators(log_rho: float) -> dict[str, float]:
    return {"k1": -log_rho, "k2": 0.5 * log_rho**2, "k3": math.exp(log_rho) - 1 - log_rho}


def test_token_estimates_ignore_garbage_at_masked_positions():
    policy = torch.tensor([[-0.5, math.nan, -INF], [-2.0, -0.1, 0.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -INF, math.nan], [-0.3, -0.1, -40.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    got = tk.token_estimates(policy, ref, mask)
    for name in ("k1", "k2", "k3"):
        for b in range(2):
            for t in range(3):
                lr = ref[b, t].item() - policy[b, t].item() if mask[b, t] else 0.0
                want = naive_estimators(lr)[name] if mask[b, t] else 0.0
                assert got[name][b, t].item() == pytest.approx(want, rel=1e-6, abs=1e-7)
    sum(v.sum() for v in got.values()).backward()
    assert torch.isfinite(policy.grad).all() and (policy.grad[mask == 0] == 0).all()


@pytest.mark.parametrize(
    ("dtype", "out"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_estimator_moments_match_enumeration_with_garbage_masked(dtype, out):
    policy, ref = logits(1, 3, 6, seed=3), logits(1, 3, 6, seed=4)
    policy[0, 1], ref[0, 1] = math.nan, -INF
    policy[0, 2, 0] = ref[0, 2, 0] = -INF  # a class both forbid: p = 0, no NaN
    policy, ref = policy.to(dtype), ref.to(dtype)
    mask = torch.tensor([[True, False, True]])
    got = tk.estimator_moments(policy, ref, mask)
    for t in range(3):
        lp = log_softmax_row(policy[0, t].double().tolist()) if mask[0, t] else None
        lr = log_softmax_row(ref[0, t].double().tolist()) if mask[0, t] else None
        for name in ("k1", "k2", "k3"):
            mean, var = got[name]
            assert mean.dtype == var.dtype == out
            if not mask[0, t]:
                assert mean[0, t].item() == 0.0 and var[0, t].item() == 0.0
                continue
            items = [
                (math.exp(a), naive_estimators(b - a)[name])
                for a, b in zip(lp, lr, strict=True)
                if a > -INF
            ]
            m = sum(p * k for p, k in items)
            v = sum(p * (k - m) ** 2 for p, k in items)
            assert mean[0, t].item() == pytest.approx(m, rel=1e-6)
            assert var[0, t].item() == pytest.approx(v, rel=1e-6)


def test_sequence_kl_and_chain_rule_sum_edges():
    half = math.log(0.5)
    # π puts no mass on a sequence π_ref allows (0 log 0 = 0); π_ref forbidding one π uses: inf.
    assert tk.sequence_kl(
        torch.tensor([-INF, 0.0]), torch.tensor([half, half])
    ).item() == pytest.approx(math.log(2))
    assert tk.sequence_kl(torch.tensor([half, half]), torch.tensor([-INF, 0.0])).item() == INF
    token_kl = torch.tensor([[1.0, math.nan], [2.0, 3.0]])
    got = tk.chain_rule_sum(torch.tensor([half, half]), token_kl, torch.tensor([[1, 0], [1, 1]]))
    assert got.item() == pytest.approx(0.5 * 1.0 + 0.5 * (2.0 + 3.0))


def blend_naive(a, b, target_logp, alpha, tau, direction):
    q = log_softmax_row([(alpha * x + (1 - alpha) * y) / tau for x, y in zip(a, b, strict=True)])
    t = target_logp
    if direction == "forward":
        return sum(math.exp(u) * (u - v) for u, v in zip(t, q, strict=True))
    return sum(math.exp(v) * (v - u) for u, v in zip(t, q, strict=True))


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_blend_landscape_takes_lists_and_extreme_temperatures(direction):
    a, b = logits(6, seed=5).double(), logits(6, seed=6).double()
    pa, pb = log_softmax_row(a.tolist()), log_softmax_row(b.tolist())
    target = [math.log(0.5 * math.exp(x) + 0.5 * math.exp(y)) for x, y in zip(pa, pb, strict=True)]
    got_target = tk.mixture_log_probs(a, b)
    assert got_target.tolist() == pytest.approx(target, rel=1e-12)
    alphas, taus = [0.0, 0.25, 1.0], [1e-3, 1.0, 1e3]
    got = tk.blend_landscape(a, b, got_target, alphas, taus, direction)
    assert got.shape == (3, 3) and got.dtype == torch.float64
    for i, tau in enumerate(taus):
        want = [blend_naive(a.tolist(), b.tolist(), target, al, tau, direction) for al in alphas]
        assert got[i].tolist() == pytest.approx(want, rel=1e-6)
    for bad in ([1.0, 0.0], [-1.0]):
        with pytest.raises(ValueError, match="taus must all be > 0"):
            tk.blend_landscape(a, b, got_target, alphas, bad, direction)


def test_mixture_log_probs_of_half_precision_is_float32():
    a, b = logits(5, seed=7), logits(5, seed=8)
    got = tk.mixture_log_probs(a.bfloat16(), b.bfloat16())
    pa, pb = (
        log_softmax_row(a.bfloat16().double().tolist()),
        log_softmax_row(b.bfloat16().double().tolist()),
    )
    want = [math.log(0.5 * math.exp(x) + 0.5 * math.exp(y)) for x, y in zip(pa, pb, strict=True)]
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx(want, rel=1e-5)


def test_landscape_minima_needs_alphas_on_both_sides_of_split():
    """All α on one side of ``split`` raised an IndexError from argmin of an empty grid."""
    grid = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 0.25]])
    got = tk.landscape_minima(grid, [0.1, 0.4, 0.9], [1.0, 2.0], split=0.4)
    assert got == [
        pytest.approx({"alpha": 0.1, "tau": 2.0, "kl": 0.5}),
        pytest.approx({"alpha": 0.9, "tau": 2.0, "kl": 0.25}),
    ]
    with pytest.raises(ValueError, match="no alpha on each side of split 0.5"):
        tk.landscape_minima(grid, [0.1, 0.2, 0.3], [1.0, 2.0])
