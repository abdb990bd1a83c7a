"""Closed-form KL-regularised optima against direct numerical minimisation over the simplex."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.divergences import kl_divergence
from kl_helpers.theory import optima

REFERENCES = (
    (0.2, 0.5, 0.3),
    (1 / 3, 1 / 3, 1 / 3),
    (0.05, 0.9, 0.05),
    (0.7, 0.1, 0.1, 0.1),
    (0.6, 0.4),
)
BETAS = (0.01, 0.1, 0.5, 1.0, 3.0, 50.0)


def _numerical_minimum(method: str, r: tuple[float, ...], y: int, beta: float) -> torch.Tensor:
    """Minimise −log π_y + β·KL over softmax logits with float64 L-BFGS (the naive reference)."""
    ref = torch.tensor(r, dtype=torch.float64)
    theta = torch.zeros(len(r), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=2000,
        tolerance_grad=1e-13,
        tolerance_change=1e-16,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        log_pi = torch.log_softmax(theta, dim=0)
        pi = log_pi.exp()
        if method == "forward":
            kl = (ref * (ref.log() - log_pi)).sum()
        else:
            kl = (pi * (log_pi - ref.log())).sum()
        loss = -log_pi[y] + beta * kl
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return torch.softmax(theta.detach(), dim=0)


@pytest.mark.parametrize("method", optima.METHODS)
@pytest.mark.parametrize("r", REFERENCES)
@pytest.mark.parametrize("beta", BETAS)
def test_closed_form_matches_numerical_minimum(method: str, r: tuple[float, ...], beta: float):
    for y in range(len(r)):
        closed = optima.optimum(method, r, y, beta)
        numeric = _numerical_minimum(method, r, y, beta)
        assert_close(closed, numeric, atol=1e-6, rtol=0)
        # The closed form is never worse than the numerical minimum.
        f_closed = optima.objective(method, closed, r, y, beta)
        f_numeric = optima.objective(method, numeric, r, y, beta)
        assert f_closed.item() <= f_numeric.item() + 1e-12


@pytest.mark.parametrize("method", optima.METHODS)
def test_optimum_is_a_distribution_and_beats_perturbations(method: str):
    r, y, beta = (0.25, 0.15, 0.6), 1, 0.7
    pi = optima.optimum(method, r, y, beta)
    assert_close(pi.sum(), torch.tensor(1.0, dtype=torch.float64))
    best = optima.objective(method, pi, r, y, beta).item()
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        noisy = torch.softmax(
            pi.log() + 0.05 * torch.randn(3, generator=gen, dtype=torch.float64), 0
        )
        assert optima.objective(method, noisy, r, y, beta).item() >= best - 1e-12


def test_forward_is_label_smoothing_towards_reference():
    r = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    beta = 0.4
    onehot = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    expected = onehot / (1 + beta) + (beta / (1 + beta)) * r
    assert_close(optima.forward_kl_optimum(r, 2, beta), expected)


def test_reverse_keeps_non_label_classes_proportional_to_reference():
    r = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    pi = optima.reverse_kl_optimum(r, 3, 0.3)
    others = pi[:3] / pi[:3].sum()
    assert_close(others, r[:3] / r[:3].sum())


def test_reverse_label_probability_solves_its_equation():
    for r_y in (1e-6, 0.01, 0.2, 0.5, 0.9, 0.999999):
        for beta in (1e-3, 0.05, 0.3, 1.0, 7.0, 1e4):
            p = optima.reverse_kl_label_probability(r_y, beta)
            z = optima.reverse_kl_label_logit(r_y, beta)
            lhs = z
            rhs = math.log(r_y / (1 - r_y)) + 1 / (beta * p)
            assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-9)
            assert r_y < p <= 1.0


def test_reverse_small_beta_in_logit_space_does_not_overflow():
    # p is 1 - e^(-1e8) here: it rounds to 1.0, but the logit keeps the information.
    z = optima.reverse_kl_label_logit(0.25, 1e-8)
    assert math.isfinite(z)
    assert z == pytest.approx(math.log(1 / 3) + 1e8, rel=1e-12)
    assert optima.reverse_kl_label_probability(0.25, 1e-8) == 1.0


@pytest.mark.parametrize("method", optima.METHODS)
def test_beta_limits(method: str):
    r = (0.2, 0.5, 0.3)
    assert_close(
        optima.optimum(method, r, 0, 0.0), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    )
    assert_close(optima.optimum(method, r, 0, math.inf), torch.tensor(r, dtype=torch.float64))
    # Monotone in β: from 1 down to r_y.
    ps = optima.label_probability(method, 0.2, torch.logspace(-3, 3, 40).tolist())
    assert (ps[1:] <= ps[:-1] + 1e-15).all()
    assert ps[0].item() > 0.99 and ps[-1].item() < 0.21


def test_reverse_with_zero_reference_entries():
    pi = optima.reverse_kl_optimum((0.5, 0.0, 0.5), 0, 0.5)
    assert pi[1].item() == 0.0
    assert_close(pi.sum(), torch.tensor(1.0, dtype=torch.float64))
    # All the reference mass on the label: the optimum is the reference at every β.
    assert_close(
        optima.reverse_kl_optimum((0.0, 1.0, 0.0), 1, 0.3), torch.tensor([0.0, 1.0, 0.0]).double()
    )
    # Forward KL allows r_y = 0.
    assert_close(
        optima.forward_kl_optimum((0.0, 0.5, 0.5), 0, 1.0), torch.tensor([0.5, 0.25, 0.25]).double()
    )


def test_grid_shape_and_values():
    grid = optima.label_probability_grid("forward", [0.1, 0.4], [0.0, 1.0, 3.0])
    assert grid.shape == (2, 3)
    assert_close(grid[1], torch.tensor([1.0, 0.7, 0.55], dtype=torch.float64))


@pytest.mark.parametrize("r_y", (0.01, 0.1, 0.25, 1 / 3, 0.45, 0.49))
def test_crossing_beta(r_y: float):
    b = optima.crossing_beta(r_y)
    p_f = optima.forward_kl_label_probability(r_y, b)
    p_r = optima.reverse_kl_label_probability(r_y, b)
    assert p_f == pytest.approx(p_r, rel=1e-9)
    assert optima.sharper_method(r_y, b / 2) == "reverse"
    assert optima.sharper_method(r_y, b * 2) == "forward"
    assert optima.crossing_reference_probability(b) == pytest.approx(r_y, rel=1e-7)


def test_crossing_beta_increases_with_reference_probability():
    bs = [optima.crossing_beta(r) for r in (0.01, 0.1, 0.2, 0.3, 0.4, 0.49)]
    assert all(a < b for a, b in zip(bs, bs[1:], strict=False))


@pytest.mark.parametrize("r_y", (0.5, 0.6, 0.9))
def test_no_crossing_when_reference_favours_label(r_y: float):
    assert optima.crossing_beta(r_y) == math.inf
    # Beyond β ~ 1e3 at r_y = 1/2 the two differ by less than float64 resolves.
    for beta in (0.01, 0.1, 1.0, 10.0, 100.0):
        assert optima.sharper_method(r_y, beta) == "reverse"


def test_objective_uses_the_stated_kl_direction():
    r = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    pi = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    task = -math.log(0.6)
    assert optima.objective("forward", pi, r, 0, 2.0).item() == pytest.approx(
        task + 2.0 * kl_divergence(r, pi).item()
    )
    assert optima.objective("reverse", pi, r, 0, 2.0).item() == pytest.approx(
        task + 2.0 * kl_divergence(pi, r).item()
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: optima.forward_kl_optimum((0.2, 0.5, 0.3), 0, -0.1), "beta must be >= 0"),
        (lambda: optima.forward_kl_optimum((0.2, 0.5, 0.3), 0, float("nan")), "beta must be"),
        (lambda: optima.forward_kl_optimum((0.2, 0.5, 0.4), 0, 1.0), "sum to 1"),
        (lambda: optima.forward_kl_optimum((-0.2, 0.7, 0.5), 0, 1.0), "negative"),
        (lambda: optima.forward_kl_optimum((0.2, 0.5, 0.3), 3, 1.0), "label must be in"),
        (lambda: optima.forward_kl_optimum((0.2, 0.5, 0.3), 1.5, 1.0), "integer"),
        (lambda: optima.forward_kl_optimum([[0.5, 0.5]], 0, 1.0), "1-D"),
        (lambda: optima.reverse_kl_optimum((0.0, 0.5, 0.5), 0, 1.0), "reference\\[label\\] > 0"),
        (lambda: optima.reverse_kl_label_probability(0.0, 1.0), "r_y must be a probability"),
        (lambda: optima.reverse_kl_label_probability(1.2, 1.0), "r_y must be a probability"),
        (lambda: optima.label_probability("kl", 0.3, 1.0), "method must be one of"),
        (lambda: optima.crossing_reference_probability(0.0), "beta must be > 0"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
