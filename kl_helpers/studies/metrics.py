"""Held-out evaluation of a classifier's predicted distributions: accuracy, NLL, ECE, entropy, KL.

Every function takes class probabilities ``probs`` of shape ``(N, C)`` (rows on the simplex) and,
where needed, integer ``labels`` ``(N,)`` or the reference's probabilities ``(N, C)``; each
returns a 0-d float64 tensor. Information quantities are in nats. Introduced in notebook 07.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kl_helpers._validate import as_float_tensor, check_probabilities, check_same_shape, integer
from kl_helpers.divergences import entropy, kl_divergence


def _probs(probs: object) -> torch.Tensor:
    p = as_float_tensor(probs).to(torch.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {tuple(p.shape)}")
    if p.shape[0] == 0:
        raise ValueError("probs is empty: nothing to evaluate")
    check_probabilities(p, "probs")
    return p


def _labels(labels: object, probs: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(labels)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.shape != probs.shape[:1]:
        raise ValueError(f"labels must have shape ({probs.shape[0]},), got {tuple(y.shape)}")
    if (y < 0).any() or (y >= probs.shape[1]).any():
        raise ValueError(f"labels must be in [0, {probs.shape[1] - 1}]")
    return y.long()


def accuracy(probs: object, labels: object) -> torch.Tensor:
    """Fraction of rows whose arg-max class is the label (ties go to the lowest index)."""
    p = _probs(probs)
    y = _labels(labels, p)
    return (p.argmax(dim=1) == y).double().mean()


def negative_log_likelihood(probs: object, labels: object) -> torch.Tensor:
    """Mean −log p(label), in nats (+inf if a label gets probability 0)."""
    p = _probs(probs)
    y = _labels(labels, p)
    return -torch.log(p.gather(1, y[:, None])).mean()


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins: edges ``(B+1,)``; count, accuracy, confidence ``(B,)``.

    Bin b holds the rows whose confidence (max probability) lies in (edges[b], edges[b+1]];
    the first bin also holds confidence 0. Each edge is b/B rounded once (the float nearest it;
    ``torch.linspace`` gave 0.30000000000000004 for 3/10). Empty bins have count 0 and NaN
    accuracy/confidence.
    """

    edges: torch.Tensor
    count: torch.Tensor
    accuracy: torch.Tensor
    confidence: torch.Tensor


def reliability_bins(probs: object, labels: object, n_bins: int = 10) -> ReliabilityBins:
    """Bin the predictions by confidence and measure each bin's accuracy and mean confidence.

    ``n_bins`` is an int ≥ 1 (Python, NumPy or a 0-d tensor; ValueError for 2.0 or True)."""
    try:
        n_bins = integer(n_bins, "n_bins")
    except ValueError:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}") from None
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p = _probs(probs)
    y = _labels(labels, p)
    conf, pred = p.max(dim=1)
    correct = (pred == y).double()
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    index = (torch.bucketize(conf, edges[1:-1], right=False)).clamp(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins).double()
    acc_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=conf, minlength=n_bins)
    nan = torch.full_like(count, float("nan"))
    return ReliabilityBins(
        edges=edges,
        count=count,
        accuracy=torch.where(count > 0, acc_sum / count.clamp(min=1), nan),
        confidence=torch.where(count > 0, conf_sum / count.clamp(min=1), nan),
    )


def expected_calibration_error(probs: object, labels: object, n_bins: int = 10) -> torch.Tensor:
    """ECE = Σ_b (n_b/N)·|accuracy_b − confidence_b| over equal-width confidence bins."""
    bins = reliability_bins(probs, labels, n_bins)
    used = bins.count > 0
    gap = (bins.accuracy[used] - bins.confidence[used]).abs()
    return (bins.count[used] * gap).sum() / bins.count.sum()


def mean_entropy(probs: object) -> torch.Tensor:
    """Mean Shannon entropy of the predicted distributions, in nats."""
    return entropy(_probs(probs)).mean()


def _ref(reference: object, p: torch.Tensor) -> torch.Tensor:
    r = _probs(reference)
    check_same_shape(p, r, ("probs", "reference"))
    return r


def mean_forward_kl_to_reference(probs: object, reference: object) -> torch.Tensor:
    """Mean forward KL(reference‖model) per row, in nats (expectation under the reference)."""
    p = _probs(probs)
    return kl_divergence(_ref(reference, p), p).mean()


def mean_reverse_kl_to_reference(probs: object, reference: object) -> torch.Tensor:
    """Mean reverse KL(model‖reference) per row, in nats (expectation under the model)."""
    p = _probs(probs)
    return kl_divergence(p, _ref(reference, p)).mean()


Metric = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# name -> (what it is with its unit, f(probs, labels, reference)); "higher is better" is only
# accuracy. The notebooks loop over this table instead of naming each metric.
METRICS: dict[str, tuple[str, Metric]] = {
    "accuracy": ("accuracy", lambda p, y, r: accuracy(p, y)),
    "nll": ("NLL (nats)", lambda p, y, r: negative_log_likelihood(p, y)),
    "ece": ("ECE (10 bins)", lambda p, y, r: expected_calibration_error(p, y)),
    "entropy": ("mean entropy (nats)", lambda p, y, r: mean_entropy(p)),
    "kl_fwd": ("KL(ref‖model) (nats)", lambda p, y, r: mean_forward_kl_to_reference(p, r)),
    "kl_rev": ("KL(model‖ref) (nats)", lambda p, y, r: mean_reverse_kl_to_reference(p, r)),
}


def evaluate(probs: object, labels: object, reference: object) -> dict[str, float]:
    """Every metric in ``METRICS`` for one set of predictions, as plain floats."""
    p = _probs(probs)
    y = _labels(labels, p)
    r = _ref(reference, p)
    return {name: fn(p, y, r).item() for name, (_, fn) in METRICS.items()}
