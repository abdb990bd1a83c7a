"""kl_helpers.engine.losses at its edges (issue 30): the cross-entropy against a float64 loop with
-100 labels mixed in, every label -100, an empty batch, a label past the classes; forward and
reverse KL against torch.distributions with -inf logits, float16/bfloat16 logits, logits of size
1e4, lists, an empty batch; the reference gets no gradient."""

from __future__ import annotations

import math

import pytest
import torch

from kl_helpers.engine.losses import (
    calculate_cross_entropy_loss,
    calculate_fkl_loss,
    calculate_rkl_loss,
)

LOGITS = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.5, 0.5], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])


def ce_loop(logits, labels):
    terms = []
    for row, y in zip(logits.double().tolist(), labels, strict=True):
        if y == -100:
            continue
        m = max(row)
        terms.append(m + math.log(sum(math.exp(v - m) for v in row)) - row[y])
    return math.fsum(terms) / len(terms)


@pytest.mark.parametrize("labels", [[1, 0, 0, 2], [1, -100, 0, -100], [-100, -100, 1, -100]])
def test_cross_entropy_against_a_loop(labels):
    got = calculate_cross_entropy_loss(LOGITS.double(), torch.tensor(labels))
    assert got.item() == pytest.approx(ce_loop(LOGITS, labels), rel=1e-12)
    from_lists = calculate_cross_entropy_loss(LOGITS.double().tolist(), labels)  # float32
    assert from_lists.item() == pytest.approx(got.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (LOGITS, [-100, -100, -100, -100], "no label to score"),  # was NaN
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "no label to score"),  # NaN
        (LOGITS, [1, 0, 3, 2], r"labels must be in \[0, 2\] or -100, got \[3\]"),  # IndexError
        (LOGITS, [1, 0, -1, 2], r"got \[-1\]"),
        (LOGITS, [1.0, 0.0, 0.0, 2.0], "integer class ids"),
    ],
)
def test_cross_entropy_bad_labels(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        calculate_cross_entropy_loss(logits, torch.as_tensor(labels))


def dist_kl(p_logits, q_logits):
    """KL(P‖Q) per row in float64 log space (a Python loop); -inf logits drop a class.
    (torch.distributions gives +inf where a probability underflows to 0 although its logit
    is finite, as for logits ±1e4, so it is the reference only where nothing underflows.)"""
    out = []
    for p_row, q_row in zip(torch.as_tensor(p_logits).double().tolist(),
                            torch.as_tensor(q_logits).double().tolist(), strict=True):  # fmt: skip

        def log_softmax(row):
            m = max(row)
            lse = m + math.log(sum(math.exp(v - m) for v in row if v > -math.inf))
            return [v - lse for v in row]

        lp, lq = log_softmax(p_row), log_softmax(q_row)
        total = 0.0
        for a, b in zip(lp, lq, strict=True):
            if a > -math.inf:
                total += math.exp(a) * (a - b) if b > -math.inf else math.inf
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_the_loop_agrees_with_torch_distributions_where_nothing_underflows():
    p, q = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=p), torch.distributions.Categorical(logits=q)
    )
    assert dist_kl(p, q).tolist() == pytest.approx(expected.tolist(), rel=1e-12)


def test_forward_and_reverse_against_torch_distributions():
    new = LOGITS.double()
    ref = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1e4], [2.0, -1.0, 0.0]],
                       dtype=torch.float64)  # fmt: skip
    fwd = dist_kl(ref, new).mean().item()
    rev = dist_kl(new, ref).mean().item()
    assert calculate_fkl_loss(new, ref).item() == pytest.approx(fwd, rel=1e-10)
    assert calculate_rkl_loss(new, ref).item() == pytest.approx(rev, rel=1e-10)
    assert calculate_fkl_loss(new.tolist(), ref.tolist()).item() == pytest.approx(fwd, rel=1e-6)
    for dtype in (torch.float16, torch.bfloat16):
        low_new, low_ref = new.clamp(-60, 60).to(dtype), ref.clamp(-60, 60).to(dtype)
        expected = dist_kl(low_ref.double(), low_new.double()).mean().item()
        got = calculate_fkl_loss(low_new, low_ref)
        assert torch.isfinite(got) and got.item() == pytest.approx(expected, rel=1e-2, abs=1e-3)


def test_masked_logits():
    new = torch.tensor([[0.0, -math.inf, 1.0]], dtype=torch.float64)
    ref = torch.tensor([[0.5, -math.inf, 0.0]], dtype=torch.float64)
    assert calculate_fkl_loss(new, ref).item() == pytest.approx(dist_kl(ref, new).item())
    assert calculate_rkl_loss(new, ref).item() == pytest.approx(dist_kl(new, ref).item())
    # the reference has mass where the model has none: forward KL = +inf
    assert calculate_fkl_loss(new, torch.zeros(1, 3)).item() == math.inf


def test_reference_gets_no_gradient_and_empty_batches_raise():
    new = LOGITS.double().clone().requires_grad_(True)
    ref = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    calculate_fkl_loss(new, ref).backward()
    assert ref.grad is None and new.grad is not None
    for fn in (calculate_fkl_loss, calculate_rkl_loss):  # the mean of nothing was NaN
        with pytest.raises(ValueError, match="empty batch"):
            fn(torch.zeros(0, 3), torch.zeros(0, 3))
