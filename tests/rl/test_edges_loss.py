"""kl_helpers.rl.loss at the edges its docstrings name (issue 30): β → 0 and large β, huge and tiny
reward scales, integer rewards and masks, garbage at masked positions, every keyword of rl_loss,
RLConfig's fields at their limits; RLLoss's fields (frozen; only loss differentiable; shaped
rewards, k1 and k3 per response against float64 loops, with -1e9 / NaN-free garbage off the mask)
for both placements at β = 0 and β > 0. Expected values come from float64 Python loops."""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings

import pytest
import torch

from kl_helpers.rl.loss import (
    RLConfig,
    RLLoss,
    group_advantages,
    response_mask,
    rl_loss,
    rloo_advantages,
)


def naive_rloo(rewards: list[float], k: int) -> list[float]:
    out = []
    for g in range(0, len(rewards), k):
        group = rewards[g : g + k]
        out += [r - (sum(group) - r) / (k - 1) for r in group]
    return out


def naive_group(rewards: list[float], k: int) -> list[float]:
    out = []
    for g in range(0, len(rewards), k):
        group = rewards[g : g + k]
        mean, std = statistics.fmean(group), statistics.stdev(group)
        out += [(r - mean) / (std + 1e-4) for r in group]
    return out


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
def test_advantages_at_tiny_and_huge_reward_scales(scale):
    rewards = [scale * v for v in (0.5, -1.0, 2.0, 0.0, 3.0, 3.0)]
    got = rloo_advantages(torch.tensor(rewards, dtype=torch.float64), 3)
    assert got.tolist() == pytest.approx(naive_rloo(rewards, 3), rel=1e-12, abs=1e-30)
    got = group_advantages(torch.tensor(rewards, dtype=torch.float64), 3)
    assert got.tolist() == pytest.approx(naive_group(rewards, 3), rel=1e-9, abs=1e-30)


def test_integer_rewards_give_float_advantages():
    """0/1 rewards as an int tensor: group_advantages raised a RuntimeError from mean()."""
    rewards = [1, 0, 0, 1, 1, 1]
    for fn, naive in ((rloo_advantages, naive_rloo), (group_advantages, naive_group)):
        got = fn(torch.tensor(rewards), 3)
        assert got.dtype == torch.float32
        assert got.tolist() == pytest.approx(naive([float(r) for r in rewards], 3), rel=1e-6)


def test_empty_rewards_give_empty_advantages():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: std() of no group
        for fn in (rloo_advantages, group_advantages):
            assert fn(torch.zeros(0), 2).shape == (0,)


def naive_loss(policy, ref, mask, rewards, beta, placement, k, baseline):
    """rl_loss by loops in float64: k1 and k3 per token where mask is True."""
    rows = range(len(rewards))
    tokens = [[t for t in range(len(mask[b])) if mask[b][t]] for b in rows]
    k1 = [sum(policy[b][t] - ref[b][t] for t in tokens[b]) for b in rows]
    k3 = [
        sum(math.exp(ref[b][t] - policy[b][t]) - 1 - (ref[b][t] - policy[b][t]) for t in tokens[b])
        for b in rows
    ]
    shaped = [r - beta * k for r, k in zip(rewards, k1, strict=True)]
    shaped = shaped if placement == "k1_reward" else list(rewards)
    adv = (naive_rloo if baseline == "rloo" else naive_group)(shaped, k)
    logp = [sum(policy[b][t] for t in tokens[b]) for b in rows]
    loss = -sum(a * lp for a, lp in zip(adv, logp, strict=True)) / len(rewards)
    if placement == "k3_loss":
        loss += beta * sum(k3) / len(rewards)
    return loss, adv, shaped, k1, k3


@pytest.mark.parametrize("placement", ["k1_reward", "k3_loss"])
@pytest.mark.parametrize("baseline", ["rloo", "group"])
@pytest.mark.parametrize("beta", [0.0, 1e-9, 0.3, 1e6])
def test_every_keyword_of_rl_loss_against_loops_with_garbage_masked(placement, baseline, beta):
    g = torch.Generator().manual_seed(0)
    policy = -torch.rand(4, 3, generator=g, dtype=torch.float64)
    ref = -torch.rand(4, 3, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]])  # ints; a row of nothing
    rewards = [1.0, 0.0, 0.5, 2.0]
    want = naive_loss(
        policy.tolist(), ref.tolist(), mask.tolist(), rewards, beta, placement, 2, baseline
    )
    off = mask == 0
    bad_policy = policy.masked_fill(off, math.nan).requires_grad_(True)
    bad_ref = ref.masked_fill(off, -math.inf)
    out = rl_loss(
        bad_policy,
        bad_ref,
        mask,
        torch.tensor(rewards),
        beta,
        kl_estimator=placement,
        num_generations=2,
        baseline=baseline,
    )
    assert out.loss.dtype == torch.float64 and out.loss.shape == ()
    assert out.loss.item() == pytest.approx(want[0], rel=1e-9, abs=1e-12)
    fields = (out.advantages, out.shaped_rewards, out.kl_k1, out.kl_k3)
    for got, exp in zip(fields, want[1:], strict=True):
        assert got.tolist() == pytest.approx(exp, rel=1e-9, abs=1e-12)
    out.loss.backward()
    assert torch.isfinite(bad_policy.grad).all() and (bad_policy.grad[off] == 0).all()


