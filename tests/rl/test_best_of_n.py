"""Tests of kl_helpers.rl.best_of_n against brute-force enumeration of all N-tuples of draws."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kl_helpers.rl.best_of_n import (
    best_of_n_kl,
    best_of_n_kl_bound,
    best_of_n_pool,
    best_of_n_probs,
    best_of_n_summary,
    one_token_responses,
    uniform_pool_kl,
)


def enumerate_best_of_n(q: list[float], r: list[float], n: int) -> list[float]:
    """π_BoN by brute force: every N-tuple of draws with its probability; the kept draw is a
    uniformly random one among the positions holding the maximal reward."""
    p = [0.0] * len(q)
    for draw in itertools.product(range(len(q)), repeat=n):
        weight = math.prod(q[i] for i in draw)
        best = max(r[i] for i in draw)
        winners = [i for i in draw if r[i] == best]
        for i in winners:
            p[i] += weight / len(winners)
    return p


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


CASES = [
    ([0.5, 0.5], [0.0, 1.0]),
    ([0.1, 0.2, 0.3, 0.4], [3.0, 1.0, 2.0, 0.5]),
    ([0.25, 0.25, 0.3, 0.2], [1.0, 1.0, 2.0, 0.0]),  # a tie below the best
    ([0.2, 0.3, 0.1, 0.4], [2.0, 2.0, 1.0, 2.0]),  # a three-way tie at the top
    ([0.6, 0.0, 0.4], [0.0, 5.0, 1.0]),  # the best outcome has π_ref = 0
]


@pytest.mark.parametrize(("q", "r"), CASES)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_best_of_n_matches_enumeration_with_ties(q, r, n):
    expected = enumerate_best_of_n(q, r, n)
    got = best_of_n_probs(q, r, n)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)
    assert best_of_n_kl(q, r, n) == pytest.approx(kl(expected, q), abs=1e-12)
    assert best_of_n_kl(q, r, n) <= best_of_n_kl_bound(n) + 1e-12


def test_two_equally_likely_responses_stay_below_the_bound():
    # distinct rewards, no ties: π_BoN = (1/4, 3/4), KL = 0.131 nats, the bound 0.193
    assert best_of_n_kl([0.5, 0.5], [0.0, 1.0], 2) == pytest.approx(
        0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-12
    )
    assert best_of_n_kl([0.5, 0.5], [0.0, 1.0], 2) == pytest.approx(0.1308, abs=1e-4)
    assert best_of_n_kl_bound(2) == pytest.approx(0.1931, abs=1e-4)


def test_the_bound_is_reached_only_as_every_probability_vanishes():
    n = 8
    gaps = [best_of_n_kl_bound(n) - uniform_pool_kl(m, n) for m in (16, 64, 256, 4096)]
    assert all(g > 0 for g in gaps) and gaps == sorted(gaps, reverse=True) and gaps[-1] < 2e-3
    # one likely response (π_ref 0.5) that is the best keeps the KL far below the bound; the
    # same response ranked worst barely matters (Best-of-8 keeps it with probability 0.5^8)
    q = torch.cat([torch.tensor([0.5]), torch.full((500,), 0.5 / 500)])
    r = torch.cat([torch.tensor([3.0]), torch.linspace(1, 2, 500)])
    assert best_of_n_kl(q, r, n) < best_of_n_kl_bound(n) - 0.5
    r[0] = 0.0
    assert best_of_n_kl(q, r, n) > best_of_n_kl_bound(n) - 0.01


def test_uniform_pool_kl_is_the_pool_formula_and_reproduces_the_old_table():
    rewards = torch.randn(32, generator=torch.Generator().manual_seed(0))
    texts = [str(i) for i in range(32)]
    for n, old in zip([2, 4, 8, 16], [0.1927, 0.6356, 1.2018, 1.8247], strict=True):
        assert uniform_pool_kl(32, n) == pytest.approx(best_of_n_pool(rewards, texts, n)["kl"])
        assert uniform_pool_kl(32, n) == pytest.approx(old, abs=1e-4)
        q = torch.full((32,), 1 / 32, dtype=torch.float64)
        assert best_of_n_kl(q, rewards, n) == pytest.approx(uniform_pool_kl(32, n), abs=1e-12)


def test_pool_with_duplicates_is_the_discrete_formula_on_its_counts():
    rewards, texts = torch.tensor([0.3, 1.0, 0.3, 2.0, 1.0]), ["a", "b", "a", "c", "d"]
    pool = best_of_n_pool(rewards, texts, 3)
    q = torch.tensor([2, 1, 1, 1], dtype=torch.float64) / 5  # a, b, c, d
    r = torch.tensor([0.3, 1.0, 2.0, 1.0])
    assert best_of_n_kl(q, r, 3) == pytest.approx(pool["kl"], abs=1e-12)


def test_summary_rows_and_errors():
    rows = best_of_n_summary([0.5, 0.5], [0.0, 1.0], [1, 2], {"gold": [1.0, 0.0]})
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-12) and rows[1]["gold"] == pytest.approx(0.25)
    assert rows[1]["reward"] == pytest.approx(0.75) and rows[1]["max_ref_prob"] == 0.5
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        best_of_n_probs([0.5, 0.5], [0.0, 1.0, 2.0], 2)
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n_probs([0.5, 0.5], [0.0, 1.0], 0)
    with pytest.raises(ValueError, match="sum to 1"):
        best_of_n_kl([0.5, 0.6], [0.0, 1.0], 2)
    with pytest.raises(ValueError, match="finite"):
        best_of_n_kl([0.5, 0.5], [0.0, math.inf], 2)


def test_one_token_responses_are_the_next_token_distribution():
    from kl_helpers.llm.model import encode_prompts
    from tests.rl.test_loop import CharTokenizer, tiny_llama

    model, tok = tiny_llama(), CharTokenizer()
    ids, attn = encode_prompts(tok, ["ab"])
    with torch.no_grad():
        expected = torch.softmax(
            model(input_ids=ids, attention_mask=attn).logits[0, -1].double() / 0.7, -1
        )
    out = one_token_responses(model, tok, "ab", temperature=0.7)
    assert out["probs"].dtype == torch.float64 and out["kept_mass"] == pytest.approx(1.0)
    torch.testing.assert_close(out["probs"], expected[out["ids"]])
    assert len(out["texts"]) == expected.numel() == len(set(out["ids"].tolist()))
    nucleus = one_token_responses(model, tok, "ab", temperature=0.7, top_p=0.5)
    k = len(nucleus["texts"])
    top = torch.sort(expected, descending=True).values
    assert top[: k - 1].sum() < 0.5 <= top[:k].sum() == pytest.approx(nucleus["kept_mass"])
    torch.testing.assert_close(nucleus["probs"], top[:k] / top[:k].sum())

    class Tok(CharTokenizer):  # takes add_special_tokens, as a transformers tokenizer does
        def __call__(self, text, add_special_tokens=True):
            return super().__call__(text)

    tok = Tok()
    prefixed = one_token_responses(model, tok, "ab", response_prefix="ba")
    ids_b, attn_b = ids.clone(), attn.clone()
    ids_b = torch.cat(
        [ids_b, torch.as_tensor([tok("ba", add_special_tokens=False)["input_ids"]])], 1
    )
    attn_b = torch.cat(
        [attn_b, torch.ones(1, ids_b.shape[1] - attn_b.shape[1], dtype=attn.dtype)], 1
    )
    with torch.no_grad():
        after = torch.softmax(
            model(input_ids=ids_b, attention_mask=attn_b).logits[0, -1].double(), -1
        )
    torch.testing.assert_close(prefixed["probs"], after[prefixed["ids"]])
    with pytest.raises(ValueError, match="temperature"):
        one_token_responses(model, tok, "ab", temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        one_token_responses(model, tok, "ab", top_p=0)
