"""Held-out evaluation of an RL policy and statistics over seeds (notebooks 10 and 11).

``heldout_metrics``: proxy and gold reward, KL(π‖π_ref), the reference's NLL, length and
distinct-2 on held-out prompts, with standard errors; ``seed_mean`` / ``seed_difference``: the
spread over seeds (runs paired by seed); ``pool_baseline``: π_ref's step-0 baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kl_helpers._validate import integer
from kl_helpers.rl.loop import evaluate_policy
from kl_helpers.rl.loss import RLConfig


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams over ``texts`` (1 = no repetition); 0 if none.

    ``texts`` is a list of strings (one string alone raises ValueError: it would be read as
    one-character texts); ``n`` an int ≥ 1. Words are split on any whitespace.
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got one string")
    n = integer(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [
        tuple(words[i : i + n])
        for t in texts
        for words in [t.split()]
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


def heldout_metrics(
    policy, tokenizer, prompts: Sequence[str], proxy, gold, config: RLConfig, seed: int = 0,
    keep_texts: int = 4,
) -> dict:  # fmt: skip
    """Means over held-out responses: proxy and gold reward, KL(π‖π_ref) per response (nats),
    the reference's per-token NLL (nats/token), length (tokens), distinct-2, as Python floats
    (no tensors, whatever the policy's device); plus a few texts."""
    out = evaluate_policy(policy, tokenizer, prompts, proxy, config, seed)
    texts = out["texts"]
    values = {
        "reward": out["reward"], "gold": torch.as_tensor(gold(texts)).reshape(-1),
        "kl": out["kl"], "ref_nll": out["ref_nll"], "length": out["length"],
    }  # fmt: skip
    metrics = {}
    for name, v in values.items():
        mean, se = mean_and_se(v)
        metrics[name] = mean
        if name in SE_METRICS:
            metrics[f"{name}_se"] = se
    return {**metrics, "n": len(texts), "distinct2": distinct_n(texts, 2),
            "texts": list(texts[:keep_texts])}  # fmt: skip


SE_METRICS = ("reward", "gold", "kl", "ref_nll")  # heldout_metrics reports "<name>_se" for these


def mean_and_se(values) -> tuple[float, float]:
    """Mean and standard error (sample std / √n; 0 for n = 1) of a 1-D sequence, as floats.

    Values up to the float64 maximum keep a finite SE (squares taken after scaling by max |v|);
    a non-finite value gives a NaN SE."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("need at least one value")
    scale = v.abs().max().clamp_min(torch.finfo(v.dtype).tiny)  # (v − mean)² overflows at 1e300
    se = float((v / scale).std() * scale / v.numel() ** 0.5) if v.numel() > 1 else 0.0
    return float(v.mean()), se


def seed_mean(evals: Sequence[dict], keys: Sequence[str]) -> dict[str, float]:
    """Per key, the mean over seeds of per-seed evaluations (one dict per seed) and, as
    ``"<key>_se"``, its standard error over the seeds (std/√n; 0 for one seed): the band of a
    point that other seeds would move. Also ``"n_seeds"``. ValueError if ``evals`` is empty."""
    if not evals:
        raise ValueError("need the evaluation of at least one seed")
    out: dict[str, float] = {"n_seeds": len(evals)}
    for key in keys:
        out[key], out[f"{key}_se"] = mean_and_se([e[key] for e in evals])
    return out


def seed_difference(a: Sequence[dict], b: Sequence[dict], key: str) -> tuple[float, float]:
    """Mean over seeds of ``a[i][key] − b[i][key]`` for runs paired by seed (same LoRA start,
    prompt order and sampling seeds; the i-th of each list is the same seed) and its standard
    error over the seeds. ValueError if the lists differ in length or are empty."""
    if len(a) != len(b):
        raise ValueError(f"paired by seed: got {len(a)} and {len(b)} evaluations")
    return mean_and_se([x[key] - y[key] for x, y in zip(a, b, strict=True)])


def pool_baseline(pool: Sequence[dict]) -> dict[str, float]:
    """π_ref's mean proxy ``reward`` and ``gold`` over every pool sample, with standard errors
    (``reward_se``, ``gold_se``) and the sample count ``n``: the step-0 baseline."""
    out: dict[str, float] = {}
    for key in ("reward", "gold"):
        out[key], out[f"{key}_se"] = mean_and_se([x for e in pool for x in e[key]])
    out["n"] = sum(len(e["texts"]) for e in pool)
    return out


def is_reference(policy) -> bool:
    """True when every LoRA B matrix of ``policy`` is zero (π = π_ref, e.g. before the first
    update): an evaluation of it can be shared by every run."""
    found = False
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            found = True
            if bool(p.detach().abs().max() > 0):
                return False
    return found
