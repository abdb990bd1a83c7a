"""kl_helpers.rl.optimum at the edges its docstrings name (issue 30): β → 0 (down to a subnormal)
and β → ∞ (up to math.inf), ties at the top, the best response unsupported by π_ref, reward
scales 1e-300..1e300 and rewards ±1e308 apart, β as a NumPy scalar or 0-d tensor, pools of one,
every keyword of pool_frontier. Expected values come from mpmath at 80 digits."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.rl.optimum import optimum_summary, pool_frontier, pool_optimum


def mp_optimum(q, r, beta, values=()):
    """KL(π*‖π_ref), E[r], max weight and E[v] for each of ``values`` in 80-digit arithmetic."""
    with mpmath.workdps(80):
        q = [mpmath.mpf(x) for x in q]
        q = [x / sum(q) for x in q]
        r = [mpmath.mpf(x) for x in r]
        if math.isinf(beta):
            p = q
        else:
            w = [a * mpmath.exp((b - max(r)) / mpmath.mpf(beta)) for a, b in zip(q, r, strict=True)]
            p = [x / sum(w) for x in w]
        kl = sum(a * mpmath.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)
        out = [float(kl), float(sum(a * b for a, b in zip(p, r, strict=True))), float(max(p))]
        for v in values:
            out.append(float(sum(a * mpmath.mpf(b) for a, b in zip(p, v, strict=True))))
        return out


Q, R = [0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 3.0, -2.0]  # a tie at the top


@pytest.mark.parametrize("beta", [5e-324, 1e-300, 1e-12, 1e-3, 0.5, 1.0, 1e2, 1e4, 1e6, 1e8])
def test_summary_from_beta_near_zero_to_beta_huge(beta):
    """KL is exact up to a few 1e-16 nats absolute (Σ p log(p/q) cancels as β → ∞, where the KL
    itself goes to 0 like Var(r)/2β²): the docstring says so."""
    kl, reward, top = mp_optimum(Q, R, beta)
    got = optimum_summary(Q, R, beta)
    assert got["beta"] == beta and got["kl"] >= 0
    assert got["kl"] == pytest.approx(kl, rel=1e-13, abs=3e-16)
    assert got["reward"] == pytest.approx(reward, rel=1e-14, abs=1e-15)
    assert got["max_weight"] == pytest.approx(top, rel=1e-14)


def test_beta_zero_limit_is_the_best_block_and_beta_inf_is_the_reference():
    low = optimum_summary(Q, R, 1e-300)
    assert low["kl"] == pytest.approx(-math.log(0.5), rel=1e-15) and low["reward"] == 3.0
    inf = optimum_summary(Q, R, math.inf)
    assert inf == {"beta": math.inf, "kl": 0.0, "reward": pytest.approx(0.8), "max_weight": 0.4}


def test_best_reward_unsupported_by_the_reference():
    q, r = [0.5, 0.5, 0.0], [1.0, 2.0, 9.0]
    got = optimum_summary(q, r, 1e-9)
    assert got["kl"] == pytest.approx(math.log(2), rel=1e-15)
    assert got["reward"] == 2.0 and got["max_weight"] == 1.0


@pytest.mark.parametrize("scale", [1e-300, 1e-12, 1.0, 1e12, 1e300])
def test_reward_scales(scale):
    r = [scale * v for v in R]
    kl, reward, top = mp_optimum(Q, r, 1.0)
    got = optimum_summary(Q, r, 1.0)
    assert got["kl"] == pytest.approx(kl, rel=1e-13, abs=3e-16)
    assert got["reward"] == pytest.approx(reward, rel=1e-14, abs=1e-314)
    assert got["max_weight"] == pytest.approx(top, rel=1e-14)


def test_rewards_at_the_ends_of_float64():
    r = [-1e308, 1e308, 0.0, 1e308]  # r - max(r) overflows to -inf for the first
    got = optimum_summary([0.25, 0.25, 0.25, 0.25], r, 1.0)
    assert got["kl"] == pytest.approx(math.log(2), rel=1e-15)
    assert got["reward"] == 1e308 and got["max_weight"] == 0.5


@pytest.mark.parametrize(
    "beta", [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), 1, np.int64(2)], ids=repr
)
def test_beta_of_other_types(beta):
    kl, reward, _ = mp_optimum(Q, R, float(beta))
    got = optimum_summary(np.array(Q), torch.tensor(R, dtype=torch.float32), beta)
    assert type(got["beta"]) is float
    assert got["kl"] == pytest.approx(kl, rel=1e-13) and got["reward"] == pytest.approx(reward)


@pytest.mark.parametrize("beta", [0.0, -1.0, -math.inf, math.nan])
def test_beta_outside_its_range(beta):
    for call in (
        lambda: optimum_summary(Q, R, beta),
        lambda: pool_optimum(R, beta),
        lambda: pool_frontier([{"reward": R, "gold": R}], [1.0, beta]),
    ):
        with pytest.raises(ValueError, match="beta must be > 0"):
            call()


def test_values_keyword_lists_numpy_int_tensors_and_shape_mismatch():
    gold, length = np.array([2.0, -1.0, 0.5, 7.0]), torch.tensor([3, 1, 4, 1])
    want = mp_optimum(Q, R, 0.7, (gold.tolist(), length.tolist()))
    got = optimum_summary(Q, R, 0.7, {"gold": gold, "len": length})
    assert [got["kl"], got["reward"], got["max_weight"], got["gold"], got["len"]] == pytest.approx(
        want, rel=1e-13
    )
    assert optimum_summary(Q, R, 0.7, {}).keys() == {"beta", "kl", "reward", "max_weight"}
    with pytest.raises(ValueError, match=r"gold has shape \(3,\)"):
        optimum_summary(Q, R, 0.7, {"gold": [1.0, 2.0, 3.0]})


def test_pool_optimum_and_its_log_m_cap():
    r = [0.3, 2.0, 2.0, -5.0, 1.0]  # identical rewards twice: equal weights
    for beta in (1e-9, 0.2, 1.0, 50.0, math.inf):
        kl, reward, _ = mp_optimum([1] * 5, r, beta)
        got = pool_optimum(tuple(r), beta)
        assert got["kl"] == pytest.approx(kl, rel=1e-13, abs=3e-16) and got["kl"] <= math.log(5)
        assert got["reward"] == pytest.approx(reward, rel=1e-14)
    assert pool_optimum([5.0], 1e-9) == {"beta": 1e-9, "kl": 0.0, "reward": 5.0, "max_weight": 1.0}
    with pytest.raises(ValueError, match="empty"):
        pool_optimum([], 1.0)
    with pytest.raises(ValueError, match="finite"):
        pool_optimum([1.0, math.nan], 1.0)


def test_pool_frontier_every_keyword():
    pools = [
        {"reward": [0.0, 1.0, 3.0], "gold": [1.0, 0.0, -1.0], "len": [1, 2, 3]},
        {"reward": (2.0, -1.0), "gold": np.array([0.5, 4.0]), "len": [5, 6]},
    ]
    betas = [1e-6, 1.0, math.inf]
    rows = pool_frontier(pools, betas, value_keys=("gold", "len"))
    for row, beta in zip(rows, betas, strict=True):
        per = [mp_optimum([1] * len(e["reward"]), e["reward"], beta, (e["gold"], e["len"]))
               for e in pools]  # fmt: skip
        assert row["beta"] == beta
        assert row["kl"] == pytest.approx((per[0][0] + per[1][0]) / 2, rel=1e-13, abs=3e-16)
        assert row["reward"] == pytest.approx((per[0][1] + per[1][1]) / 2, rel=1e-13)
        assert row["gold"] == pytest.approx((per[0][3] + per[1][3]) / 2, rel=1e-13, abs=1e-15)
        assert row["len"] == pytest.approx((per[0][4] + per[1][4]) / 2, rel=1e-13)
        assert row["kl_cap"] == pytest.approx((math.log(3) + math.log(2)) / 2)
    assert pool_frontier(pools, []) == []
    assert pool_frontier(pools, [1.0], value_keys=())[0].keys() == {
        "beta", "kl", "reward", "kl_cap",
    }  # fmt: skip
    with pytest.raises(ValueError, match="at least one pool"):
        pool_frontier([], [1.0])


@pytest.mark.parametrize("beta", [True, "1", None, [1.0]])
def test_beta_that_is_no_number(beta):
    """beta = True and beta = '1' were read as 1."""
    with pytest.raises(ValueError, match="beta must be"):
        optimum_summary([0.5, 0.5], [0.0, 1.0], beta)
