"""kl_helpers.divergences against naive float64 references, SciPy and torch.distributions."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.testing import assert_close

from kl_helpers.divergences import (
    cross_entropy,
    entropy,
    kl_divergence,
    kl_from_logits,
    symmetrised_kl,
)

P = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
Q = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)


def naive_kl(p, q):
    return sum(
        pi * math.log(pi / qi) for pi, qi in zip(p.tolist(), q.tolist(), strict=True) if pi > 0
    )


def test_kl_matches_naive_sum_and_scipy():
    expected = naive_kl(P, Q)
    assert_close(kl_divergence(P, Q), torch.tensor(expected, dtype=torch.float64))
    assert_close(kl_divergence(P, Q).item(), float(stats.entropy(P.numpy(), Q.numpy())))


def test_kl_matches_torch_distributions():
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=P), torch.distributions.Categorical(probs=Q)
    )
    assert_close(kl_divergence(P, Q), expected)


def test_batched_rows():
    p = torch.stack([P, Q, P.flip(0)])
    q = torch.stack([Q, P, Q])
    expected = torch.tensor(
        [naive_kl(a, b) for a, b in zip(p, q, strict=True)], dtype=torch.float64
    )
    assert_close(kl_divergence(p, q), expected)


def test_properties_nonnegative_zero_iff_identical_asymmetric():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        p = torch.rand(5, generator=gen, dtype=torch.float64).softmax(-1)
        q = torch.rand(5, generator=gen, dtype=torch.float64).softmax(-1)
        assert kl_divergence(p, q) > 0
        assert kl_divergence(p, p) == 0
    assert not torch.isclose(kl_divergence(P, Q), kl_divergence(Q, P))
    assert_close(symmetrised_kl(P, Q), kl_divergence(P, Q) + kl_divergence(Q, P))


def test_zero_probabilities_follow_0_log_0_and_give_inf():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    assert_close(kl_divergence(p, q), torch.tensor(math.log(2), dtype=torch.float64))
    assert kl_divergence(q, p).item() == math.inf  # q puts mass where p has none
    assert not torch.isnan(entropy(p))


def test_cross_entropy_is_entropy_plus_kl():
    assert_close(cross_entropy(P, Q), entropy(P) + kl_divergence(P, Q))


def test_kl_from_logits_matches_probabilities_and_f_kl_div():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    expected = kl_divergence(a.softmax(-1), b.softmax(-1))
    assert_close(kl_from_logits(a, b), expected)
    # F.kl_div(input=log q, target=p) computes KL(p || q): the classic argument-order trap
    via_torch = F.kl_div(b.log_softmax(-1), a.softmax(-1), reduction="none").sum(-1)
    assert_close(kl_from_logits(a, b), via_torch)


def test_kl_from_logits_minus_inf_and_huge_logits_no_nan():
    a = torch.tensor(
        [[0.0, 1.0, -math.inf], [1e4, -1e4, 0.0]], dtype=torch.float64, requires_grad=True
    )
    b = torch.tensor([[0.5, -0.5, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    value = kl_from_logits(a, b)
    value.sum().backward()
    assert torch.isfinite(value).all()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    p = torch.tensor([1 / (1 + math.e), math.e / (1 + math.e), 0.0], dtype=torch.float64)
    assert_close(value[0], kl_divergence(p, b[0].detach().softmax(-1)))
    assert_close(value[1], torch.tensor(math.log(3), dtype=torch.float64), atol=1e-6, rtol=0)


def test_kl_from_logits_inf_when_q_masks_a_class_p_uses():
    a = torch.tensor([0.0, 0.0])
    b = torch.tensor([0.0, -math.inf])
    assert kl_from_logits(a, b).item() == math.inf


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        ([0.5, 0.5], [0.2, 0.3, 0.5], "shape mismatch"),
        ([1.2, -0.2], [0.5, 0.5], "negative"),
        ([0.5, 0.6], [0.5, 0.5], "sum to 1"),
        ([0.5, 0.5], [float("nan"), 0.5], "NaN"),
    ],
)
def test_bad_input_raises_value_error(p, q, message):
    with pytest.raises(ValueError, match=message):
        kl_divergence(torch.tensor(p), torch.tensor(q))


def test_float32_agrees_with_float64():
    assert_close(
        kl_divergence(P.float(), Q.float()).double(), kl_divergence(P, Q), rtol=1e-5, atol=1e-6
    )


def test_kl_from_logits_gradients_in_both_arguments_match_float64_autograd():
    """The closed-form backward (float64 by blocks) against autograd of the naive float64 sum,
    with a class masked (-inf) in both distributions."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    a[..., 2] = b[..., 2] = -torch.inf
    a.requires_grad_(True)
    b.requires_grad_(True)
    a64 = a.detach().double().requires_grad_(True)
    b64 = b.detach().double().requires_grad_(True)
    log_p, log_q = torch.log_softmax(a64, -1), torch.log_softmax(b64, -1)
    ratio = torch.where(log_p.exp() > 0, log_p - log_q, torch.zeros_like(log_p))
    weights = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    ((log_p.exp() * ratio).sum(-1) * weights).sum().backward()
    (kl_from_logits(a, b) * weights.float()).sum().backward()
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=1e-5, atol=1e-7)
