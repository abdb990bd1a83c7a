"""kl_helpers.rl.evaluation at its edges (issue 30): distinct_n against a set-of-tuples count with
repeated, empty and whitespace-only texts and n beyond every text; mean_and_se against fractions
for one value, 1e300 and infinities; seed_mean/seed_difference/pool_baseline against loops;
heldout_metrics on a tiny Llama against evaluate_policy's own draws (gold as list/NumPy/tensor,
keep_texts 0 and past the end); is_reference with and without LoRA."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from kl_helpers.rl.evaluation import (
    SE_METRICS,
    distinct_n,
    heldout_metrics,
    is_reference,
    mean_and_se,
    pool_baseline,
    seed_difference,
    seed_mean,
)
from kl_helpers.rl.loop import add_lora, evaluate_policy
from tests.rl.test_loop import CONFIG, PROMPTS, CharTokenizer, a_reward, tiny_llama


def naive_distinct(texts, n):
    grams = []
    for t in texts:
        w = t.split()
        grams += [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return Fraction(len(set(grams)), len(grams)) if grams else Fraction(0)


@pytest.mark.parametrize("n", [1, 2, 3, 9, np.int64(2)])
def test_distinct_n_against_a_set_count(n):
    texts = ["a b a b", "a b", "", "   ", "x\ty\nz  x", "a b a b"]
    assert distinct_n(texts, n) == float(naive_distinct(texts, int(n)))
    assert distinct_n([], n) == 0.0


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "2"])
def test_distinct_n_bad_n(n):
    """n = 2.0 raised TypeError inside range()."""
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["a b c"], n)


def test_distinct_n_one_string_is_not_a_list():
    """distinct_n('a b a b', 1) read each character as a text and gave 0.5."""
    with pytest.raises(ValueError, match="list of strings"):
        distinct_n("a b a b", 1)


def exact_mean_se(values):
    v = [Fraction(x) for x in values]
    n = len(v)
    mean = sum(v) / n
    if n == 1:
        return float(mean), 0.0
    var = sum((x - mean) ** 2 for x in v) / (n - 1)
    return float(mean), float(mpmath.sqrt(mpmath.mpf(var.numerator) / var.denominator / n))


@pytest.mark.parametrize(
    "values", [[2.5], [1, 2, 4], [0.25, 0.5, 1e300], [1e-320, 0.0], np.array([[1.0, 3.0]])]
)
def test_mean_and_se_against_fractions(values):
    """[0.25, 0.5, 1e300] gave SE inf ((v − mean)² overflows); the SE is 3.3e299."""
    flat = np.asarray(values, dtype=float).reshape(-1).tolist()
    mean, se = exact_mean_se(flat)
    got = mean_and_se(values)
    assert got[0] == pytest.approx(mean, rel=1e-14)
    assert got[1] == pytest.approx(se, rel=1e-14)
    assert all(type(x) is float for x in got)


def test_mean_and_se_non_finite_and_empty():
    mean, se = mean_and_se([1.0, math.inf])
    assert mean == math.inf and math.isnan(se)
    with pytest.raises(ValueError, match="at least one value"):
        mean_and_se([])


def test_seed_statistics_against_loops():
    evals = [{"kl": 0.1, "gold": 1.0}, {"kl": 0.3, "gold": 2.0}, {"kl": 0.2, "gold": 4.0}]
    other = [{"kl": 0.0, "gold": 1.5}, {"kl": 0.1, "gold": 1.0}, {"kl": 0.5, "gold": 2.0}]
    got = seed_mean(evals, ["kl", "gold"])
    assert got["n_seeds"] == 3
    for key in ("kl", "gold"):
        mean, se = exact_mean_se([e[key] for e in evals])
        assert got[key] == pytest.approx(mean) and got[f"{key}_se"] == pytest.approx(se)
    one = seed_mean(evals[:1], ["kl"])
    assert one == {"n_seeds": 1, "kl": 0.1, "kl_se": 0.0}
    diff = exact_mean_se([x["gold"] - y["gold"] for x, y in zip(evals, other, strict=True)])
    assert seed_difference(evals, other, "gold") == pytest.approx(diff)
    with pytest.raises(ValueError, match="at least one seed"):
        seed_mean([], ["kl"])
    with pytest.raises(ValueError, match="paired by seed"):
        seed_difference(evals, other[:2], "kl")
    with pytest.raises(ValueError, match="at least one value"):
        seed_difference([], [], "kl")


def test_pool_baseline_against_loops():
    pool = [
        {"reward": [0.5, 1.0], "gold": np.array([1.0, 2.0]), "texts": ["a", "b"]},
        {"reward": torch.tensor([0.0]), "gold": [3.0], "texts": ["c"]},
    ]
    got = pool_baseline(pool)
    assert got["n"] == 3
    for key, values in (("reward", [0.5, 1.0, 0.0]), ("gold", [1.0, 2.0, 3.0])):
        mean, se = exact_mean_se(values)
        assert got[key] == pytest.approx(mean) and got[f"{key}_se"] == pytest.approx(se)
    with pytest.raises(ValueError, match="at least one value"):
        pool_baseline([])


def test_heldout_metrics_against_the_same_draws():
    policy, tok = add_lora(tiny_llama(), CONFIG), CharTokenizer()
    out = evaluate_policy(policy, tok, PROMPTS[:1], a_reward, CONFIG, seed=3)
    texts = out["texts"]
    columns = {
        "reward": out["reward"].tolist(), "gold": [float(len(t)) for t in texts],
        "kl": out["kl"].tolist(), "ref_nll": out["ref_nll"].tolist(),
        "length": out["length"].tolist(),
    }  # fmt: skip
    for gold_form, keep_texts in ((np.array, 100),):  # one call: each costs ~1.3 s

        def gold(texts, form=gold_form):
            return form([float(len(t)) for t in texts])

        got = heldout_metrics(policy, tok, PROMPTS[:1], a_reward, gold, CONFIG, seed=3,
                              keep_texts=keep_texts)  # fmt: skip
        assert got["n"] == len(texts) == CONFIG.num_generations
        assert got["texts"] == texts[:keep_texts]
        for name, values in columns.items():
            mean, se = exact_mean_se(values)
            assert got[name] == pytest.approx(mean, rel=1e-12, abs=1e-12)
            assert (f"{name}_se" in got) == (name in SE_METRICS)
            if name in SE_METRICS:
                assert got[f"{name}_se"] == pytest.approx(se, rel=1e-9, abs=1e-12)
        assert got["distinct2"] == float(naive_distinct(texts, 2))
        assert all(type(v) in (float, int) for k, v in got.items() if k != "texts")


def test_is_reference():
    model = tiny_llama()
    assert not is_reference(model)  # no LoRA at all
    policy = add_lora(model, CONFIG)
    assert is_reference(policy)  # B = 0 at the start
    with torch.no_grad():
        next(p for n, p in policy.named_parameters() if "lora_B" in n)[0, 0] = 1e-30
    assert not is_reference(policy)
