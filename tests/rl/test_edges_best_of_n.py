"""kl_helpers.rl.best_of_n at the edges its docstrings name (issue 30): N = 1 and huge N, ties,
rewards at scales 1e-300..1e300 and one ulp apart, zero-probability outcomes, lists/NumPy/int
tensors/float32, every keyword of best_of_n_summary and one_token_responses (temperature near 0
and ∞, top_p at its ends), pools with duplicates. Expected values come from enumeration of every
N-tuple of draws, fractions.Fraction and Python loops in float64."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.rl.best_of_n import (
    best_of_n_kl,
    best_of_n_kl_bound,
    best_of_n_pool,
    best_of_n_pool_kl,
    best_of_n_probs,
    best_of_n_summary,
    best_of_n_table,
    one_token_responses,
    uniform_pool_kl,
)
from tests.rl.test_best_of_n import enumerate_best_of_n


def fraction_bon(q: list[Fraction], r: list[float], n: int) -> list[Fraction]:
    """π_BoN in exact rationals: a block of tied rewards gets F^n − F⁻^n, shared by π_ref."""
    out = []
    for i in range(len(q)):
        below = sum((q[j] for j in range(len(q)) if r[j] < r[i]), Fraction(0))
        block = sum((q[j] for j in range(len(q)) if r[j] == r[i]), Fraction(0))
        out.append(Fraction(0) if block == 0 else q[i] / block * ((below + block) ** n - below**n))
    return out


@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e300])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_probs_at_reward_scales_and_with_ties_against_enumeration(scale, n):
    q = [0.1, 0.2, 0.3, 0.15, 0.25]
    r = [scale * v for v in (1.0, 3.0, 1.0, 2.0, 3.0)]  # two tied blocks
    want = enumerate_best_of_n(q, r, n)
    assert best_of_n_probs(q, r, n).tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_rewards_one_ulp_apart_are_not_tied():
    q, n = [0.5, 0.5], 3
    r = [1.0, math.nextafter(1.0, 2.0)]
    assert best_of_n_probs(q, r, n).tolist() == pytest.approx(enumerate_best_of_n(q, r, n))


def test_n_equal_to_one_gives_the_reference_and_zero_kl():
    q, r = [0.1, 0.2, 0.3, 0.4], [4.0, 4.0, -1.0, 2.0]
    assert best_of_n_probs(q, r, 1).tolist() == pytest.approx(q, rel=1e-15)
    assert best_of_n_kl(q, r, 1) == 0.0 and best_of_n_kl_bound(1) == 0.0
    assert uniform_pool_kl(5, 1) == pytest.approx(0.0, abs=1e-15) and uniform_pool_kl(1, 7) == 0


@pytest.mark.parametrize("n", [300, 10**6, 10**12, 10**17, 2**62, 2**63, 10**400], ids=str)
def test_huge_n_keeps_a_distribution(n):
    """Ten outcomes of 0.1: the cumulative sum ends at 0.9999999999999999, so F^N of the top
    block went to 0 for huge N (N = 1e17: the probabilities summed to 1.5e-5 and the KL was 0
    instead of log 10; N ≥ 2**63: OverflowError)."""
    q, r = [0.1] * 10, list(range(10))
    p = best_of_n_probs(q, r, n)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    if n <= 10**6:  # (k/10)^N − ((k−1)/10)^N in 50-digit arithmetic
        with mpmath.workdps(50):
            want = [float((mpmath.mpf(k) / 10) ** n - (mpmath.mpf(k - 1) / 10) ** n)
                    for k in range(1, 11)]  # fmt: skip
        assert p.tolist() == pytest.approx(want, rel=1e-9, abs=1e-300)
        assert uniform_pool_kl(10, n) == pytest.approx(best_of_n_kl(q, r, n), rel=1e-9)
    else:  # every outcome but the best has F^N = 0.9^N → 0
        assert p.tolist() == pytest.approx([0.0] * 9 + [1.0], abs=1e-12)
        assert best_of_n_kl(q, r, n) == pytest.approx(math.log(10), rel=1e-12)


def test_huge_n_with_a_tied_top_block_keeps_the_reference_share():
    q, r = [0.2, 0.3, 0.1, 0.4], [5.0, 1.0, 5.0, 0.0]
    p = best_of_n_probs(q, r, 10**15)
    assert p.tolist() == pytest.approx([2 / 3, 0.0, 1 / 3, 0.0], rel=1e-12, abs=1e-300)
    assert best_of_n_kl(q, r, 10**15) == pytest.approx(-math.log(0.3), rel=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, math.nan, math.inf, -math.inf, "3"])
def test_n_outside_the_positive_integers_is_refused_by_every_function(bad):
    """NaN: int()'s message; inf: OverflowError; best_of_n_kl_bound(True) gave 0."""
    q, r = [0.5, 0.5], [0.0, 1.0]
    calls = [
        lambda: best_of_n_probs(q, r, bad), lambda: best_of_n_kl(q, r, bad),
        lambda: best_of_n_kl_bound(bad), lambda: uniform_pool_kl(3, bad),
        lambda: uniform_pool_kl(bad, 3), lambda: best_of_n_pool([0.0, 1.0], ["a", "b"], bad),
        lambda: best_of_n_summary(q, r, [1, bad]),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            call()


@pytest.mark.parametrize(
    "n", [2.0, np.int64(3), torch.tensor(3), Fraction(4, 1)], ids=["float", "numpy", "0-d", "frac"]
)
def test_integral_n_of_other_types(n):
    q, r = [0.25, 0.75], [1.0, 0.0]
    want = enumerate_best_of_n(q, r, int(n))
    assert best_of_n_probs(q, r, n).tolist() == pytest.approx(want, rel=1e-15)
    assert best_of_n_kl_bound(n) == pytest.approx(math.log(int(n)) - (int(n) - 1) / int(n))


@pytest.mark.parametrize(
    "convert",
    [list, tuple, np.array, lambda v: torch.tensor(v, dtype=torch.float32)],
    ids=["list", "tuple", "numpy", "float32"],
)
def test_inputs_as_lists_tuples_numpy_and_float32_give_float64(convert):
    q, r = [0.125, 0.375, 0.5], [2, 0, 1]  # exact in float32
    p = best_of_n_probs(convert(q), convert(r), 3)
    assert p.dtype == torch.float64
    want = fraction_bon([Fraction(v) for v in q], r, 3)
    assert p.tolist() == [float(v) for v in want]
    int_rewards = best_of_n_probs(q, torch.tensor(r), 3)
    assert int_rewards.tolist() == [float(v) for v in want]


def test_zero_probability_outcomes_are_never_kept():
    q, r = [0.5, 0.0, 0.5, 0.0], [1.0, 9.0, 2.0, 2.0]  # the best reward has π_ref 0
    p = best_of_n_probs(q, r, 3)
    assert p.tolist() == [float(v) for v in fraction_bon([Fraction(v) for v in q], r, 3)]
    assert p[1] == 0 and p[3] == 0
    kl = sum(a * math.log(a / b) for a, b in zip(p.tolist(), q, strict=True) if a > 0)
    assert best_of_n_kl(q, r, 3) == pytest.approx(kl, rel=1e-14)


def test_kl_under_the_bound_and_uniform_pool_against_fractions():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64):
        q = rng.dirichlet(np.ones(6))
        assert 0 <= best_of_n_kl(q, rng.normal(size=6), n) <= best_of_n_kl_bound(n) + 1e-15
        for m in (1, 2, 5):
            p = [Fraction(k, m) ** n - Fraction(k - 1, m) ** n for k in range(1, m + 1)]
            want = sum(float(v) * math.log(float(v * m)) for v in p if v > 0)
            assert uniform_pool_kl(m, n) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert best_of_n_kl_bound(10**400) == pytest.approx(400 * math.log(10) - 1, rel=1e-15)


