"""The KL-regularised optimum π*_β ∝ π_ref·exp(r/β) on a discrete reference, exactly, for every β:
its KL to π_ref and its expected rewards are finite sums. On a pool of M reference samples at 1/M
each the weights are softmax(r_i/β) over the pool; the KL is then at most log M. Notebook 05
derives the optimum; notebook 11 draws its reward–KL frontier next to Best-of-N (Yang et al. 2024,
"Asymptotics of language model alignment": Best-of-N is asymptotically equivalent to it) and
notebook 10's RL runs. Introduced in notebook 11.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kl_helpers._validate import as_float_tensor, check_same_shape, discrete_outcomes, kl_weight


def _check_beta(beta: float) -> float:
    return kl_weight(beta)


def optimum_summary(
    ref_probs: object, rewards: object, beta: float, values: dict[str, object] | None = None
) -> dict[str, float]:
    """KL(π*‖π_ref) (nats), E_π*[r] and E_π*[v] for each of ``values``, exactly (float64).

    ``ref_probs`` (K,) sums to 1; ``rewards`` and each of ``values`` (K,). π* = softmax(log π_ref +
    r/β); KL = E_π*[r]/β − log Z with log Z = logsumexp(log π_ref + r/β), which stays finite as
    β → 0 (π* → the best response(s) π_ref supports; KL → −log π_ref(best)). β = ``math.inf`` gives
    π_ref (KL 0). Also returns ``max_weight``, the largest probability under π*. "Exactly" up
    to float64 rounding: the KL's error is a few 1e-16 nats absolute, so as β → ∞, where the KL
    goes to 0 like Var_π_ref(r)/2β², its relative error grows (β = 1e8: KL ≈ 3e-16, error ≈ 8e-17).
    """
    beta = _check_beta(beta)
    q, r = discrete_outcomes(ref_probs, rewards)
    extra = {k: as_float_tensor(v).to(torch.float64) for k, v in (values or {}).items()}
    for name, v in extra.items():
        check_same_shape(v, r, (name, "rewards"))
    log_q = torch.log(q / q.sum())
    if math.isinf(beta):
        log_p, kl = log_q, 0.0
    else:
        shifted = log_q + (r - r.max()) / beta  # −inf where π_ref = 0
        log_p = shifted - torch.logsumexp(shifted, dim=0)
        p = log_p.exp()
        keep = p > 0
        kl = max(float((p[keep] * (log_p[keep] - log_q[keep])).sum()), 0.0)
    p = log_p.exp()
    out = {"beta": beta, "kl": kl, "reward": float((p * r).sum())}
    out.update({k: float((p * v).sum()) for k, v in extra.items()})
    out["max_weight"] = float(p.max())
    return out


def pool_optimum(
    rewards: object, beta: float, values: dict[str, object] | None = None
) -> dict[str, float]:
    """:func:`optimum_summary` with π_ref = the pool of M samples at 1/M each (weights
    softmax(r_i/β)); its KL = Σ w log(M w) ≤ log M. Identical texts need no merging: they have
    equal rewards, hence equal weights, and merging them leaves the KL unchanged."""
    r = as_float_tensor(rewards).to(torch.float64).reshape(-1)
    if r.numel() == 0:
        raise ValueError("the pool is empty")
    q = torch.full_like(r, 1.0 / r.numel())
    return optimum_summary(q, r, beta, values)


def pool_frontier(
    pools: Sequence[dict], betas: Sequence[float], value_keys: Sequence[str] = ("gold",)
) -> list[dict[str, float]]:
    """The exact optimum over each prompt's pool (``reward`` = the optimised reward, plus
    ``value_keys``, lists per entry as ``rl.runs.reference_pool`` returns them), averaged over the
    prompts, one row per β: ``beta``, ``kl`` (nats), ``reward``, each value key, and ``kl_cap``
    (the mean of log M: no policy over the pool can be further from it)."""
    if not pools:
        raise ValueError("need at least one pool")
    rows = []
    for beta in betas:
        per = [
            pool_optimum(e["reward"], beta, {k: e[k] for k in value_keys}) for e in pools
        ]  # fmt: skip
        row = {"beta": float(beta)}
        for key in ("kl", "reward", *value_keys):
            row[key] = sum(s[key] for s in per) / len(per)
        row["kl_cap"] = sum(math.log(len(e["reward"])) for e in pools) / len(pools)
        rows.append(row)
    return rows
