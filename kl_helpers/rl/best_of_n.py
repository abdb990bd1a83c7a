"""Best-of-N sampling from a discrete reference, exactly: its distribution, its KL to the
reference and the bound log N − (N−1)/N; and the responses of one token, whose reference
probabilities a causal LM gives exactly. Introduced in notebook 11.

Best-of-N draws N responses i.i.d. from π_ref and keeps the one with the highest reward (ties
broken uniformly at random among the drawn maxima). With F(y) = π_ref(reward ≤ r(y)) and
F(y⁻) = π_ref(reward < r(y)), the kept response falls in the block of responses tied with y with
probability F(y)^N − F(y⁻)^N, and by symmetry each member of the block gets its π_ref share of
that: π_BoN(y) = π_ref(y)/π_ref(block) · (F(y)^N − F(y⁻)^N). Beirami et al. (2024, "Theoretical
guarantees on the best-of-n alignment policy") show KL(π_BoN‖π_ref) ≤ log N − (N−1)/N, with
equality only in the limit where every response's probability goes to 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kl_helpers._validate import as_float_tensor, check_same_shape, discrete_outcomes
from kl_helpers.llm.model import encode_prompts
from kl_helpers.reference import evaluated


def best_of_n_kl_bound(n: int) -> float:
    """log n − (n − 1)/n (nats): Beirami et al.'s (2024) upper bound on KL(π_BoN‖π_ref), reached
    only when no single response carries noticeable probability under π_ref. 0 for n = 1."""
    n = _check_n(n)
    return math.log(n) - (n - 1) / n


_MAX_POWER = 2**63 - 1  # x ** n for x ≤ 1 − 2⁻⁵³ is 0 in float64 from here on: larger n, same


def _check_n(n: int) -> int:
    """``n`` as an int ≥ 1 (2.0, NumPy and 0-d tensor integers included); ValueError naming it
    for anything else (bool, NaN, ±inf, 2.5, a string)."""
    try:
        ok = not isinstance(n, (bool, str, bytes)) and int(n) == n and n >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def best_of_n_probs(ref_probs: object, rewards: object, n: int) -> torch.Tensor:
    """π_BoN over the outcomes of ``ref_probs`` (1-D, sums to 1), exactly; float64, same shape.

    ``rewards`` (same shape) rank the outcomes; outcomes with equal rewards form one block, which
    gets F^n − F⁻^n and shares it in proportion to π_ref (see the module docstring); F of the
    best block is 1 exactly, so any n (however large) gives a distribution. Raises ValueError for
    mismatched shapes, non-finite rewards or an n that is not a positive integer.
    """
    n = min(_check_n(n), _MAX_POWER)
    q, r = discrete_outcomes(ref_probs, rewards)
    order = torch.argsort(r, stable=True)
    q_sorted, r_sorted = q[order], r[order]
    _, block = torch.unique_consecutive(r_sorted, return_inverse=True)
    mass = torch.zeros(int(block.max()) + 1, dtype=torch.float64).index_add_(0, block, q_sorted)
    upper = torch.cumsum(mass, 0).clamp(max=1.0)  # F at each block
    upper[-1] = 1.0  # not 1 − 1e-16 from rounding, which the power of a huge n sends to 0
    lower = torch.cat([upper.new_zeros(1), upper[:-1]])  # F⁻ at each block
    block_p = upper**n - lower**n
    share = torch.where(mass[block] > 0, q_sorted / mass[block], torch.zeros_like(q_sorted))
    p = torch.empty_like(q)
    p[order] = block_p[block] * share
    return p


def best_of_n_kl(ref_probs: object, rewards: object, n: int) -> float:
    """KL(π_BoN‖π_ref) = Σ π_BoN log(π_BoN/π_ref) in nats, exactly (float64); ≥ 0."""
    q, r = discrete_outcomes(ref_probs, rewards)
    p = best_of_n_probs(q, r, n)
    keep = p > 0
    return max(float((p[keep] * (p[keep].log() - q[keep].log())).sum()), 0.0)


def uniform_pool_kl(m: int, n: int) -> float:
    """KL(π_BoN‖π_pool) for a pool of ``m`` distinct responses at 1/m each with distinct rewards:
    p_k = (k/m)^n − ((k−1)/m)^n for the k-th worst, so it depends on m and n only (nats)."""
    m, n = _check_n(m), min(_check_n(n), _MAX_POWER)
    k = torch.arange(1, m + 1, dtype=torch.float64)
    p = (k / m) ** n - ((k - 1) / m) ** n
    keep = p > 0
    return float((p[keep] * (p[keep] * m).log()).sum())


def best_of_n_summary(
    ref_probs: object, rewards: object, ns: Sequence[int], values: dict[str, object] | None = None
) -> list[dict[str, float]]:
    """Per N: ``kl`` (nats), ``bound``, the expected ``reward`` under π_BoN and the expected
    ``values`` (e.g. a gold reward, same shape as ``rewards``); also ``max_ref_prob``, the largest
    single outcome's π_ref, which decides how far below the bound the KL stays."""
    q, r = discrete_outcomes(ref_probs, rewards)
    extra = {k: as_float_tensor(v).to(torch.float64) for k, v in (values or {}).items()}
    for name, v in extra.items():
        check_same_shape(v, r, (name, "rewards"))
    rows = []
    for n in ns:
        p = best_of_n_probs(q, r, n)
        row = {"N": int(n), "kl": best_of_n_kl(q, r, n), "bound": best_of_n_kl_bound(n)}
        row["reward"] = float((p * r).sum())
        row.update({k: float((p * v).sum()) for k, v in extra.items()})
        row["max_ref_prob"] = float(q.max())
        rows.append(row)
    return rows