def test_summary_every_keyword_and_no_ns():
    q, r = [0.25, 0.25, 0.5], [0.0, 2.0, 1.0]
    gold = np.array([1.0, -1.0, 3.0])
    rows = best_of_n_summary(q, r, (1, 3), values={"gold": gold, "len": [1, 2, 3]})
    for row, n in zip(rows, (1, 3), strict=True):
        p = enumerate_best_of_n(q, r, n)
        assert row["N"] == n and row["max_ref_prob"] == 0.5
        assert row["reward"] == pytest.approx(sum(a * b for a, b in zip(p, r, strict=True)))
        assert row["gold"] == pytest.approx(sum(a * b for a, b in zip(p, gold, strict=True)))
        assert row["len"] == pytest.approx(sum(a * b for a, b in zip(p, [1, 2, 3], strict=True)))
        assert row["bound"] == pytest.approx(math.log(n) - (n - 1) / n)
    assert best_of_n_summary(q, r, []) == []
    assert best_of_n_summary(q, r, [2], None)[0].keys() == {
        "N", "kl", "bound", "reward", "max_ref_prob",
    }  # fmt: skip


def test_empty_and_two_dimensional_inputs_are_refused():
    with pytest.raises(ValueError, match=r"non-empty.*\(0,\)"):
        best_of_n_probs([], [], 2)
    with pytest.raises(ValueError, match=r"1-D.*\(1, 2\)"):
        best_of_n_kl([[0.5, 0.5]], [[0.0, 1.0]], 2)
    with pytest.raises(ValueError, match="one reward per text"):
        best_of_n_pool([], [], 2)


