"""Bregman and Jensen divergences vs explicit float64 sums; KL links; zeros; bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from torch.testing import assert_close

from kl_helpers.divergences import kl_divergence
from kl_helpers.theory.bregman import (
    bregman_divergence,
    get_bregman_generator,
    jensen_bregman_divergence,
    jensen_divergence,
)

RNG = np.random.default_rng(1)


def _simplex(n: int = 5) -> torch.Tensor:
    return torch.tensor(RNG.dirichlet(np.ones(n)))


def _positive(n: int = 5) -> torch.Tensor:
    return torch.tensor(RNG.uniform(0.1, 3.0, n))


NAIVE = {
    "squared_euclidean": lambda x, y: 0.5 * np.sum((x - y) ** 2),
    "negative_entropy": lambda x, y: np.sum(x * np.log(x / y) - x + y),
    "itakura_saito": lambda x, y: np.sum(x / y - np.log(x / y) - 1),
}


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_bregman_matches_closed_form(name):
    for _ in range(5):
        x, y = _positive(), _positive()
        expected = torch.tensor(NAIVE[name](x.numpy(), y.numpy()), dtype=torch.float64)
        assert_close(bregman_divergence(x, y, name), expected)


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_bregman_from_autograd_gradient(name):
    # The definition with ∇F from autograd instead of the hand-written gradient.
    gen = get_bregman_generator(name)
    x, y = _positive(), _positive().requires_grad_(True)
    (g,) = torch.autograd.grad(gen.F(y), y)
    y = y.detach()
    naive = gen.F(x) - gen.F(y) - (g * (x - y)).sum()
    assert_close(bregman_divergence(x, y, gen), naive)


def test_negative_entropy_on_the_simplex_is_forward_kl_and_swap_is_reverse():
    p, q = _simplex(), _simplex()
    assert_close(bregman_divergence(p, q, "negative_entropy"), kl_divergence(p, q))
    assert_close(bregman_divergence(q, p, "negative_entropy"), kl_divergence(q, p))


def test_log_partition_on_logits_gives_reverse_kl():
    tp, tq = torch.tensor(RNG.normal(size=(3, 4))), torch.tensor(RNG.normal(size=(3, 4)))
    p, q = torch.softmax(tp, -1), torch.softmax(tq, -1)
    assert_close(bregman_divergence(tp, tq, "log_partition"), kl_divergence(q, p))
    # shift invariance of logits: adding a constant per row changes nothing
    assert_close(bregman_divergence(tp + 5.0, tq - 2.0, "log_partition"), kl_divergence(q, p))


def test_log_partition_with_masked_and_extreme_logits():
    tp = torch.tensor([1.0, -torch.inf, 0.5], dtype=torch.float64)
    tq = torch.tensor([0.0, -torch.inf, 2.0], dtype=torch.float64)
    p, q = torch.softmax(tp, -1), torch.softmax(tq, -1)
    got = bregman_divergence(tp, tq, "log_partition")
    assert_close(got, kl_divergence(q, p))
    # Q puts mass where P has none: KL(Q‖P) = inf, no NaN
    tp2 = torch.tensor([1.0, -torch.inf, 0.5], dtype=torch.float64)
    tq2 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    assert bregman_divergence(tp2, tq2, "log_partition") == math.inf
    # ±1e4 logits: finite, matches the explicit sum in float64
    big_p = torch.tensor([1e4, -1e4, 0.0], dtype=torch.float64)
    big_q = torch.tensor([0.0, 1e4, -1e4], dtype=torch.float64)
    val = bregman_divergence(big_p, big_q, "log_partition")
    lq, lp = torch.log_softmax(big_q, -1), torch.log_softmax(big_p, -1)
    assert_close(val, (lq.exp() * (lq - lp)).sum())


def test_negative_entropy_zeros():
    x = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    y = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    assert bregman_divergence(x, y, "negative_entropy") == math.inf
    # x_i = 0 < y_i contributes y_i; shared zeros contribute 0
    z = torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64)
    got = bregman_divergence(
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), z, "negative_entropy"
    )
    assert_close(got, torch.tensor(-math.log(0.75), dtype=torch.float64))
    assert not torch.isnan(bregman_divergence(x, x, "negative_entropy"))


def test_jensen_of_negative_entropy_is_jensen_shannon():
    for _ in range(5):
        p, q = _simplex(), _simplex()
        js = torch.tensor(jensenshannon(p.numpy(), q.numpy()) ** 2, dtype=torch.float64)
        assert_close(jensen_divergence(p, q, "negative_entropy"), js)
        assert_close(jensen_bregman_divergence(p, q, "negative_entropy"), js)


def test_skew_jensen_matches_explicit_sum_and_is_euclidean_for_quadratic():
    x, y = _positive(), _positive()
    a = 0.3
    m = a * x.numpy() + (1 - a) * y.numpy()
    naive = a * np.sum(rel_entr(x.numpy(), m)) + (1 - a) * np.sum(rel_entr(y.numpy(), m))
    assert_close(jensen_divergence(x, y, "negative_entropy", alpha=a), torch.tensor(naive))
    expected = torch.tensor(np.sum((x.numpy() - y.numpy()) ** 2) / 8, dtype=torch.float64)
    assert_close(jensen_divergence(x, y, "squared_euclidean"), expected)


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_jensen_bregman_equals_jensen_gap(name):
    x, y = _positive(), _positive()
    assert_close(jensen_bregman_divergence(x, y, name), jensen_divergence(x, y, name))


def test_bad_input_raises_value_error():
    x, y = _positive(), _positive()
    with pytest.raises(ValueError, match="unknown Bregman generator"):
        bregman_divergence(x, y, "mahalanobis")
    with pytest.raises(ValueError, match="shape mismatch"):
        bregman_divergence(x, y[:2], "squared_euclidean")
    with pytest.raises(ValueError, match="> 0 for Itakura-Saito"):
        bregman_divergence(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]), "itakura_saito")
    with pytest.raises(ValueError, match=">= 0 for negative entropy"):
        bregman_divergence(torch.tensor([-0.1, 1.1]), torch.tensor([0.5, 0.5]), "negative_entropy")
    with pytest.raises(ValueError, match="all -inf"):
        bregman_divergence(torch.full((2,), -torch.inf), torch.zeros(2), "log_partition")
    with pytest.raises(ValueError, match="alpha must be in"):
        jensen_divergence(x, y, "negative_entropy", alpha=1.0)
    with pytest.raises(ValueError, match="at least one dimension"):
        bregman_divergence(torch.tensor(1.0), torch.tensor(2.0), "squared_euclidean")
