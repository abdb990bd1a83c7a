"""kl_helpers.studies.heldout at its edges (issue 30): class priors and constant classifiers with
absent classes, ties and -100 labels; macro-F1 against scikit-learn (zero_division=0) with classes
never predicted or never present and batched resamples; standard errors against NumPy for N = 1,
N = 2 and infinite NLLs; bootstrap SEs against the same resamples recomputed with scikit-learn;
paired differences against per-example loops; counts and seeds given as 2.0/True/NumPy."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from kl_helpers.studies.heldout import (
    baselines,
    bootstrap_indices,
    class_prior,
    constant_probs,
    macro_f1_of,
    majority_probs,
    mean_and_se,
    paired_difference,
    per_example_kl,
    per_example_nll,
    scores_with_se,
)

P = [[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.9, 0.1, 0.0], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7]]
Q = [[0.4, 0.4, 0.2], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]
Y = [1, 1, 0, 2, 0]


def sk_macro_f1(pred, labels, n_classes):
    return f1_score(labels, pred, labels=list(range(n_classes)), average="macro", zero_division=0)


def test_class_prior_and_constants():
    assert class_prior([2, 2, 0], 4).tolist() == [1 / 3, 0.0, 2 / 3, 0.0]
    for labels in (np.array([2, 2, 0]), torch.tensor([2, 2, 0]), (2, 2, 0)):
        assert class_prior(labels, np.int64(4)).tolist() == [1 / 3, 0.0, 2 / 3, 0.0]
    for bad in ([2, -100], [4]):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
            class_prior(bad, 4)
    with pytest.raises(ValueError, match="need labels"):
        class_prior([], 4)
    for n_classes in (4.0, True, "4"):  # 4.0 raised TypeError in torch.bincount
        with pytest.raises(ValueError, match="n_classes must be an int"):
            class_prior([0], n_classes)
    # a tie goes to the lowest id
    assert majority_probs([1, 0, 1, 0], 2, 3).tolist() == [[1.0, 0.0, 0.0]] * 2
    assert majority_probs([2, 1, 2], np.int64(1), 3).tolist() == [[0.0, 0.0, 1.0]]
    assert constant_probs([0.25, 0.75], 0).shape == (0, 2)
    with pytest.raises(ValueError, match="n must be an int"):
        constant_probs([0.25, 0.75], 2.0)  # raised TypeError in expand
    with pytest.raises(ValueError, match="rows must sum to 1"):
        constant_probs([0.5, 0.4], 2)  # was taken as a classifier
    with pytest.raises(ValueError, match="one distribution"):
        constant_probs([[0.5, 0.5]], 2)


@pytest.mark.parametrize("seed", range(4))
def test_macro_f1_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 5  # classes 3 and 4 are rare: some resamples neither predict nor hold them
    labels = rng.choice(n_classes, size=12, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    pred = rng.choice(n_classes, size=12, p=[0.5, 0.3, 0.2, 0.0, 0.0])
    got = macro_f1_of(torch.tensor(pred), torch.tensor(labels), n_classes).item()
    assert got == pytest.approx(sk_macro_f1(pred, labels, n_classes), rel=1e-14)
    assert macro_f1_of(pred.tolist(), labels.tolist(), np.int64(n_classes)).item() == got
    idx = rng.integers(0, 12, size=(7, 12))
    batch = macro_f1_of(torch.tensor(pred[idx]), torch.tensor(labels[idx]), n_classes)
    expected = [sk_macro_f1(pred[i], labels[i], n_classes) for i in idx]
    assert batch.tolist() == pytest.approx(expected, rel=1e-14)
    with pytest.raises(ValueError, match="n_classes must be"):
        macro_f1_of(pred, labels, 5.0)


def test_mean_and_se_against_numpy():
    for values in ([1.0, 2.0, 4.0], [3, 5], np.array([0.25, 0.5, 0.75, 1e300]), [1e-320, 0.0]):
        exact = [Fraction(x) for x in np.asarray(values, dtype=float)]
        n = len(exact)
        mean = sum(exact) / n
        var = sum((x - mean) ** 2 for x in exact) / (n - 1)
        got_mean, got_se = mean_and_se(values)
        assert got_mean == pytest.approx(float(mean), rel=1e-14)
        # 1e300 among the values: the SE was inf ((v − mean)² overflows); it is 2.5e299
        se = mpmath.sqrt(mpmath.mpf(var.numerator) / var.denominator / n)
        assert got_se == pytest.approx(float(se), rel=1e-14)
    mean, se = mean_and_se([7.0])
    assert mean == 7.0 and math.isnan(se)
    mean, se = mean_and_se([1.0, math.inf])
    assert mean == math.inf and math.isnan(se)
    with pytest.raises(ValueError, match="values must have shape"):
        mean_and_se([])
    with pytest.raises(ValueError, match="values must have shape"):
        mean_and_se([[1.0, 2.0]])


def test_bootstrap_indices_forms():
    """n = 3.0, n_boot = 4.0 raised TypeError in torch.randint and seed = 1.5 a RuntimeError."""
    first = bootstrap_indices(np.int64(3), torch.tensor(4), seed=np.int64(1))
    expected = torch.randint(0, 3, (4, 3), generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, expected)
    for kwargs in ({"n": 3.0}, {"n_boot": 4.0}, {"seed": 1.5}, {"n": True}):
        args = {"n": 3, "n_boot": 4, "seed": 0} | kwargs
        with pytest.raises(ValueError, match="must be an int"):
            bootstrap_indices(**args)
    for n, n_boot in ((0, 4), (3, 1)):
        with pytest.raises(ValueError, match="need n >= 1 and n_boot >= 2"):
            bootstrap_indices(n, n_boot)


def test_scores_with_se_against_independent_sums():
    got = scores_with_se(P, Y, n_boot=30, seed=3)
    pred = np.argmax(P, axis=1)  # ties to the lowest index: row 0 predicts 0
    correct = (pred == np.array(Y)).astype(float)
    acc = correct.mean()
    assert got["accuracy"] == pytest.approx(acc)
    assert got["accuracy_se"] == pytest.approx(math.sqrt(acc * (1 - acc) / 5))
    assert got["macro_f1"] == pytest.approx(sk_macro_f1(pred, Y, 3))
    idx = torch.randint(0, 5, (30, 5), generator=torch.Generator().manual_seed(3)).numpy()
    boot = [sk_macro_f1(pred[i], np.array(Y)[i], 3) for i in idx]
    assert got["macro_f1_se"] == pytest.approx(np.std(boot, ddof=1), rel=1e-12)
    nll = [-math.log(P[i][y]) for i, y in enumerate(Y)]
    assert got["nll"] == pytest.approx(np.mean(nll), rel=1e-14)
    assert got["nll_se"] == pytest.approx(np.std(nll, ddof=1) / math.sqrt(5), rel=1e-12)
    low = scores_with_se(torch.tensor(P, dtype=torch.float32), np.array(Y), n_boot=np.int64(30))
    assert low["accuracy"] == got["accuracy"]
    assert low["nll"] == pytest.approx(got["nll"], rel=1e-6)
    with pytest.raises(ValueError, match="n_boot must be an int"):
        scores_with_se(P, Y, n_boot=30.0)


def test_paired_difference_against_per_example_loops():
    got = paired_difference(P, Q, Y, n_boot=25, seed=1)
    pp, pq = np.argmax(P, axis=1), np.argmax(Q, axis=1)
    d_acc = (pp == np.array(Y)).astype(float) - (pq == np.array(Y)).astype(float)
    assert got["d_accuracy"] == pytest.approx(d_acc.mean())
    assert got["d_accuracy_se"] == pytest.approx(d_acc.std(ddof=1) / math.sqrt(5))
    d_nll = [-math.log(P[i][y]) + math.log(Q[i][y]) for i, y in enumerate(Y)]
    assert got["d_nll"] == pytest.approx(np.mean(d_nll), rel=1e-13)
    assert got["d_nll_se"] == pytest.approx(np.std(d_nll, ddof=1) / math.sqrt(5), rel=1e-12)
    idx = torch.randint(0, 5, (25, 5), generator=torch.Generator().manual_seed(1)).numpy()
    y = np.array(Y)
    boot = [sk_macro_f1(pp[i], y[i], 3) - sk_macro_f1(pq[i], y[i], 3) for i in idx]
    assert got["d_macro_f1"] == pytest.approx(sk_macro_f1(pp, y, 3) - sk_macro_f1(pq, y, 3))
    assert got["d_macro_f1_se"] == pytest.approx(np.std(boot, ddof=1), rel=1e-12)
    kl = [
        sum(
            (b * math.log(b / a) if a > 0 else math.inf) for a, b in zip(p, q, strict=True) if b > 0
        )
        for p, q in zip(P, Q, strict=True)
    ]
    assert math.isinf(kl[0]) and got["kl"] == math.inf and math.isnan(got["kl_se"])
    assert per_example_kl(P, Q).tolist() == pytest.approx(kl, rel=1e-14)
    assert per_example_nll(P, Y).tolist() == pytest.approx(
        [-math.log(P[i][y]) for i, y in enumerate(Y)], rel=1e-15
    )


def test_baselines():
    table = baselines([0, 0, 1, 2], [0, 1, 1], 3)
    assert list(table.index) == ["majority class", "class prior"]
    assert table.loc["majority class", "accuracy"] == pytest.approx(1 / 3)
    assert table.loc["majority class", "nll"] == math.inf
    prior = [0.5, 0.25, 0.25]
    ce = -(math.log(prior[0]) + 2 * math.log(prior[1])) / 3
    assert table.loc["class prior", "nll"] == pytest.approx(ce, rel=1e-14)
    assert table.loc["class prior", "macro_f1"] == pytest.approx(
        sk_macro_f1([0, 0, 0], [0, 1, 1], 3)
    )
    with pytest.raises(ValueError, match="labels must be in"):
        baselines([0, 0], [0, -100], 3)