def one_token_responses(
    model, tokenizer, prompt: str, temperature: float = 1.0, top_p: float = 1.0,
    response_prefix: str = "",
) -> dict:  # fmt: skip
    """π_ref of every one-token response to ``prompt`` (chat template, assistant turn), exactly;
    with ``response_prefix``, of the token that follows that start of the assistant's answer.

    One forward pass of ``model`` (no gradient, eval mode; every submodule's own mode is restored
    afterwards) gives softmax(logits / temperature) over the vocabulary (uniform for
    ``temperature=math.inf``; tokens whose probability underflows to 0 are left out); ``top_p``
    < 1 keeps the smallest set of most likely tokens whose mass reaches ``top_p`` and
    renormalises (nucleus sampling's distribution: still exact). Returns
    ``probs`` (K,) float64 on the CPU summing to 1, most likely first, the token ``ids`` (K,),
    the ``texts`` decoded as the RL loop decodes a response (special tokens such as EOS decode
    to "", an empty response) and ``kept_mass``, the mass of the kept tokens before renormalising.
    """
    if not temperature > 0:  # NaN too
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    device = next(model.parameters()).device
    ids, attn = encode_prompts(tokenizer, [prompt])
    if response_prefix:
        extra = torch.as_tensor(tokenizer(response_prefix, add_special_tokens=False)["input_ids"])
        ids = torch.cat([ids, extra.reshape(1, -1).to(ids.dtype)], dim=1)
        attn = torch.cat([attn, torch.ones_like(ids[:, attn.shape[1] :])], dim=1)
    with evaluated(model), torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits[0, -1]
    probs = torch.softmax(logits.double().cpu() / temperature, dim=-1)
    sorted_p, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_p, 0) - sorted_p  # mass of the tokens ranked above each one
    keep = int((before < top_p).sum()) if top_p < 1 else int((sorted_p > 0).sum())
    kept, token_ids = sorted_p[:keep], order[:keep]
    texts = tokenizer.batch_decode([[int(i)] for i in token_ids], skip_special_tokens=True)
    return {
        "probs": kept / kept.sum(), "ids": token_ids, "texts": list(texts),
        "kept_mass": float(kept.sum()),
    }  # fmt: skip


