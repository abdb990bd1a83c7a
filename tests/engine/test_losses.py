"""kl_helpers.engine.losses (the article's loss functions) against naive float64 explicit sums."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from kl_helpers.divergences import kl_divergence
from kl_helpers.engine.losses import (
    calculate_cross_entropy_loss,
    calculate_fkl_loss,
    calculate_rkl_loss,
)

NEW = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0]], dtype=torch.float64)
REF = torch.tensor([[0.0, 1.0, 0.5], [1.5, -0.5, 0.0], [0.3, 0.3, 0.3]], dtype=torch.float64)
LABELS = torch.tensor([0, 2, 1])
INF = math.inf


def naive_log_softmax(row):
    m = max(row)
    log_z = m + math.log(sum(math.exp(v - m) for v in row if v != -INF))
    return [v - log_z for v in row]


def naive_kl_rows(p_logits, q_logits):
    """Batch mean of Σ p (log p − log q) per row, with 0·log 0 = 0, by Python loops."""
    total = 0.0
    for p_row, q_row in zip(p_logits.tolist(), q_logits.tolist(), strict=True):
        log_p, log_q = naive_log_softmax(p_row), naive_log_softmax(q_row)
        total += sum(
            math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q, strict=True) if lp != -INF
        )
    return total / len(p_logits)


def test_cross_entropy_matches_naive_mean():
    expected = sum(
        -naive_log_softmax(row)[y] for row, y in zip(NEW.tolist(), LABELS.tolist(), strict=True)
    ) / len(NEW)
    assert_close(calculate_cross_entropy_loss(NEW, LABELS).item(), expected)


def test_fkl_is_kl_ref_new_batch_mean():
    assert_close(calculate_fkl_loss(NEW, REF).item(), naive_kl_rows(REF, NEW))


def test_rkl_is_kl_new_ref_batch_mean():
    assert_close(calculate_rkl_loss(NEW, REF).item(), naive_kl_rows(NEW, REF))


def test_fkl_and_rkl_differ_in_general():
    fkl, rkl = calculate_fkl_loss(NEW, REF), calculate_rkl_loss(NEW, REF)
    assert abs(fkl.item() - rkl.item()) > 1e-3
    # ...but both vanish when the new model equals the reference.
    assert calculate_fkl_loss(REF, REF).item() == pytest.approx(0.0, abs=1e-15)
    assert calculate_rkl_loss(REF, REF).item() == pytest.approx(0.0, abs=1e-15)


def test_losses_match_the_articles_code():
    p_ref = F.softmax(REF, dim=-1)
    log_p_new = F.log_softmax(NEW, dim=-1)
    article_fkl = F.kl_div(log_p_new, p_ref, reduction="batchmean")
    p_new = F.softmax(NEW, dim=-1)
    article_rkl = torch.mean(torch.sum(p_new * (log_p_new - F.log_softmax(REF, dim=-1)), dim=-1))
    assert_close(calculate_fkl_loss(NEW, REF), article_fkl)
    assert_close(calculate_rkl_loss(NEW, REF), article_rkl)


def test_f_kl_div_argument_order_is_target_first():
    """F.kl_div(log_q, p) is KL(p‖q): the *second* argument is the expectation's weight."""
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    value = F.kl_div(q.log(), p, reduction="sum")
    assert_close(value, kl_divergence(p, q))
    assert abs(value.item() - kl_divergence(q, p).item()) > 1e-2


@pytest.mark.parametrize("loss", [calculate_fkl_loss, calculate_rkl_loss])
def test_reference_receives_no_gradient(loss):
    new = NEW.clone().requires_grad_(True)
    ref = REF.clone().requires_grad_(True)
    loss(new, ref).backward()
    assert ref.grad is None
    assert new.grad is not None and torch.isfinite(new.grad).all()


def test_gradients_match_analytic_forms():
    """∂/∂z KL(r‖softmax z) = p − r; ∂/∂z KL(p‖r) = p ⊙ (d − E_p d), d = log p − log r."""
    new = NEW.clone().requires_grad_(True)
    calculate_fkl_loss(new, REF).backward()
    p, r = F.softmax(NEW, -1), F.softmax(REF, -1)
    assert_close(new.grad, (p - r) / len(NEW))
    new.grad = None
    calculate_rkl_loss(new, REF).backward()
    d = p.log() - r.log()
    assert_close(new.grad, p * (d - (p * d).sum(-1, keepdim=True)) / len(NEW))
    new.grad = None
    calculate_cross_entropy_loss(new, LABELS).backward()
    assert_close(new.grad, (p - F.one_hot(LABELS, 3).double()) / len(NEW))


MASKED_CASES = [
    # (new logits, ref logits, loss) whose KL is finite although some logits are -inf
    ([[0.0, -INF, 1.0]], [[0.5, -INF, 0.3]], calculate_fkl_loss),  # same class masked in both
    ([[0.0, -INF, 1.0]], [[0.5, -INF, 0.3]], calculate_rkl_loss),
    ([[0.0, 2.0, 1.0]], [[0.5, -INF, 0.3]], calculate_fkl_loss),  # ref gives 0: weight 0
    ([[0.0, -INF, 1.0]], [[0.5, 0.2, 0.3]], calculate_rkl_loss),  # new gives 0: weight 0
]


@pytest.mark.parametrize(("new", "ref", "loss"), MASKED_CASES)
def test_minus_inf_logits_give_no_nan(new, ref, loss):
    new_t = torch.tensor(new, dtype=torch.float64, requires_grad=True)
    ref_t = torch.tensor(ref, dtype=torch.float64)
    value = loss(new_t, ref_t)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(new_t.grad).all()
    p_logits, q_logits = (ref_t, new_t) if loss is calculate_fkl_loss else (new_t, ref_t)
    assert value.item() == pytest.approx(naive_kl_rows(p_logits.detach(), q_logits.detach()))


def test_support_mismatch_is_plus_inf_not_nan():
    new = torch.tensor([[0.0, -INF, 1.0]], dtype=torch.float64)
    ref = torch.tensor([[0.5, 0.2, 0.3]], dtype=torch.float64)
    assert calculate_fkl_loss(new, ref).item() == INF  # the reference puts mass where new has none


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", [calculate_fkl_loss, calculate_rkl_loss])
def test_huge_logits_give_no_nan(loss, dtype):
    new = torch.tensor([[1e4, -1e4, 0.0], [0.0, 1e4, 1e4]], dtype=dtype, requires_grad=True)
    ref = torch.tensor([[-1e4, 1e4, 0.0], [1e4, 0.0, -1e4]], dtype=dtype)
    value = loss(new, ref)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(new.grad).all()
    p_logits, q_logits = (ref, new) if loss is calculate_fkl_loss else (new, ref)
    expected = naive_kl_rows(p_logits.detach().double(), q_logits.detach().double())
    assert value.item() == pytest.approx(expected, rel=1e-4)
    ce = calculate_cross_entropy_loss(new, torch.tensor([0, 2]))
    assert torch.isfinite(ce)


def test_float32_agrees_with_float64():
    for loss in (calculate_fkl_loss, calculate_rkl_loss):
        assert_close(loss(NEW.float(), REF.float()).double(), loss(NEW, REF), rtol=1e-5, atol=1e-6)


def test_batch_mean_is_mean_of_rows():
    rows = [calculate_rkl_loss(NEW[i : i + 1], REF[i : i + 1]) for i in range(len(NEW))]
    assert_close(calculate_rkl_loss(NEW, REF), torch.stack(rows).mean())
