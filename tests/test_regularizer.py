"""kl_helpers.regularizer against naive float64 loops (no kl_helpers code in the references)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.regularizer import (
    DIRECTIONS,
    divergence_from_logits,
    masked_mean,
    masked_sum,
    per_token_divergence,
    regularised_terms,
)

INF = math.inf


def naive_row(policy: list[float], ref: list[float], direction: str, pi: float, t: float) -> float:
    """One row by Python loops: KL(ref‖policy), KL(policy‖ref) or JS_π(ref‖policy), 0·log 0 = 0."""

    def softmax(row: list[float]) -> list[float]:
        row = [v / t for v in row]
        m = max(row)
        z = sum(math.exp(v - m) for v in row)
        return [math.exp(v - m) / z for v in row]

    def kl(a: list[float], b: list[float]) -> float:
        return sum(
            x * math.log(x / y) if y > 0 else INF for x, y in zip(a, b, strict=True) if x > 0
        )

    p_new, p_ref = softmax(policy), softmax(ref)
    if direction == "forward" or (direction == "js" and pi == 0):
        return kl(p_ref, p_new)
    if direction == "reverse" or (direction == "js" and pi == 1):
        return kl(p_new, p_ref)
    mix = [pi * r + (1 - pi) * n for r, n in zip(p_ref, p_new, strict=True)]
    return pi * kl(p_ref, mix) + (1 - pi) * kl(p_new, mix)


def random_logits(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen) * 2, torch.randn(*shape, generator=gen) * 2


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("js_weight", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_rows_match_naive_loop(direction, js_weight, temperature):
    policy, ref = random_logits(6, 5)
    got = divergence_from_logits(
        policy.double(), ref.double(), direction, js_weight=js_weight, temperature=temperature
    )
    want = [
        naive_row(p, r, direction, js_weight, temperature)
        for p, r in zip(policy.double().tolist(), ref.double().tolist(), strict=True)
    ]
    assert got.shape == (6,)
    assert_close(got, torch.tensor(want, dtype=torch.float64))


def test_js_weight_limits_are_forward_and_reverse_kl():
    policy, ref = random_logits(4, 3, seed=1)
    fwd = divergence_from_logits(policy, ref, "forward")
    rev = divergence_from_logits(policy, ref, "reverse")
    assert_close(divergence_from_logits(policy, ref, "js", js_weight=0.0), fwd)
    assert_close(divergence_from_logits(policy, ref, "js", js_weight=1.0), rev)
    # ...and the interior approaches them: JS_π/π -> forward as π -> 0 (GKD's beta convention).
    eps = 1e-4
    near0 = divergence_from_logits(policy.double(), ref.double(), "js", js_weight=eps) / eps
    assert_close(near0, fwd.double(), rtol=1e-3, atol=1e-4)
    assert not torch.allclose(fwd, rev)


def test_temperature_divides_both_logits():
    policy, ref = random_logits(3, 4, seed=2)
    for direction in DIRECTIONS:
        warm = divergence_from_logits(policy, ref, direction, temperature=2.0)
        assert_close(warm, divergence_from_logits(policy / 2, ref / 2, direction))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        divergence_from_logits(policy, ref, temperature=0.0)


def test_bad_arguments_raise_clear_errors():
    policy, ref = random_logits(2, 3)
    with pytest.raises(ValueError, match="'fkl' is now called 'forward'"):
        divergence_from_logits(policy, ref, "fkl")
    with pytest.raises(ValueError, match="direction must be one of"):
        divergence_from_logits(policy, ref, "hellinger")
    with pytest.raises(ValueError, match=r"js_weight must be in \[0, 1\]"):
        divergence_from_logits(policy, ref, "js", js_weight=1.5)
    with pytest.raises(ValueError, match="do not match"):
        divergence_from_logits(policy, ref[:, :2])
    with pytest.raises(ValueError, match="mask has shape"):
        per_token_divergence(policy[None], ref[None], torch.ones(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_reference_gets_no_gradient_and_policy_gradient_is_finite(direction):
    policy, ref = random_logits(3, 4, seed=3)
    policy.requires_grad_(True)
    ref.requires_grad_(True)
    divergence_from_logits(policy, ref, direction).sum().backward()
    assert ref.grad is None
    assert torch.isfinite(policy.grad).all() and policy.grad.abs().sum() > 0


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_minus_inf_logits_give_no_nan(direction):
    policy = torch.tensor([[0.0, -INF, 1.0], [1e4, -1e4, 0.0]], requires_grad=True)
    ref = torch.tensor([[0.5, -INF, 0.3], [-1e4, 1e4, 0.0]])
    value = divergence_from_logits(policy, ref, direction)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(policy.grad).all()
    want = naive_row([0.0, -INF, 1.0], [0.5, -INF, 0.3], direction, 0.5, 1.0)
    assert value[0].item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_per_token_masks_exclude_positions_exactly(direction):
    policy, ref = random_logits(2, 4, 5, seed=4)
    mask = torch.tensor([[True, True, False, False], [True, False, True, True]])
    # Garbage where the mask is False: all -inf rows (softmax NaN) and NaN logits.
    policy[0, 2] = -INF
    ref[0, 3] = torch.nan
    policy.requires_grad_(True)
    out = per_token_divergence(policy, ref, mask, direction, js_weight=0.3)
    assert out.shape == (2, 4)
    assert (out[~mask] == 0).all()
    for b in range(2):
        for t in range(4):
            if mask[b, t]:
                want = naive_row(policy[b, t].tolist(), ref[b, t].tolist(), direction, 0.3, 1.0)
                assert out[b, t].item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    masked_mean(out, mask).backward()
    assert torch.isfinite(policy.grad).all()
    assert (policy.grad[~mask] == 0).all()


def test_per_token_without_mask_is_every_position():
    policy, ref = random_logits(2, 3, 4, seed=5)
    full = per_token_divergence(policy, ref, None, "reverse")
    assert_close(full, divergence_from_logits(policy, ref, "reverse"))
    assert_close(
        full, per_token_divergence(policy, ref, torch.ones(2, 3, dtype=torch.bool), "reverse")
    )


def test_masked_mean_and_sum_match_loops():
    values = torch.tensor([[1.0, 2.0, torch.nan], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, True, False], [False, True, True]])
    assert masked_mean(values, mask).item() == pytest.approx((1 + 2 + 5 + 6) / 4)
    assert masked_sum(values, mask).tolist() == [3.0, 11.0]
    assert masked_sum(values, mask, dim=0).tolist() == [1.0, 7.0, 6.0]
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0  # no valid item: 0, not NaN
    assert masked_mean(values[1]).item() == pytest.approx(5.0)
    assert masked_sum(values[1]).item() == pytest.approx(15.0)


def test_half_precision_logits_are_upcast():
    policy, ref = random_logits(3, 50, seed=6)
    got = divergence_from_logits(policy.bfloat16(), ref.bfloat16(), "forward")
    assert got.dtype == torch.float32
    want = divergence_from_logits(policy.bfloat16().float(), ref.bfloat16().float(), "forward")
    assert_close(got, want)
    same = divergence_from_logits(policy.bfloat16(), policy.bfloat16(), "reverse")
    assert (same == 0).all()


def test_token_terms_use_num_items_in_batch():
    policy, ref = random_logits(2, 4, 5, seed=7)
    labels = torch.tensor([[1, -100, 2, 3], [-100, -100, 4, -100]])
    task, div = regularised_terms(policy, ref, labels, "forward")
    mask = labels != -100
    n = int(mask.sum())
    rows = [(b, t) for b in range(2) for t in range(4) if mask[b, t]]
    want_div = sum(
        naive_row(policy[b, t].tolist(), ref[b, t].tolist(), "forward", 0.5, 1) for b, t in rows
    )
    want_task = sum(
        -math.log(torch.softmax(policy[b, t].double(), -1)[labels[b, t]].item()) for b, t in rows
    )
    assert div.item() == pytest.approx(want_div / n, rel=1e-5)
    assert task.item() == pytest.approx(want_task / n, rel=1e-5)
    task10, div10 = regularised_terms(policy, ref, labels, "forward", num_items_in_batch=10)
    assert div10.item() == pytest.approx(want_div / 10, rel=1e-5)
    assert task10.item() == pytest.approx(want_task / 10, rel=1e-5)
    shifted_task, _ = regularised_terms(policy, ref, labels, "forward", shift=True)
    want_shift = [(0, 1, 2), (0, 2, 3), (1, 1, 4)]  # (row, position, label at position + 1)
    want = sum(
        -math.log(torch.softmax(policy[b, t].double(), -1)[y].item()) for b, t, y in want_shift
    )
    assert shifted_task.item() == pytest.approx(want / 3, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Precision of every exact KL/JS path (issue 20, part 4): near-identical distributions at
# SmolLM2's vocabulary; expected values from a naive float64 computation on the same inputs.
# ---------------------------------------------------------------------------------------------

V_SMOL = 49152


def _near_pair(eps: float, rows: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    policy = 3 * torch.randn(rows, V_SMOL, generator=g)
    return policy, policy + eps * torch.randn(rows, V_SMOL, generator=g)


def _naive64_kl(p_logits, q_logits):
    log_p = torch.log_softmax(p_logits.double(), -1)
    log_q = torch.log_softmax(q_logits.double(), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _naive64_js(p_logits, q_logits, w):
    p = torch.softmax(p_logits.double(), -1)
    q = torch.softmax(q_logits.double(), -1)
    m = w * p + (1 - w) * q
    part = lambda a: torch.where(a > 0, a * (a / m).log(), torch.zeros_like(a)).sum(-1)  # noqa: E731
    return w * part(p) + (1 - w) * part(q)


def _exact_paths():
    """Every exact KL/JS path as f(policy (R, V), ref (R, V)) -> (R,), with its float64 twin."""
    from kl_helpers.divergences import kl_from_logits
    from kl_helpers.llm.token_kl import estimator_moments, exact_token_kl
    from kl_helpers.regularizer import generalised_js_from_logits
    from kl_helpers.rl.forward import response_kl

    ones = lambda x: torch.ones(x.shape[0], 1, dtype=torch.bool)  # noqa: E731
    return {
        "divergences.kl_from_logits": (kl_from_logits, _naive64_kl),
        "reverse": (lambda a, b: divergence_from_logits(a, b, "reverse"), _naive64_kl),
        "forward": (
            lambda a, b: divergence_from_logits(a, b, "forward"),
            lambda a, b: _naive64_kl(b, a),
        ),
        "js 0.5": (
            lambda a, b: divergence_from_logits(a, b, "js"),
            lambda a, b: _naive64_js(b, a, 0.5),
        ),
        "generalised_js 0.1": (
            lambda a, b: generalised_js_from_logits(a, b, 0.1),
            lambda a, b: _naive64_js(a, b, 0.1),
        ),
        "per_token_divergence": (
            lambda a, b: per_token_divergence(a[:, None], b[:, None], ones(a), "reverse")[:, 0],
            _naive64_kl,
        ),
        "token_kl.exact_token_kl": (
            lambda a, b: exact_token_kl(a[:, None], b[:, None], ones(a))[:, 0],
            _naive64_kl,
        ),
        "token_kl.estimator_moments k1": (
            lambda a, b: estimator_moments(a[:, None], b[:, None], ones(a))["k1"][0][:, 0],
            _naive64_kl,
        ),
        "rl_loop.response_kl": (
            lambda a, b: response_kl(a[:, None], b[:, None], ones(a)),
            _naive64_kl,
        ),
    }


EXACT_PATHS = list(_exact_paths())


@pytest.mark.parametrize("path", EXACT_PATHS)
@pytest.mark.parametrize("eps", [1e-3, 1e-4, 1e-5])
def test_exact_paths_resolve_tiny_divergences(path, eps):
    """float32 lost these: negative rows and 2x-176x relative errors at eps 1e-3, 1e-4."""
    fn, naive = _exact_paths()[path]
    policy, ref = _near_pair(eps)
    expected = naive(policy, ref)
    got = fn(policy, ref)
    assert expected.min() > 1e-12 and got.dtype == torch.float32
    assert (got >= 0).all(), f"negative divergences: {got.min().item():.3g}"
    rel = ((got.double() - expected).abs() / expected).max().item()
    assert rel < 0.02, f"relative error {rel:.3g} at true mean {expected.mean().item():.3g}"


@pytest.mark.parametrize("path", EXACT_PATHS)
def test_exact_paths_are_zero_for_identical_logits(path):
    fn, _ = _exact_paths()[path]
    policy, _ = _near_pair(0.0, rows=4)
    assert torch.equal(fn(policy, policy.clone()), torch.zeros(4))


@pytest.mark.parametrize("direction", ["forward", "reverse", "js"])
def test_float64_inside_keeps_the_gradient(direction):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 5, 11, generator=g).requires_grad_(True)
    b = torch.randn(3, 5, 11, generator=g)
    a64 = a.detach().double().requires_grad_(True)
    if direction == "forward":
        expected = _naive64_kl(b.double(), a64)
    elif direction == "reverse":
        expected = _naive64_kl(a64, b.double())
    else:
        expected = _naive64_js(b.double(), a64, 0.3)
    (expected * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    got = divergence_from_logits(a, b, direction, js_weight=0.3)
    (got * torch.arange(5.0)).sum().backward()
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=1e-5, atol=1e-7)


def test_masked_classes_and_huge_logit_gaps_stay_finite():
    """-inf classes in both, -1e4 'masked' classes in one only, and no NaN in value or gradient."""
    a = torch.tensor([[0.0, 1.0, -math.inf, -1e4], [2.0, -1e4, 0.5, 0.0]], requires_grad=True)
    b = torch.tensor([[0.5, 0.0, -math.inf, 1.0], [-1e4, 2.0, 0.5, 0.0]])
    for direction in ("forward", "reverse", "js"):
        got = divergence_from_logits(a, b, direction)
        got.sum().backward()
        assert torch.isfinite(got).all() and torch.isfinite(a.grad).all()
        fin = torch.where(torch.isinf(a), torch.full_like(a, -1e30), a).detach()
        ref = torch.where(torch.isinf(b), torch.full_like(b, -1e30), b)
        if direction == "forward":
            naive = _naive64_kl(ref, fin)
        elif direction == "reverse":
            naive = _naive64_kl(fin, ref)
        else:
            naive = _naive64_js(ref, fin, 0.5)
        torch.testing.assert_close(got.double(), naive, rtol=1e-5, atol=1e-6)
        a.grad = None
