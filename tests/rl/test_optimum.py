"""Tests of kl_helpers.rl.optimum: the exact KL-regularised optimum against a naive float64
computation, its limits in β, and the pool frontier."""

from __future__ import annotations

import math

import pytest
import torch

from kl_helpers.rl.optimum import optimum_summary, pool_frontier, pool_optimum


def naive(q: list[float], r: list[float], beta: float, v: list[float]) -> tuple[float, ...]:
    w = [qi * math.exp(ri / beta) for qi, ri in zip(q, r, strict=True)]
    z = sum(w)
    p = [wi / z for wi in w]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)
    return (
        kl,
        sum(a * b for a, b in zip(p, r, strict=True)),
        sum(a * b for a, b in zip(p, v, strict=True)),
    )


@pytest.mark.parametrize("beta", [0.3, 1.0, 4.0])
def test_optimum_matches_a_naive_float64_sum(beta):
    q, r, v = [0.1, 0.2, 0.3, 0.4], [1.0, -0.5, 2.0, 0.0], [0.0, 1.0, -1.0, 2.0]
    out = optimum_summary(q, r, beta, {"gold": v})
    assert (out["kl"], out["reward"], out["gold"]) == pytest.approx(naive(q, r, beta, v), abs=1e-12)


def test_limits_in_beta_on_a_pool():
    rewards = torch.randn(50, generator=torch.Generator().manual_seed(1))
    gold = torch.randn(50, generator=torch.Generator().manual_seed(2))
    wide = pool_optimum(rewards, 1e6, {"gold": gold})  # β → ∞: the pool itself
    assert wide["kl"] == pytest.approx(0.0, abs=1e-9)
    assert wide["reward"] == pytest.approx(rewards.double().mean().item(), abs=1e-5)
    assert pool_optimum(rewards, math.inf)["kl"] == 0.0
    best = int(rewards.argmax())
    sharp = pool_optimum(rewards, 1e-6, {"gold": gold})  # β → 0: the argmax, KL log M
    assert sharp["kl"] == pytest.approx(math.log(50), abs=1e-9)
    assert (
        sharp["gold"] == pytest.approx(gold[best].item(), abs=1e-6) and sharp["max_weight"] > 0.999
    )
    kls = [pool_optimum(rewards, b)["kl"] for b in (10.0, 1.0, 0.3, 0.1, 0.01)]
    assert kls == sorted(kls) and kls[-1] <= math.log(50) + 1e-12


def test_frontier_averages_prompts_and_rejects_bad_input():
    pools = [
        {"reward": [0.0, 1.0], "gold": [1.0, 0.0]},
        {"reward": [2.0, 0.0, 1.0], "gold": [1, 2, 3]},
    ]
    rows = pool_frontier(pools, [1.0, 1e-8])
    assert rows[1]["kl"] == pytest.approx((math.log(2) + math.log(3)) / 2)
    assert rows[1]["gold"] == pytest.approx((0.0 + 1.0) / 2) and rows[0]["kl_cap"] == rows[1]["kl"]
    with pytest.raises(ValueError, match="beta"):
        pool_optimum([0.0, 1.0], 0.0)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        optimum_summary([0.5, 0.5], [0.0, 1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="at least one pool"):
        pool_frontier([], [1.0])
