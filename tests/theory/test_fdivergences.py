"""f-divergences vs naive float64 sums and scipy; both conventions; zeros; bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from torch.testing import assert_close

from kl_helpers.divergences import kl_divergence
from kl_helpers.theory.fdivergences import (
    GENERATORS,
    conjugate,
    d_f,
    f_divergence,
    get_generator,
    i_f,
)

RNG = np.random.default_rng(0)


def _pair(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    p, q = RNG.dirichlet(np.ones(n)), RNG.dirichlet(np.ones(n))
    return p, q


# Naive references under D_f(P‖Q) = Σ q f(p/q), written out from the definitions.
NAIVE = {
    "kl": lambda p, q: float(np.sum(rel_entr(p, q))),
    "reverse_kl": lambda p, q: float(np.sum(rel_entr(q, p))),
    "jensen_shannon": lambda p, q: float(jensenshannon(p, q) ** 2),
    "squared_hellinger": lambda p, q: 0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)),
    "total_variation": lambda p, q: 0.5 * float(np.sum(np.abs(p - q))),
    "pearson_chi2": lambda p, q: float(np.sum((p - q) ** 2 / q)),
}


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_each_generator_matches_naive_reference(name):
    for _ in range(5):
        p, q = _pair()
        got = d_f(torch.tensor(p), torch.tensor(q), name)
        assert_close(got, torch.tensor(NAIVE[name](p, q), dtype=torch.float64))


@pytest.mark.parametrize("alpha", [-1.5, 0.3, 0.5, 2.0, 3.0])
def test_alpha_divergence_matches_explicit_sum(alpha):
    p, q = _pair()
    naive = np.sum(q * ((p / q) ** alpha - alpha * (p / q) - (1 - alpha))) / (alpha * (alpha - 1))
    assert_close(d_f(torch.tensor(p), torch.tensor(q), "alpha", alpha=alpha), torch.tensor(naive))


def test_alpha_special_cases():
    p, q = (torch.tensor(v) for v in _pair())
    assert_close(d_f(p, q, "alpha", alpha=1.0), kl_divergence(p, q))
    assert_close(d_f(p, q, "alpha", alpha=0.0), kl_divergence(q, p))
    assert_close(d_f(p, q, "alpha", alpha=1 - 1e-7), kl_divergence(p, q), rtol=1e-5, atol=1e-6)
    assert_close(d_f(p, q, "alpha", alpha=0.5), 4 * d_f(p, q, "squared_hellinger"))
    assert_close(d_f(p, q, "alpha", alpha=2.0), 0.5 * d_f(p, q, "pearson_chi2"))


def test_conventions_swap_the_direction_of_kl():
    p, q = (torch.tensor(v) for v in _pair())
    forward, reverse = kl_divergence(p, q), kl_divergence(q, p)
    # D_f: f = x log x is forward, f = -log x is reverse; I_f: the other way round.
    assert_close(d_f(p, q, "kl"), forward)
    assert_close(d_f(p, q, "reverse_kl"), reverse)
    assert_close(i_f(p, q, "reverse_kl"), forward)
    assert_close(i_f(p, q, "kl"), reverse)
    for name in NAIVE:
        assert_close(i_f(p, q, name), d_f(q, p, name))


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_conjugate_swaps_arguments(name):
    p, q = (torch.tensor(v) for v in _pair())
    assert_close(d_f(p, q, conjugate(get_generator(name))), d_f(q, p, name))


def test_zeros_follow_the_limits_without_nan():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    assert d_f(p, q, "kl") == math.inf and d_f(p, q, "reverse_kl") == math.inf
    assert d_f(p, q, "pearson_chi2") == math.inf
    assert_close(d_f(p, q, "total_variation"), torch.tensor(0.5, dtype=torch.float64))
    assert_close(
        d_f(p, q, "jensen_shannon"),
        torch.tensor(NAIVE["jensen_shannon"](p.numpy(), q.numpy()), dtype=torch.float64),
    )
    assert_close(d_f(p, q, "squared_hellinger"), torch.tensor(0.5, dtype=torch.float64))
    # 0·f(0/0) = 0: a shared zero changes nothing.
    r = torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64)
    s = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    for name in NAIVE:
        assert_close(d_f(r, s, name), d_f(r[:2], s[:2], name))
    # disjoint supports: JS = log 2, TV = 1, H² = 1
    a, b = (
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
    )
    assert_close(d_f(a, b, "jensen_shannon"), torch.tensor(math.log(2), dtype=torch.float64))
    assert_close(d_f(a, b, "total_variation"), torch.tensor(1.0, dtype=torch.float64))
    assert_close(d_f(a, b, "squared_hellinger"), torch.tensor(1.0, dtype=torch.float64))
    for name in GENERATORS:
        kw = {"alpha": 0.5} if name == "alpha" else {}
        assert not torch.isnan(d_f(p, q, name, **kw)).any()


def test_softmax_of_extreme_logits_gives_no_nan_value_or_gradient():
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, -torch.inf, 2.0]], dtype=torch.float64)
    logits.requires_grad_(True)
    q = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    for name in ["kl", "jensen_shannon", "squared_hellinger", "total_variation", "pearson_chi2"]:
        p = torch.softmax(logits, dim=-1)
        value = d_f(p, q, name).sum()
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(value) and not torch.isnan(grad).any(), name


def test_batched_rows():
    p = torch.tensor(np.stack([_pair()[0] for _ in range(4)]))
    q = torch.tensor(np.stack([_pair()[1] for _ in range(4)]))
    got = d_f(p, q, "kl")
    assert got.shape == (4,)
    assert_close(got, kl_divergence(p, q))


def test_float32_close_to_float64():
    p, q = _pair()
    got32 = d_f(
        torch.tensor(p, dtype=torch.float32), torch.tensor(q, dtype=torch.float32), "jensen_shannon"
    )
    assert got32.dtype == torch.float32
    assert_close(
        got32.double(),
        d_f(torch.tensor(p), torch.tensor(q), "jensen_shannon"),
        rtol=1e-4,
        atol=1e-6,
    )


def test_bad_input_raises_value_error_naming_the_problem():
    p, q = (torch.tensor(v) for v in _pair())
    with pytest.raises(ValueError, match="unknown f-divergence"):
        d_f(p, q, "wasserstein")
    with pytest.raises(ValueError, match="unknown convention"):
        f_divergence(p, q, "kl", convention="X_f")
    with pytest.raises(ValueError, match="shape mismatch"):
        d_f(p, q[:3], "kl")
    with pytest.raises(ValueError, match="sum to 1"):
        d_f(p * 2, q, "kl")
    with pytest.raises(ValueError, match="negative"):
        d_f(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]), "kl")
    with pytest.raises(ValueError, match="bad parameters"):
        get_generator("alpha")
    with pytest.raises(ValueError, match="finite"):
        get_generator("alpha", alpha=math.inf)
    with pytest.raises(ValueError, match="only accepted with a generator name"):
        d_f(p, q, get_generator("kl"), alpha=0.5)
