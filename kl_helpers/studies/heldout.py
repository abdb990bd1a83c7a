"""Held-out scores with their uncertainty, and the constant baselines a classifier must beat.

A classifier "knows something" only if it beats what a constant answer scores. Two constants:
the **majority class** (always the most frequent training label, with probability 1: its
accuracy is that class's share, its NLL infinite) and the **class prior** (the training label
frequencies for every input: the best constant in NLL, with the majority's accuracy and
macro-F1). Every score comes with a standard error over the held-out examples, and differences
between two classifiers on the same examples with a *paired* standard error (the per-example
differences, or the same bootstrap resamples for both), which is what a claim such as "within
2 SE of the reference" needs. Inputs: class probabilities ``probs`` ``(N, C)`` and integer
``labels`` ``(N,)``; outputs are plain floats on the CPU, information quantities in nats.
Introduced in notebook 08.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from kl_helpers._validate import as_float_tensor, check_probabilities, integer
from kl_helpers.divergences import kl_divergence
from kl_helpers.studies import metrics

N_BOOT = 2000  # bootstrap resamples of the held-out examples (macro-F1's SE)
BOOT_SEED = 0  # the resamples are the same for every classifier: paired comparisons


def _checked(probs: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    p = metrics._probs(probs)
    return p, metrics._labels(labels, p)


def class_prior(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Training label frequencies ``(n_classes,)`` float64 on the CPU (0 for an absent class).

    Raises ValueError for no labels, ``n_classes < 1`` or not an int, or a label outside
    ``[0, n_classes)`` (such as Hugging Face's -100).
    """
    n_classes = integer(n_classes, "n_classes")
    y = torch.as_tensor(list(labels), dtype=torch.long)
    if n_classes < 1 or y.numel() == 0:
        raise ValueError(f"need labels and n_classes >= 1, got {y.numel()} labels, {n_classes}")
    if (y < 0).any() or (y >= n_classes).any():
        raise ValueError(f"labels must be in [0, {n_classes - 1}], got {sorted(set(y.tolist()))}")
    return torch.bincount(y, minlength=n_classes).double() / y.numel()


def constant_probs(probs: torch.Tensor, n: int) -> torch.Tensor:
    """``probs`` ``(C,)`` repeated for ``n`` inputs: ``(n, C)`` float64, a constant classifier.

    ValueError unless ``probs`` is one distribution and ``n`` an int ≥ 0."""
    n = integer(n, "n")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    row = as_float_tensor(probs).to(torch.float64)
    if row.ndim != 1:
        raise ValueError(f"probs must be one distribution (C,), got shape {tuple(row.shape)}")
    check_probabilities(row, "probs")
    return row.expand(n, -1).clone()


def majority_probs(train_labels: Sequence[int], n: int, n_classes: int) -> torch.Tensor:
    """Probability 1 on the most frequent training label (lowest id on a tie), ``(n, C)``."""
    prior = class_prior(train_labels, n_classes)
    return constant_probs(torch.eye(n_classes, dtype=torch.float64)[prior.argmax()], n)


def per_example_nll(probs: object, labels: object) -> torch.Tensor:
    """−log p(label) per example ``(N,)`` float64, in nats (+inf where the label has p = 0)."""
    p, y = _checked(probs, labels)
    return -torch.log(p.gather(1, y[:, None]))[:, 0]


