"""kl_helpers.studies.metrics at its edges (issue 30): every metric against exact fractions or
scikit-learn / SciPy on ties, probability-0 labels, confidences on and one ulp past the bin edges,
one bin and many, float32/bfloat16/list/NumPy inputs, labels as NumPy/int8/list and outside [0, C)
(-100, C), and n_bins as 2.0/True/'2'/NumPy; ReliabilityBins' fields: shapes (B+1,) and (B,), each
edge the float nearest b/B (fractions), confidence 0 in the first bin, confidence 1 in the last, NaN
only in empty bins, counts summing to N, frozen."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.special import entr, rel_entr
from sklearn.metrics import accuracy_score, log_loss

from kl_helpers.studies.metrics import (
    METRICS,
    ReliabilityBins,
    accuracy,
    evaluate,
    expected_calibration_error,
    mean_entropy,
    mean_forward_kl_to_reference,
    mean_reverse_kl_to_reference,
    negative_log_likelihood,
    reliability_bins,
)

P = [[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [1.0, 0.0, 0.0], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7]]
Y = [1, 1, 0, 2, 0]
REF = [[1 / 3, 1 / 3, 1 / 3]] * 5


def exact_bins(probs, labels, n_bins):
    """(count, accuracy, confidence) per bin in fractions; bin b holds confidences in
    (e_b, e_{b+1}] with e_b the float nearest b/B, the first also 0; arg-max ties go low."""
    edges = [Fraction(b / n_bins) for b in range(n_bins + 1)]
    rows = [[] for _ in range(n_bins)]
    for p, y in zip(probs, labels, strict=True):
        conf = max(p)
        pred = p.index(conf)
        b = next(i for i in range(n_bins) if Fraction(conf) <= edges[i + 1] or i == n_bins - 1)
        rows[b].append((Fraction(conf), pred == y))
    return [
        (
            len(r),
            Fraction(sum(c for _, c in r), len(r)) if r else None,
            sum(x for x, _ in r) / len(r) if r else None,
        )
        for r in rows
    ]


def exact_ece(probs, labels, n_bins):
    n = len(labels)
    return float(
        sum(Fraction(k, n) * abs(a - c) for k, a, c in exact_bins(probs, labels, n_bins) if k)
    )


def test_accuracy_and_nll_against_sklearn():
    assert accuracy(P, Y).item() == accuracy_score(Y, np.argmax(P, axis=1))
    # ties go to the lowest index: row 0 predicts 0, row 3 predicts 2
    assert accuracy([[0.5, 0.5], [0.5, 0.5]], [0, 1]).item() == 0.5
    q = [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]
    assert negative_log_likelihood(q, [1, 2]).item() == pytest.approx(
        log_loss([1, 2], q, labels=[0, 1, 2]), rel=1e-14
    )
    assert negative_log_likelihood([[1.0, 0.0]], [1]).item() == math.inf


def test_label_and_input_forms():
    expected = accuracy(P, Y).item()
    for labels in (np.array(Y), torch.tensor(Y, dtype=torch.int8), tuple(Y)):
        assert accuracy(P, labels).item() == expected
    for probs in (np.array(P), torch.tensor(P, dtype=torch.float32), torch.tensor(P)):
        assert accuracy(probs, Y).item() == expected
        got = mean_entropy(probs).item()
        assert got == pytest.approx(float(np.mean(entr(np.array(P)).sum(1))), rel=1e-6)


@pytest.mark.parametrize("labels", [[1, 1, 0, 2, -100], [1, 1, 0, 2, 3], [1.0, 1, 0, 2, 0]])
def test_labels_outside_the_classes(labels):
    with pytest.raises(ValueError, match="labels must be"):
        accuracy(P, labels)
    with pytest.raises(ValueError, match="labels must be"):
        negative_log_likelihood(P, labels)


def row(conf, k=10):
    """A distribution over k classes whose maximum, at index 0, is ``conf`` (≥ 1/k)."""
    return [conf] + [(1 - conf) / (k - 1)] * (k - 1)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 100])
def test_reliability_and_ece_against_fractions(n_bins):
    """With 10 bins the edge 3/10 was torch.linspace's 0.30000000000000004, so a confidence of
    0.1 + 0.2 fell in (0.2, 0.3] although it exceeds the float nearest 3/10 (the 0.3 edge)."""
    confs = [0.1, 1.0]
    for b in range(1, n_bins + 1):
        edge = b / n_bins
        confs += [edge, np.nextafter(edge, 1.0), np.nextafter(edge, 0.0)]
    confs += torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).tolist()
    confs = [c for c in confs if 0.1 <= c <= 1.0]
    probs = [row(c) for c in confs]
    labels = [i % 3 for i in range(len(confs))]
    bins = reliability_bins(probs, labels, n_bins)
    assert bins.edges.tolist() == [b / n_bins for b in range(n_bins + 1)]
    expected = exact_bins(probs, labels, n_bins)
    assert bins.count.tolist() == [k for k, _, _ in expected]
    for got, (_, a, _) in zip(bins.accuracy.tolist(), expected, strict=True):
        assert math.isnan(got) if a is None else got == pytest.approx(float(a), rel=1e-15)
    for got, (_, _, c) in zip(bins.confidence.tolist(), expected, strict=True):
        assert math.isnan(got) if c is None else got == pytest.approx(float(c), rel=1e-14)
    ece = expected_calibration_error(probs, labels, n_bins).item()
    assert ece == pytest.approx(exact_ece(probs, labels, n_bins), rel=1e-13, abs=1e-16)


def test_a_confidence_one_ulp_past_an_edge():
    """0.1 + 0.2 (one ulp past 0.3) went to the bin (0.2, 0.3]."""
    past = 0.1 + 0.2
    assert past == np.nextafter(0.3, 1.0)
    bins = reliability_bins([row(0.3), row(past)], [0, 0], 10)
    assert bins.count.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("n_bins", [2.0, True, "2", 0, -1, None])
def test_n_bins_that_is_no_positive_int(n_bins):
    """n_bins = 2.0 raised TypeError in torch.linspace and True one in torch.bincount."""
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        reliability_bins(P, Y, n_bins)


def test_n_bins_as_numpy_or_tensor():
    expected = exact_ece(P, Y, 4)
    for n_bins in (np.int64(4), torch.tensor(4)):
        assert expected_calibration_error(P, Y, n_bins).item() == pytest.approx(expected)


def test_kl_to_reference_against_scipy():
    ref = [[0.25, 0.25, 0.5]] * 5
    p = [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7], [0.25, 0.25, 0.5], [0.6, 0.2, 0.2]]
    fwd = np.mean(rel_entr(np.array(ref), np.array(p)).sum(1))
    rev = np.mean(rel_entr(np.array(p), np.array(ref)).sum(1))
    assert mean_forward_kl_to_reference(p, ref).item() == pytest.approx(fwd, rel=1e-14)
    assert mean_reverse_kl_to_reference(p, ref).item() == pytest.approx(rev, rel=1e-14)
    # zeros: the model's 0 where the reference has mass is +inf forward, finite reverse
    assert mean_forward_kl_to_reference(P, REF).item() == math.inf
    rev0 = np.mean(rel_entr(np.array(P), np.array(REF)).sum(1))
    assert mean_reverse_kl_to_reference(P, REF).item() == pytest.approx(rev0, rel=1e-14)
    with pytest.raises(ValueError, match="shape mismatch"):
        mean_forward_kl_to_reference(P, REF[:4])


def test_evaluate_is_every_metric():
    got = evaluate(P, Y, REF)
    assert list(got) == list(METRICS)
    assert got["accuracy"] == accuracy(P, Y).item()
    assert got["ece"] == pytest.approx(exact_ece(P, Y, 10), rel=1e-14)
    assert got["kl_fwd"] == math.inf
    assert all(isinstance(v, float) for v in got.values())


def test_bad_tables():
    with pytest.raises(ValueError, match="probs is empty"):
        accuracy(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match=r"probs must have shape \(N, C\)"):
        accuracy([0.5, 0.5], [0])
    with pytest.raises(ValueError, match="rows must sum to 1"):
        accuracy([[0.5, 0.6]], [0])
    with pytest.raises(ValueError, match="labels must have shape"):
        accuracy(P, Y[:4])


# ----------------------------------------------------------------------------- ReliabilityBins


@pytest.mark.parametrize("n_bins", [1, 3, 10, 49])
def test_reliability_bins_fields(n_bins):
    # 2-class rows: confidences 0.5, 1 (on the last edge: the last bin) and 0.75
    confs = [0.5, 1.0, 0.75]
    bins = reliability_bins([[c, 1 - c] for c in confs], [0, 1, 0], n_bins)
    assert isinstance(bins, ReliabilityBins)
    assert bins.edges.shape == (n_bins + 1,)
    for name in ("count", "accuracy", "confidence"):
        assert getattr(bins, name).shape == (n_bins,), name
    for b, edge in enumerate(bins.edges.tolist()):
        assert Fraction(edge) == Fraction(float(Fraction(b, n_bins)))  # b/B rounded once
    assert bins.count.sum().item() == 3 and bins.count[-1].item() >= 1  # 1.0 in the last bin
    empty = bins.count == 0
    assert torch.isnan(bins.accuracy[empty]).all() and torch.isnan(bins.confidence[empty]).all()
    assert not torch.isnan(bins.accuracy[~empty]).any()
    with pytest.raises(dataclasses.FrozenInstanceError):
        bins.count = bins.accuracy


def test_reliability_bins_first_and_last_bins_are_closed_above():
    # A confidence (a maximum probability) is never 0 for a distribution, so the first bin's
    # "also holds 0" cannot be reached; its upper edge 0.1 and the last edge 1 are inside.
    bins = reliability_bins([[0.1] * 10, [1.0] + [0.0] * 9], [0, 0], 10)
    assert bins.count.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]  # 0.1 is (0, 0.1]'s top
    assert bins.accuracy.tolist()[0] == 1.0 and bins.confidence.tolist()[0] == 0.1