def enumerate_pool(rewards: list[float], texts: list[str], n: int) -> dict[str, float]:
    """Best-of-n over draws with replacement from the pool, by enumeration of every n-tuple of
    pool rows; ties between rows of equal reward broken uniformly; probability per text."""
    m = len(texts)
    out: dict[str, float] = {}
    rows = range(m)
    import itertools

    for draw in itertools.product(rows, repeat=n):
        best = max(rewards[i] for i in draw)
        winners = [i for i in draw if rewards[i] == best]
        for i in winners:
            out[texts[i]] = out.get(texts[i], 0.0) + 1 / m**n / len(winners)
    return out


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pool_with_duplicates_and_ties_against_enumeration(n):
    rewards = [0.5, 2.0, 0.5, 2.0, 1.0, 2.0]
    texts = ["a", "b", "a", "c", "d", "b"]  # "b" twice, tied with "c"
    want = enumerate_pool(rewards, texts, n)
    out = best_of_n_pool(np.array(rewards), tuple(texts), n)
    got = {texts[int(i)]: float(p) for i, p in zip(out["index"], out["p"], strict=True)}
    assert got == pytest.approx(want, rel=1e-12)
    q = {t: texts.count(t) / len(texts) for t in want}
    kl = sum(p * math.log(p / q[t]) for t, p in want.items() if p > 0)
    assert out["kl"] == pytest.approx(kl, rel=1e-12, abs=1e-15)
    assert best_of_n_pool_kl(rewards, texts, n) == out["kl"]
    assert out["reward"].tolist() == sorted(out["reward"].tolist())


def test_pool_n_huge_and_a_pool_of_one():
    out = best_of_n_pool([1.0, 3.0, 3.0, 2.0], ["w", "x", "y", "z"], 10**15)
    got = {int(i): float(p) for i, p in zip(out["index"], out["p"], strict=True)}
    assert got == pytest.approx({0: 0.0, 1: 0.5, 2: 0.5, 3: 0.0}, abs=1e-12)
    assert out["kl"] == pytest.approx(math.log(2), rel=1e-12)
    one = best_of_n_pool([7.0], ["only"], 5)
    assert one["p"].tolist() == [1.0] and one["kl"] == 0.0


def test_pool_refuses_non_finite_rewards():
    with pytest.raises(ValueError, match="finite"):
        best_of_n_pool([1.0, math.nan], ["a", "b"], 2)


