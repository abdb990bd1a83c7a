"""kl_helpers.studies.heldout: constant baselines and standard errors, against naive float64
loops."""

import math
import random

import numpy as np
import pytest
import torch

from kl_helpers.studies import heldout


def _naive_macro_f1(pred, labels, n_classes):
    scores = []
    for c in range(n_classes):
        tp = sum(1 for p, y in zip(pred, labels, strict=True) if p == c and y == c)
        fp = sum(1 for p, y in zip(pred, labels, strict=True) if p == c and y != c)
        fn = sum(1 for p, y in zip(pred, labels, strict=True) if p != c and y == c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / n_classes


def _random_problem(n=150, c=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, c, generator=gen, dtype=torch.float64), -1)
    labels = torch.randint(0, c, (n,), generator=gen)
    return probs, labels


def test_class_prior_and_majority_count_the_labels():
    labels = [0, 0, 0, 1, 2, 2, 0]
    torch.testing.assert_close(
        heldout.class_prior(labels, 4),
        torch.tensor([4 / 7, 1 / 7, 2 / 7, 0.0], dtype=torch.float64),
    )
    majority = heldout.majority_probs(labels, 5, 3)
    assert majority.shape == (5, 3) and (majority[:, 0] == 1).all() and majority.sum() == 5
    assert (heldout.majority_probs([1, 2], 2, 3)[:, 1] == 1).all()  # a tie: the lowest id
    for bad in ([], [0, 3]):
        with pytest.raises(ValueError):
            heldout.class_prior(bad, 3)


def test_baselines_match_the_hand_computed_constants():
    train = [0] * 6 + [1] * 3 + [2]  # prior 0.6 / 0.3 / 0.1
    test = [0, 0, 1, 2, 1]
    table = heldout.baselines(train, test, 3)
    prior = table.loc["class prior"]
    expected_nll = -(2 * math.log(0.6) + 2 * math.log(0.3) + math.log(0.1)) / 5
    assert prior["nll"] == pytest.approx(expected_nll)
    assert (
        prior["accuracy"] == pytest.approx(0.4) and table.loc["majority class", "accuracy"] == 0.4
    )
    # always "0": class 0 F1 = 2·2/(5+2), the others 0
    assert prior["macro_f1"] == pytest.approx((4 / 7) / 3)
    assert table.loc["majority class", "macro_f1"] == pytest.approx((4 / 7) / 3)
    assert math.isinf(table.loc["majority class", "nll"])
    assert prior["accuracy_se"] == pytest.approx(math.sqrt(0.4 * 0.6 / 5))


def test_macro_f1_of_batches_agrees_with_a_naive_loop():
    rng = random.Random(1)
    pred = [[rng.randrange(3) for _ in range(40)] for _ in range(6)]
    labels = [[rng.randrange(3) for _ in range(40)] for _ in range(6)]
    pred[0] = [0] * 40  # a class never predicted
    labels[1] = [1] * 40  # classes never present
    got = heldout.macro_f1_of(torch.tensor(pred), torch.tensor(labels), 3)
    expected = [_naive_macro_f1(p, y, 3) for p, y in zip(pred, labels, strict=True)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_scores_with_se_against_independent_computations():
    probs, labels = _random_problem()
    out = heldout.scores_with_se(probs, labels, n_boot=500, seed=3)
    pred = probs.argmax(-1).tolist()
    y = labels.tolist()
    acc = np.mean([p == t for p, t in zip(pred, y, strict=True)])
    nll = np.array([-math.log(probs[i, t].item()) for i, t in enumerate(y)])
    assert out["accuracy"] == pytest.approx(acc)
    assert out["accuracy_se"] == pytest.approx(math.sqrt(acc * (1 - acc) / len(y)))
    assert out["nll"] == pytest.approx(nll.mean())
    assert out["nll_se"] == pytest.approx(nll.std(ddof=1) / math.sqrt(len(y)))
    assert out["macro_f1"] == pytest.approx(_naive_macro_f1(pred, y, 3))
    idx = heldout.bootstrap_indices(len(y), 500, 3).tolist()
    boot = [_naive_macro_f1([pred[i] for i in row], [y[i] for i in row], 3) for row in idx]
    assert out["macro_f1_se"] == pytest.approx(np.std(boot, ddof=1))
    # and the bootstrap agrees with the binomial SE where both apply (accuracy), to ~10%
    boot_acc = [np.mean([pred[i] == y[i] for i in row]) for row in idx]
    assert np.std(boot_acc, ddof=1) == pytest.approx(out["accuracy_se"], rel=0.15)


def test_paired_difference_uses_per_example_differences():
    probs, labels = _random_problem(seed=4)
    other, _ = _random_problem(seed=5)
    out = heldout.paired_difference(probs, other, labels, n_boot=300, seed=1)
    y = labels.tolist()
    d_nll = np.array(
        [math.log(other[i, t].item()) - math.log(probs[i, t].item()) for i, t in enumerate(y)]
    )
    assert out["d_nll"] == pytest.approx(d_nll.mean())
    assert out["d_nll_se"] == pytest.approx(d_nll.std(ddof=1) / math.sqrt(len(y)))
    hit = lambda p: np.array([p[i].argmax().item() == t for i, t in enumerate(y)], float)  # noqa: E731
    d_acc = hit(probs) - hit(other)
    assert out["d_accuracy_se"] == pytest.approx(d_acc.std(ddof=1) / math.sqrt(len(y)))
    kl = np.array(
        [
            sum(
                q * math.log(q / p)
                for q, p in zip(other[i].tolist(), probs[i].tolist(), strict=True)
            )
            for i in range(len(y))
        ]
    )
    assert out["kl"] == pytest.approx(kl.mean()) and out["kl_se"] == pytest.approx(
        kl.std(ddof=1) / math.sqrt(len(y))
    )
    pa, pb = probs.argmax(-1).tolist(), other.argmax(-1).tolist()
    idx = heldout.bootstrap_indices(len(y), 300, 1).tolist()
    boot = [
        _naive_macro_f1([pa[i] for i in r], [y[i] for i in r], 3)
        - _naive_macro_f1([pb[i] for i in r], [y[i] for i in r], 3)
        for r in idx
    ]
    assert out["d_macro_f1_se"] == pytest.approx(np.std(boot, ddof=1))
    same = heldout.paired_difference(probs, probs, labels, n_boot=50)
    assert all(same[k] == 0 for k in ("d_accuracy", "d_nll", "d_macro_f1", "d_macro_f1_se"))
    assert abs(same["kl"]) < 1e-12


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        heldout.mean_and_se(torch.zeros(0))
    with pytest.raises(ValueError):
        heldout.bootstrap_indices(5, 1)
    with pytest.raises(ValueError):
        heldout.scores_with_se(torch.ones(3, 2) / 2, [0, 1])
    assert math.isnan(heldout.mean_and_se(torch.tensor([1.0]))[1])
