"""kl_helpers.theory.bregman's generator factories at their edges (issue 30), against 50-digit
mpmath: for squared_euclidean, negative_entropy, itakura_saito and log_partition, F and ∇F at
ordinary points, and the divergence against the defining F(x) − F(y) − ⟨∇F(y), x − y⟩ for pairs
far apart, 1e-9 relative apart (where the float64 defining formula cancels) and equal; zeros in x
for the negative entropy (0·log 0 = 0); logits of size 1e4, shifted by a constant and masked with
-inf for the log-partition; each domain check's refusals (NaN, inf, negative, zero, -inf logits
only, +inf logits); get_bregman_generator for every name and an unknown one."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from kl_helpers.theory.bregman import (
    BREGMAN_GENERATORS,
    burg_entropy_generator,
    get_bregman_generator,
    log_partition_generator,
    negative_entropy_generator,
    squared_euclidean_generator,
)

mpmath.mp.dps = 50

MP_F = {
    "squared_euclidean": lambda x: sum(v * v for v in x) / 2,
    "negative_entropy": lambda x: sum(v * mpmath.log(v) if v > 0 else mpmath.mpf(0) for v in x),
    "itakura_saito": lambda x: -sum(mpmath.log(v) for v in x),
    "log_partition": lambda x: mpmath.log(sum(mpmath.exp(v) for v in x)),
}
MP_GRAD = {
    "squared_euclidean": lambda x: list(x),
    "negative_entropy": lambda x: [mpmath.log(v) + 1 for v in x],
    "itakura_saito": lambda x: [-1 / v for v in x],
    "log_partition": lambda x: [mpmath.exp(v) / sum(mpmath.exp(w) for w in x) for v in x],
}
POINTS = {
    "squared_euclidean": ([1.5, -2.0, 3e5], [0.5, 1.0, -2.0]),
    "negative_entropy": ([0.2, 1.7, 3.0], [0.5, 0.25, 4.0]),
    "itakura_saito": ([0.2, 1.7, 3.0], [0.5, 0.25, 4.0]),
    "log_partition": ([0.3, -1.2, 2.0], [1.0, 0.5, -3.0]),
}


def mp(values):
    return [mpmath.mpf(v) for v in values]


def defining(name, x, y):
    x, y = mp(x), mp(y)
    g = MP_GRAD[name](y)
    return MP_F[name](x) - MP_F[name](y) - sum(a * (b - c) for a, b, c in zip(g, x, y, strict=True))


@pytest.mark.parametrize("name", sorted(BREGMAN_GENERATORS))
def test_f_grad_and_divergence_against_mpmath(name):
    gen = get_bregman_generator(name)
    x, y = POINTS[name]
    tx, ty = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    assert float(gen.F(tx)) == pytest.approx(float(MP_F[name](mp(x))), rel=1e-14)
    assert gen.grad(tx).tolist() == pytest.approx(
        [float(v) for v in MP_GRAD[name](mp(x))], rel=1e-14
    )
    for a, b in ((x, y), (y, x)):
        want = float(defining(name, a, b))
        got = float(
            gen.divergence(
                torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
            )
        )
        assert got == pytest.approx(want, rel=1e-12)
    close = [v * (1 + 1e-9) if name != "squared_euclidean" else v + 1e-9 for v in y]
    if name == "log_partition":
        close = [v + 1e-9 * (i - 1) for i, v in enumerate(y)]
    want = float(defining(name, close, y))
    got = float(gen.divergence(torch.tensor(close, dtype=torch.float64), ty))
    assert got == pytest.approx(want, rel=1e-6) and got > 0
    assert float(gen.divergence(ty, ty)) == 0.0


def test_negative_entropy_with_zeros():
    gen = get_bregman_generator("negative_entropy")
    x, y = [0.0, 1.0, 2.0], [0.5, 1.0, 1.0]
    want = float(defining("negative_entropy", x, y))  # 0·log 0 = 0
    assert float(
        gen.divergence(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    ) == pytest.approx(want, rel=1e-14)
    assert float(gen.F(torch.tensor(x, dtype=torch.float64))) == pytest.approx(
        2 * math.log(2), rel=1e-15
    )


def mp_kl_softmax(q_logits, p_logits):
    """KL(softmax q‖softmax p) in mpmath, -inf logits as absent classes."""
    zq = sum(mpmath.exp(v) for v in q_logits if v > -math.inf)
    zp = sum(mpmath.exp(v) for v in p_logits if v > -math.inf)
    total = mpmath.mpf(0)
    for a, b in zip(q_logits, p_logits, strict=True):
        if a == -math.inf:
            continue
        if b == -math.inf:
            return mpmath.inf
        qa, pb = mpmath.exp(a) / zq, mpmath.exp(b) / zp
        total += qa * mpmath.log(qa / pb)
    return total


@pytest.mark.parametrize(
    ("theta_p", "theta_q"),
    [
        ([1e4, 0.0, -1e4], [1e4 - 1.0, 0.0, -1e4]),
        ([0.3, -1.2, 2.0], [100.3, 98.8, 102.0]),  # a constant shift: KL 0
        ([0.0, -math.inf, 1.0], [0.5, -math.inf, 0.2]),
        ([0.0, -math.inf, 1.0], [0.5, 0.1, 0.2]),  # q has mass p lacks: inf
        ([0.0, 0.3, 1.0], [0.5, -math.inf, 0.2]),
    ],
)
def test_log_partition_divergence_is_the_kl_of_softmaxes(theta_p, theta_q):
    gen = get_bregman_generator("log_partition")
    got = float(
        gen.divergence(
            torch.tensor(theta_p, dtype=torch.float64), torch.tensor(theta_q, dtype=torch.float64)
        )
    )
    want = mp_kl_softmax(mp(theta_q), mp(theta_p))
    if mpmath.isinf(want):
        assert got == math.inf
    else:
        assert got == pytest.approx(float(want), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("squared_euclidean", [1.0, math.nan]),
        ("squared_euclidean", [math.inf, 0.0]),
        ("negative_entropy", [-0.1, 1.0]),
        ("negative_entropy", [math.nan, 1.0]),
        ("negative_entropy", [math.inf, 1.0]),
        ("itakura_saito", [0.0, 1.0]),
        ("itakura_saito", [-1.0, 1.0]),
        ("itakura_saito", [math.inf, 1.0]),
        ("log_partition", [-math.inf, -math.inf]),
        ("log_partition", [math.inf, 0.0]),
        ("log_partition", [math.nan, 0.0]),
    ],
)
def test_domain_checks_refuse(name, bad):
    with pytest.raises(ValueError):
        get_bregman_generator(name).check(torch.tensor(bad, dtype=torch.float64), "x")


def test_get_bregman_generator():
    assert BREGMAN_GENERATORS == {
        "squared_euclidean": squared_euclidean_generator,
        "negative_entropy": negative_entropy_generator,
        "itakura_saito": burg_entropy_generator,
        "log_partition": log_partition_generator,
    }
    for name, factory in BREGMAN_GENERATORS.items():
        assert get_bregman_generator(name).name == factory().name
    with pytest.raises(ValueError, match="unknown Bregman generator 'kl'"):
        get_bregman_generator("kl")
