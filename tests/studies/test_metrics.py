"""Held-out metrics against naive float64 loops."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.studies import metrics


def _random_case(n: int = 200, c: int = 3, seed: int = 0, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(scale * torch.randn(n, c, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, c, (n,), generator=gen)
    ref = torch.softmax(torch.randn(n, c, generator=gen, dtype=torch.float64), dim=1)
    return probs, labels, ref


def _naive_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> float:
    """Textbook ECE with an explicit loop over bins (lo, hi] and over rows."""
    total = 0.0
    n = len(labels)
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        rows = []
        for i in range(n):
            conf = max(probs[i].tolist())
            if (lo < conf <= hi) or (b == 0 and conf == 0.0):
                rows.append(i)
        if not rows:
            continue
        acc = sum(int(int(probs[i].argmax()) == int(labels[i])) for i in rows) / len(rows)
        conf = sum(max(probs[i].tolist()) for i in rows) / len(rows)
        total += len(rows) / n * abs(acc - conf)
    return total


@pytest.mark.parametrize("seed", (0, 1, 2))
@pytest.mark.parametrize("n_bins", (1, 5, 10, 15))
def test_ece_matches_naive_loop(seed: int, n_bins: int):
    probs, labels, _ = _random_case(seed=seed)
    got = metrics.expected_calibration_error(probs, labels, n_bins).item()
    assert got == pytest.approx(_naive_ece(probs, labels, n_bins), abs=1e-12)


def test_ece_bin_edges_are_right_closed():
    # Confidence exactly 0.5 belongs to bin (0.4, 0.5], not (0.5, 0.6].
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.55, 0.25, 0.2]], dtype=torch.float64)
    bins = metrics.reliability_bins(probs, torch.tensor([0, 1]), n_bins=10)
    assert bins.count[4].item() == 1 and bins.count[5].item() == 1
    assert math.isnan(bins.accuracy[0].item())


def test_perfectly_calibrated_and_overconfident():
    # Confidence 1 and always right: ECE 0. Confidence 1 and half right: ECE 0.5.
    probs = torch.tensor([[1.0, 0.0, 0.0]] * 4, dtype=torch.float64)
    assert metrics.expected_calibration_error(probs, torch.tensor([0, 0, 0, 0])).item() == 0.0
    assert metrics.expected_calibration_error(probs, torch.tensor([0, 1, 0, 2])).item() == 0.5


def test_accuracy_nll_entropy_against_loops():
    probs, labels, ref = _random_case(n=50, seed=3)
    acc = sum(int(probs[i].argmax() == labels[i]) for i in range(50)) / 50
    nll = sum(-math.log(probs[i, labels[i]].item()) for i in range(50)) / 50
    ent = sum(-sum(q * math.log(q) for q in probs[i].tolist()) for i in range(50)) / 50
    kl_f = (
        sum(
            sum(
                r * math.log(r / q) for r, q in zip(ref[i].tolist(), probs[i].tolist(), strict=True)
            )
            for i in range(50)
        )
        / 50
    )
    kl_r = (
        sum(
            sum(
                q * math.log(q / r) for r, q in zip(ref[i].tolist(), probs[i].tolist(), strict=True)
            )
            for i in range(50)
        )
        / 50
    )
    assert metrics.accuracy(probs, labels).item() == pytest.approx(acc)
    assert metrics.negative_log_likelihood(probs, labels).item() == pytest.approx(nll, rel=1e-12)
    assert metrics.mean_entropy(probs).item() == pytest.approx(ent, rel=1e-12)
    assert metrics.mean_forward_kl_to_reference(probs, ref).item() == pytest.approx(kl_f, rel=1e-12)
    assert metrics.mean_reverse_kl_to_reference(probs, ref).item() == pytest.approx(kl_r, rel=1e-12)


def test_evaluate_returns_every_metric():
    probs, labels, ref = _random_case(n=30, seed=4)
    out = metrics.evaluate(probs, labels, ref)
    assert set(out) == set(metrics.METRICS)
    assert out["ece"] == pytest.approx(metrics.expected_calibration_error(probs, labels).item())
    # KL of the reference to itself is 0.
    same = metrics.evaluate(ref, labels, ref)
    assert same["kl_fwd"] == pytest.approx(0.0, abs=1e-15)
    assert same["kl_rev"] == pytest.approx(0.0, abs=1e-15)


def test_zero_probabilities_do_not_make_nan():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    ref = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    labels = torch.tensor([0, 2])
    assert metrics.mean_entropy(probs).item() == 0.0
    assert_close(
        metrics.mean_reverse_kl_to_reference(probs, ref), torch.tensor(math.log(3)).double()
    )
    assert metrics.negative_log_likelihood(probs, labels).item() == math.inf
    assert metrics.mean_forward_kl_to_reference(probs, ref).item() == math.inf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.accuracy(torch.tensor([0.5, 0.5]), torch.tensor([0])), "shape \\(N, C\\)"),
        (lambda: metrics.accuracy(torch.tensor([[0.5, 0.6]]), torch.tensor([0])), "sum to 1"),
        (
            lambda: metrics.accuracy(torch.tensor([[0.5, 0.5]]), torch.tensor([2])),
            "labels must be in",
        ),
        (lambda: metrics.accuracy(torch.tensor([[0.5, 0.5]]), torch.tensor([0.0])), "integers"),
        (lambda: metrics.accuracy(torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1])), "shape"),
        (lambda: metrics.accuracy(torch.zeros(0, 3), torch.tensor([], dtype=torch.long)), "empty"),
        (
            lambda: metrics.expected_calibration_error(torch.tensor([[1.0, 0.0]]), [0], 0),
            "n_bins",
        ),
        (
            lambda: metrics.mean_forward_kl_to_reference(
                torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
            ),
            "shape mismatch",
        ),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