def best_of_n_pool(rewards: torch.Tensor, texts: list[str], n: int) -> dict[str, torch.Tensor]:
    """Best-of-``n`` drawn with replacement from a pool of M reference samples, exactly.

    Identical ``texts`` are merged into one response (q = its share of the pool); responses are
    ranked by reward and the best of n draws lands on the responses up to rank k with probability
    (c_k/M)^n, so p_k = (c_k/M)^n − (c_{k−1}/M)^n (c_k: pool samples up to rank k). Distinct
    responses with equal rewards share their block's probability in proportion to their counts.
    Returns the merged responses' ``p`` (BoN), ``q`` (pool), ``reward`` and ``index`` (one pool
    row per response: the text's first, whose reward the merged response takes), sorted by
    reward, and ``kl`` = Σ p log(p/q) (nats).
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float64).reshape(-1)
    if rewards.numel() != len(texts) or not texts:
        raise ValueError(f"need one reward per text, got {rewards.numel()} and {len(texts)}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite")
    n = min(_check_n(n), _MAX_POWER)
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
        counts[t] = counts.get(t, 0) + 1
    index = torch.tensor(list(first.values()))
    count = torch.tensor([counts[t] for t in first], dtype=torch.float64)
    r = rewards[index]
    order = torch.argsort(r, stable=True)
    index, count, r = index[order], count[order], r[order]
    m = float(len(texts))
    # ties in reward form one block: the block's mass split by counts
    _, block = torch.unique_consecutive(r, return_inverse=True)
    block_count = torch.zeros(int(block.max()) + 1, dtype=torch.float64).index_add_(0, block, count)
    upper = torch.cumsum(block_count, 0) / m
    block_p = upper**n - torch.cat([upper.new_zeros(1), upper[:-1]]) ** n
    p = block_p[block] * count / block_count[block]
    q = count / m
    keep = p > 0
    kl = max(float((p[keep] * (p[keep] / q[keep]).log()).sum()), 0.0)  # ≥ 0 up to rounding
    return {"p": p, "q": q, "reward": r, "index": index, "kl": kl}


def best_of_n_pool_kl(rewards: torch.Tensor, texts: list[str], n: int) -> float:
    """KL(BoN-``n`` ‖ pool) = Σ p log(p/q) over :func:`best_of_n_pool`'s merged responses; nats."""
    return best_of_n_pool(rewards, texts, n)["kl"]


def best_of_n_table(pool: Sequence[dict], ns: Sequence[int]):
    """Per N, means over prompts: Best-of-N's KL to the pool (exact, nats), the bound
    log N − (N−1)/N, the KL a pool of M distinct samples gives whatever the rewards
    (``best_of_n.uniform_pool_kl``), and the expected proxy and gold rewards (exact over the
    pool)."""
    import pandas as pd

    rows = []
    for n in ns:
        kls, proxy, gold, ties, uniform = [], [], [], [], []
        for entry in pool:
            dist = best_of_n_pool(torch.tensor(entry["reward"]), entry["texts"], n)
            p = dist["p"]
            kls.append(dist["kl"])
            proxy.append(float((p * dist["reward"]).sum()))
            g = torch.tensor(entry["gold"], dtype=torch.float64)[dist["index"]]
            gold.append(float((p * g).sum()))
            ties.append(1 - len(p) / len(entry["texts"]))
            uniform.append(uniform_pool_kl(len(entry["texts"]), n))
        rows.append({
            "N": n, "kl": sum(kls) / len(kls), "bound": best_of_n_kl_bound(n),
            "M distinct (M, N only)": sum(uniform) / len(uniform),
            "reward": sum(proxy) / len(proxy), "gold": sum(gold) / len(gold),
            "duplicate share": sum(ties) / len(ties),
        })  # fmt: skip
    return pd.DataFrame(rows)