def per_example_kl(probs: object, reference: object) -> torch.Tensor:
    """KL(reference‖probs) per example ``(N,)`` float64, in nats (weights: the reference)."""
    p = metrics._probs(probs)
    return kl_divergence(metrics._ref(reference, p), p)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of ``values`` ``(N,)`` and its standard error, std (ddof 1) / √N (NaN for N = 1 and
    where a value is not finite: an infinite NLL has no standard error). Values up to the
    float64 maximum keep a finite SE (the squares are taken after scaling by max |value|)."""
    v = torch.as_tensor(values, dtype=torch.float64)
    if v.ndim != 1 or v.numel() == 0:
        raise ValueError(f"values must have shape (N,) with N >= 1, got {tuple(v.shape)}")
    if v.numel() == 1 or not torch.isfinite(v).all():
        return v.mean().item(), float("nan")
    scale = v.abs().max().clamp_min(torch.finfo(v.dtype).tiny)  # (v − mean)² overflows at 1e300
    std = (v / scale).std(unbiased=True) * scale
    return v.mean().item(), (std / math.sqrt(v.numel())).item()


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> torch.Tensor:
    """``(n_boot, n)`` indices drawn with replacement from ``range(n)`` (CPU generator).

    ``n``, ``n_boot`` and ``seed`` are ints (ValueError for 2.0 or True)."""
    n, n_boot, seed = integer(n, "n"), integer(n_boot, "n_boot"), integer(seed, "seed")
    if n < 1 or n_boot < 2:
        raise ValueError(f"need n >= 1 and n_boot >= 2, got n={n}, n_boot={n_boot}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (n_boot, n), generator=generator)


def macro_f1_of(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Macro-F1 of predicted ids ``pred`` against ``labels``, both ``(..., N)``: shape ``(...)``.

    Unweighted mean over the ``n_classes`` classes of 2·TP / (#predicted + #true), 0 for a class
    neither predicted nor present. Leading dimensions are batches (e.g. bootstrap resamples).
    ``pred`` and ``labels`` may be lists or arrays of ints.
    """
    pred, labels = torch.as_tensor(pred), torch.as_tensor(labels)
    n_classes = integer(n_classes, "n_classes")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    scores = []
    for c in range(n_classes):
        hit, true = pred == c, labels == c
        tp = (hit & true).sum(-1).double()
        denom = (hit.sum(-1) + true.sum(-1)).double()
        scores.append(torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp)))
    return torch.stack(scores).mean(0)


def scores_with_se(
    probs: object, labels: object, n_boot: int = N_BOOT, seed: int = BOOT_SEED
) -> dict[str, float]:
    """Accuracy (binomial SE), macro-F1 (bootstrap SE over examples) and NLL (nats, SE of the
    per-example mean; NaN SE when some label has probability 0) of one classifier."""
    p, y = _checked(probs, labels)
    pred = p.argmax(-1)
    acc, acc_se = mean_and_se((pred == y).double())
    acc_se = math.sqrt(acc * (1 - acc) / len(y))  # the binomial SE (ddof 0)
    idx = bootstrap_indices(len(y), n_boot, seed)
    f1_boot = macro_f1_of(pred[idx], y[idx], p.shape[1])
    nll, nll_se = mean_and_se(per_example_nll(p, y))
    return {
        "accuracy": acc,
        "accuracy_se": acc_se,
        "macro_f1": macro_f1_of(pred, y, p.shape[1]).item(),
        "macro_f1_se": f1_boot.std(unbiased=True).item(),
        "nll": nll,
        "nll_se": nll_se,
    }


def paired_difference(
    probs: object, other: object, labels: object, n_boot: int = N_BOOT, seed: int = BOOT_SEED
) -> dict[str, float]:
    """``probs`` minus ``other`` on the same examples, each with its paired SE: accuracy and NLL
    (nats) from the per-example differences, macro-F1 from the same bootstrap resamples for both;
    and the mean KL(other‖probs) (nats) with its SE."""
    p, y = _checked(probs, labels)
    q = metrics._ref(other, p)
    pred_p, pred_q = p.argmax(-1), q.argmax(-1)
    d_acc, d_acc_se = mean_and_se((pred_p == y).double() - (pred_q == y).double())
    d_nll, d_nll_se = mean_and_se(per_example_nll(p, y) - per_example_nll(q, y))
    idx = bootstrap_indices(len(y), n_boot, seed)
    c = p.shape[1]
    f1 = macro_f1_of(pred_p[idx], y[idx], c) - macro_f1_of(pred_q[idx], y[idx], c)
    kl, kl_se = mean_and_se(per_example_kl(p, q))
    return {
        "d_accuracy": d_acc,
        "d_accuracy_se": d_acc_se,
        "d_macro_f1": (macro_f1_of(pred_p, y, c) - macro_f1_of(pred_q, y, c)).item(),
        "d_macro_f1_se": f1.std(unbiased=True).item(),
        "d_nll": d_nll,
        "d_nll_se": d_nll_se,
        "kl": kl,
        "kl_se": kl_se,
    }


def baselines(
    train_labels: Sequence[int], test_labels: Sequence[int], n_classes: int
) -> pd.DataFrame:
    """The two constants' held-out scores (``scores_with_se`` columns), rows "majority class"
    (NLL +inf) and "class prior" (NLL = the cross-entropy of the test labels under the prior)."""
    n = len(test_labels)
    rows = {
        "majority class": majority_probs(train_labels, n, n_classes),
        "class prior": constant_probs(class_prior(train_labels, n_classes), n),
    }
    return pd.DataFrame({k: scores_with_se(p, list(test_labels)) for k, p in rows.items()}).T