def test_rl_loss_refuses_an_empty_batch():
    """B = 0 gave a NaN loss (the mean of nothing)."""
    empty = torch.zeros(0, 3)
    with pytest.raises(ValueError, match=r"at least one response, got \(0, 3\)"):
        rl_loss(empty, empty, empty.bool(), torch.zeros(0), 0.1, num_generations=2)


@pytest.mark.parametrize("beta", [-1e-9, math.inf, math.nan])
def test_rl_loss_refuses_beta_outside_its_range(beta):
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="beta must be finite and >= 0"):
        rl_loss(x, x, x.bool(), torch.zeros(2), beta, num_generations=2)


def test_response_mask_forms_of_eos():
    responses = torch.tensor([[5, 2, 7, 9], [9, 5, 5, 5], [5, 5, 5, 5]])
    for eos, want in (
        (2, [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]),
        (torch.tensor(2), [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]),
        ([9, 2], [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]),
        ((), [[1] * 4] * 3),
        (None, [[1] * 4] * 3),
    ):
        assert response_mask(responses, eos).tolist() == [[bool(v) for v in r] for r in want]
    assert response_mask(torch.zeros(2, 0, dtype=torch.long), 2).shape == (2, 0)
    for bad in (-100, 2.0, "2", [[2]]):
        with pytest.raises(ValueError, match="eos_id"):
            response_mask(responses, bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": math.nan},
        {"lr": math.nan},
        {"max_grad_norm": math.nan},
        {"temperature": 0.0},
        {"beta": math.inf},
        {"num_generations": 2.5},
        {"steps": 1.5},
        {"max_new_tokens": 8.0},
        {"lora_r": True},
        {"seed": "0"},
    ],
)
def test_config_refuses_nan_and_non_integer_counts(bad):
    """NaN passed the `<= 0` checks; float counts passed and failed later in range()/reshape."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        RLConfig(**bad)


def test_config_limits_and_list_targets_round_trip():
    assert RLConfig(beta=0.0).label == "k1_reward_b0"
    assert RLConfig(beta=1e-7).label == "k1_reward_b1e-07"
    assert RLConfig(max_grad_norm=math.inf).max_grad_norm == math.inf  # no clipping
    listed = RLConfig(lora_targets=["q_proj", "k_proj"])
    assert listed == RLConfig(lora_targets=("q_proj", "k_proj"))
    assert RLConfig.from_dict(listed.to_dict()) == listed and hash(listed) == hash(
        RLConfig(lora_targets=("q_proj", "k_proj"))
    )
    assert listed.key("m") == RLConfig(lora_targets=("q_proj", "k_proj")).key("m")


# ----------------------------------------------------------------------------- RLLoss


@pytest.mark.parametrize("placement", ["k1_reward", "k3_loss"])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_rl_loss_fields_are_what_their_comments_say(placement, beta):
    policy = [[-0.5, -1.0, -1e9], [-2.0, -0.1, -0.3], [-0.7, -1e9, -1e9], [-1.5, -0.2, -0.9]]
    ref = [[-0.6, -0.8, 7.0], [-1.0, -0.4, -0.3], [-0.2, 3.0, -5.0], [-1.5, -1.5, -0.1]]
    mask = [[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]]
    rewards = [1.0, -0.5, 2.0, 0.25]
    logp = torch.tensor(policy, dtype=torch.float64, requires_grad=True)
    out = rl_loss(logp, torch.tensor(ref, dtype=torch.float64), torch.tensor(mask),
                  torch.tensor(rewards, dtype=torch.float64), beta, placement, 2)  # fmt: skip
    assert isinstance(out, RLLoss)
    k1, k3 = [], []
    for lp_row, lr_row, m_row in zip(policy, ref, mask, strict=True):
        d = [lr - lp for lp, lr, m in zip(lp_row, lr_row, m_row, strict=True) if m]
        k1.append(sum(-x for x in d))  # log π − log π_ref
        k3.append(sum(math.exp(x) - 1 - x for x in d))
    shaped = [r - beta * k for r, k in zip(rewards, k1, strict=True)]
    if placement == "k3_loss":
        shaped = rewards
    adv = naive_rloo(shaped, 2)
    sums = [
        sum(lp for lp, m in zip(row, ms, strict=True) if m)
        for row, ms in zip(policy, mask, strict=True)
    ]
    loss = -sum(a * s for a, s in zip(adv, sums, strict=True)) / 4
    if placement == "k3_loss":
        loss += beta * sum(k3) / 4
    assert out.kl_k1.tolist() == pytest.approx(k1, rel=1e-12)
    assert out.kl_k3.tolist() == pytest.approx(k3, rel=1e-12)
    assert out.shaped_rewards.tolist() == pytest.approx(shaped, rel=1e-12)
    assert out.advantages.tolist() == pytest.approx(adv, rel=1e-12)
    assert out.loss.item() == pytest.approx(loss, rel=1e-12)
    assert out.loss.ndim == 0 and out.loss.requires_grad
    for name in ("advantages", "shaped_rewards", "kl_k1", "kl_k3"):
        value = getattr(out, name)
        assert value.shape == (4,) and not value.requires_grad, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.loss = torch.tensor(0.0)