def test_table_against_enumeration():
    pool = [
        {"reward": [0.0, 1.0, 1.0], "texts": ["a", "b", "b"], "gold": [2.0, -1.0, -1.0]},
        {"reward": [3.0, 1.0], "texts": ["x", "y"], "gold": [0.0, 4.0]},
    ]
    table = best_of_n_table(pool, [1, 2])
    for n, (_, row) in zip([1, 2], table.iterrows(), strict=True):
        kls, proxy, gold = [], [], []
        for entry in pool:
            want = enumerate_pool(entry["reward"], entry["texts"], n)
            first = {t: entry["texts"].index(t) for t in want}
            q = {t: entry["texts"].count(t) / len(entry["texts"]) for t in want}
            kls.append(sum(p * math.log(p / q[t]) for t, p in want.items() if p > 0))
            proxy.append(sum(p * entry["reward"][first[t]] for t, p in want.items()))
            gold.append(sum(p * entry["gold"][first[t]] for t, p in want.items()))
        assert row["N"] == n and row["kl"] == pytest.approx(sum(kls) / 2, abs=1e-12)
        assert row["reward"] == pytest.approx(sum(proxy) / 2)
        assert row["gold"] == pytest.approx(sum(gold) / 2)
        assert row["duplicate share"] == pytest.approx((1 / 3 + 0) / 2)
        assert row["M distinct (M, N only)"] == pytest.approx(
            (uniform_pool_kl(3, n) + uniform_pool_kl(2, n)) / 2
        )


def next_token_probs(model, tok, prompt, temperature):
    """softmax(logits / T) by a Python loop in float64 over the model's last-position logits."""
    from kl_helpers.llm.model import encode_prompts

    ids, attn = encode_prompts(tok, [prompt])
    with torch.no_grad():
        z = model(input_ids=ids, attention_mask=attn).logits[0, -1].double().tolist()
    if math.isinf(temperature):
        return [1 / len(z)] * len(z)
    top = max(z)
    e = [math.exp((v - top) / temperature) for v in z]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("temperature", [1e-5, 1e-2, 1.0, 1e3, math.inf])
def test_one_token_responses_at_temperature_limits(temperature):
    from tests.rl.test_loop import CharTokenizer, tiny_llama

    model, tok = tiny_llama(), CharTokenizer()
    with torch.no_grad():
        model.lm_head.weight.mul_(100)  # spread logits: T = 1e-5 underflows most tokens to 0
    want = next_token_probs(model, tok, "ab", temperature)
    out = one_token_responses(model, tok, "ab", temperature=temperature)
    kept = [i for i in sorted(range(len(want)), key=lambda i: -want[i]) if want[i] > 0]
    assert sorted(out["ids"].tolist()) == sorted(kept)
    assert out["probs"].tolist() == pytest.approx([want[i] for i in out["ids"]], rel=1e-9)
    assert out["probs"].dtype == torch.float64 and out["probs"].device.type == "cpu"
    assert (out["probs"][:-1] >= out["probs"][1:]).all()  # most likely first
    assert len(out["texts"]) == len(kept)


@pytest.mark.parametrize("top_p", [1e-300, 0.3, 1 - 1e-12, 1.0])
def test_one_token_responses_top_p_ends(top_p):
    from tests.rl.test_loop import CharTokenizer, tiny_llama

    model, tok = tiny_llama(), CharTokenizer()
    want = sorted(next_token_probs(model, tok, "ab", 0.5), reverse=True)
    k, mass = 0, 0.0
    while k < len(want) and mass < top_p:  # the smallest top set whose mass reaches top_p
        mass += want[k]
        k += 1
    out = one_token_responses(model, tok, "ab", temperature=0.5, top_p=top_p)
    assert len(out["ids"]) == k
    assert out["kept_mass"] == pytest.approx(sum(want[:k]), rel=1e-9)
    assert out["probs"].tolist() == pytest.approx([v / sum(want[:k]) for v in want[:k]])


@pytest.mark.parametrize(
    "kwargs", [{"temperature": math.nan}, {"temperature": -1.0}, {"top_p": math.nan},
               {"top_p": 1.5}, {"top_p": -0.1}]
)  # fmt: skip
def test_one_token_responses_refuses_settings_outside_their_range(kwargs):
    """temperature=NaN gave NaN probabilities silently."""
    from tests.rl.test_loop import CharTokenizer, tiny_llama

    with pytest.raises(ValueError, match=next(iter(kwargs))):
        one_token_responses(tiny_llama(), CharTokenizer(), "ab", **kwargs)
