"""The regulariser core (minimal version on issue-14): directions, masks, −inf logits, no NaN."""

import pytest
import torch

from kl_helpers.divergences import kl_divergence
from kl_helpers.regularizer import (
    DIRECTIONS,
    divergence_from_logits,
    masked_mean,
    masked_sum,
    per_token_divergence,
)


def _logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_directions_match_the_explicit_sums():
    policy, ref = _logits(4, 7, seed=1), _logits(4, 7, seed=2)
    p, r = policy.softmax(-1), ref.softmax(-1)
    torch.testing.assert_close(divergence_from_logits(policy, ref, "forward"), kl_divergence(r, p))
    torch.testing.assert_close(divergence_from_logits(policy, ref, "reverse"), kl_divergence(p, r))


def test_js_endpoints_and_symmetric_middle():
    policy, ref = _logits(3, 5, seed=3), _logits(3, 5, seed=4)
    fwd = divergence_from_logits(policy, ref, "forward")
    rev = divergence_from_logits(policy, ref, "reverse")
    torch.testing.assert_close(divergence_from_logits(policy, ref, "js", js_weight=0.0), fwd)
    torch.testing.assert_close(divergence_from_logits(policy, ref, "js", js_weight=1.0), rev)
    js = divergence_from_logits(policy, ref, "js", js_weight=0.5)
    torch.testing.assert_close(js, divergence_from_logits(ref, policy, "js", js_weight=0.5))
    assert (js > 0).all() and (js < torch.log(torch.tensor(2.0))).all()


def test_reference_is_detached_and_minus_inf_gives_no_nan():
    policy = _logits(2, 6, seed=5).requires_grad_(True)
    ref = _logits(2, 6, seed=6).requires_grad_(True)
    masked = torch.tensor([0, 0, 0, 1, 1, 1], dtype=torch.bool)
    for direction in DIRECTIONS:
        p_in = policy.masked_fill(masked, float("-inf"))
        r_in = ref.masked_fill(masked, float("-inf"))
        value = divergence_from_logits(p_in, r_in, direction).sum()
        (grad,) = torch.autograd.grad(value, policy)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert ref.grad is None


def test_per_token_mask_gives_exact_zeros_and_ignores_garbage():
    policy, ref = _logits(2, 4, 5, seed=7), _logits(2, 4, 5, seed=8)
    mask = torch.tensor([[True, True, False, False], [False, True, True, True]])
    policy[~mask] = float("-inf")  # whole rows of −inf where masked (padding)
    ref[~mask] = float("nan")
    out = per_token_divergence(policy, ref, mask, "reverse")
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    assert (out[~mask] == 0).all() and (out[mask] > 0).all()


def test_masked_mean_and_sum():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    assert masked_mean(values, mask).item() == 2.0
    assert masked_sum(values, mask).tolist() == [4.0, 0.0]
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"direction": "backward"}, "direction"),
        ({"temperature": 0.0}, "temperature"),
        ({"direction": "js", "js_weight": 1.5}, "js_weight"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        divergence_from_logits(_logits(2, 3), _logits(2, 3, seed=1), **kwargs)
