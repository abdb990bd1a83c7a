"""kl_helpers.engine.training at its edges (issue 30): kl_regularised_loss and divergence_terms
against float64 loops for every method at β = 0, 5e-324 and 1e6, -inf and ±1e4 logits, -100
labels; train_step's SGD update against a hand-written loss on a tiny float64 bag-of-words model,
with cached or live reference, kl_inputs task/replay/both; bad method, β and kl_inputs;
replay_batches against torch.randperm of the same generator; train_loop's step count and order;
make_optimizer's two steps for every optimizer against the stock AdamW of the config's lr and
weight decay, and autocast_dtype for every precision, with devices as torch.device or a name."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from kl_helpers.encoding import Encoded
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.training import (
    MONITORS,
    Replay,
    autocast_dtype,
    divergence_terms,
    kl_regularised_loss,
    make_optimizer,
    replay_batches,
    train_loop,
    train_step,
)

V, C = 12, 3


class Bag(torch.nn.Module):
    """logits = Σ_t mask_t·W[id_t] + b, float64: a classifier small enough to check by hand."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(V, C, generator=g, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.randn(C, generator=g, dtype=torch.float64))

    def forward(self, input_ids, attention_mask):
        rows = self.weight[input_ids] * attention_mask[..., None]
        return SimpleNamespace(logits=rows.sum(1) + self.bias)


def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row if v > -math.inf))
    return [v - lse for v in row]


def kl_loop(p_rows, q_rows):
    """Mean KL(P‖Q) over rows from logits, float64 loop."""
    total = []
    for p, q in zip(p_rows, q_rows, strict=True):
        lp, lq = log_softmax(p), log_softmax(q)
        total.append(sum(math.exp(a) * (a - b) for a, b in zip(lp, lq, strict=True)
                         if a > -math.inf))  # fmt: skip
    return sum(total) / len(total)


def js_loop(p_rows, q_rows, w):
    """Mean JS_w: (1 − w)·KL(P‖M) + w·KL(Q‖M), M = (1 − w)P + wQ (w: the reference's share)."""
    out = []
    for p, q in zip(p_rows, q_rows, strict=True):
        pp = [math.exp(a) for a in log_softmax(p)]
        qq = [math.exp(a) for a in log_softmax(q)]
        m = [(1 - w) * a + w * b for a, b in zip(pp, qq, strict=True)]
        kl_pm = sum(a * math.log(a / c) for a, c in zip(pp, m, strict=True) if a > 0)
        kl_qm = sum(b * math.log(b / c) for b, c in zip(qq, m, strict=True) if b > 0)
        out.append((1 - w) * kl_pm + w * kl_qm)
    return sum(out) / len(out)


def ce_loop(rows, labels):
    kept = [(r, y) for r, y in zip(rows, labels, strict=True) if y != -100]
    return sum(-log_softmax(r)[y] for r, y in kept) / len(kept)


NEW = [[0.0, 1.0, -2.0], [3.0, 0.5, 0.5], [1e4, -1e4, 0.0], [0.0, -math.inf, 1.0]]
REF = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1e4], [2.0, -math.inf, 0.0]]


@pytest.mark.parametrize("method", ["sft", "forward", "reverse", "js"])
@pytest.mark.parametrize("beta", [0.0, 5e-324, 0.3, 1e6])
def test_kl_regularised_loss_against_loops(method, beta):
    labels = [1, -100, 0, 2]
    new, ref = torch.tensor(NEW, dtype=torch.float64), torch.tensor(REF, dtype=torch.float64)
    b = beta if method != "sft" else 0.0
    total, task, fwd, rev = kl_regularised_loss(
        new, torch.tensor(labels), ref, method, b, js_weight=0.25
    )
    expected = {
        "forward": kl_loop(REF, NEW), "reverse": kl_loop(NEW, REF), "js": js_loop(NEW, REF, 0.25),
    }  # fmt: skip
    assert task.item() == pytest.approx(ce_loop(NEW, labels), rel=1e-6)
    assert fwd.item() == pytest.approx(expected["forward"], rel=1e-6)
    assert rev.item() == pytest.approx(expected["reverse"], rel=1e-6)
    want = ce_loop(NEW, labels) + (0 if method == "sft" else beta * expected[method])
    assert total.item() == pytest.approx(want, rel=1e-6)
    terms = divergence_terms(new, ref, js_weight=0.25)
    assert terms["js"].item() == pytest.approx(expected["js"], rel=1e-5)


@pytest.mark.parametrize("beta", [math.inf, math.nan, -0.1, True, "0.3"])
def test_kl_regularised_loss_beta(beta):
    """β = inf or NaN gave an inf/NaN loss, β < 0 rewarded drifting from the reference."""
    with pytest.raises(ValueError, match="beta must be"):
        kl_regularised_loss(torch.zeros(1, 3), torch.tensor([0]), torch.zeros(1, 3), "forward",
                            beta)  # fmt: skip


def batch(rows, pad=0):
    length = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    return ids, mask


TEXTS = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]
LABELS = [0, 2, 1, 1]


@pytest.mark.parametrize("kl_inputs", ["task", "replay", "both"])
@pytest.mark.parametrize("live", [False, True])
def test_train_step_is_one_sgd_step_on_the_hand_written_loss(kl_inputs, live):
    model, reference = Bag(0), Bag(1)
    expected_model = copy.deepcopy(model)
    ids, mask = batch(TEXTS)
    r_ids, r_mask = batch([[11, 3], [2, 2, 2]])
    with torch.no_grad():
        ref_logits = reference(ids, mask).logits
        replay_ref = reference(r_ids, r_mask).logits
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    replay = (r_ids, r_mask, replay_ref) if kl_inputs != "task" else None
    got = train_step(model, opt, ids, mask, torch.tensor(LABELS), "reverse", 0.7,
                     None if live else ref_logits, reference if live else None,
                     kl_inputs=kl_inputs, replay_batch=replay)  # fmt: skip
    # by hand: CE on the task + 0.7·KL(new‖ref) on the chosen inputs, then p ← p − 0.5·grad
    logits = expected_model(ids, mask).logits
    ce = -torch.log_softmax(logits, -1)[torch.arange(4), torch.tensor(LABELS)].mean()
    parts = {"task": (logits, ref_logits), "replay": (expected_model(r_ids, r_mask).logits,
                                                    replay_ref)}  # fmt: skip
    chosen = ["task", "replay"] if kl_inputs == "both" else [kl_inputs]
    new = torch.cat([parts[k][0] for k in chosen])
    ref = torch.cat([parts[k][1] for k in chosen])
    lp, lq = torch.log_softmax(new, -1), torch.log_softmax(ref, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean()
    (ce + 0.7 * kl).backward()
    with torch.no_grad():
        for p, q in zip(expected_model.parameters(), model.parameters(), strict=True):
            assert torch.allclose(p - 0.5 * p.grad, q, rtol=1e-5, atol=1e-6)
    assert got.shape == (len(MONITORS),) and not got.requires_grad
    assert got[0].item() == pytest.approx(ce.item(), rel=1e-5)
    assert got[2].item() == pytest.approx(kl.item(), rel=1e-5)
    assert reference.training  # a live reference ran in eval mode and got its own mode back


def test_train_step_bad_arguments():
    model = Bag(0)
    ids, mask = batch(TEXTS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    cases = [
        ({"method": "kl", "beta": 0.1}, "method"),
        ({"method": "forward", "beta": math.inf}, "beta must be finite"),
        ({"method": "forward", "beta": 0.1, "kl_inputs": "replays"}, "kl_inputs must be one of"),
        ({"method": "forward", "beta": 0.1}, "needs ref_logits or a reference"),
        ({"method": "forward", "beta": 0.1, "kl_inputs": "replay", "ref_logits": torch.zeros(4, 3)},
         "needs a replay batch"),
    ]  # fmt: skip
    for kwargs, match in cases:
        args = {"labels": torch.tensor(LABELS)} | kwargs
        with pytest.raises(ValueError, match=match):
            train_step(model, opt, ids, mask, **args)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    sft = train_step(model, opt, ids, mask, torch.tensor(LABELS), "sft", 0.0)
    assert torch.isnan(sft[1:]).all()  # no reference: the monitors are NaN


def encoded(rows, labels=None):
    ids = tuple(torch.tensor(r) for r in rows)
    lab = torch.tensor(labels if labels is not None else [0] * len(rows))
    return Encoded(ids=ids, labels=lab, pad_id=0)


def test_replay_batches_against_randperm():
    replay = Replay(encoded([[1], [2], [3], [4], [5]]), torch.zeros(5, 3), 2)
    it = replay_batches(replay, 7)
    got = [next(it).tolist() for _ in range(6)]
    g = torch.Generator().manual_seed(7)
    expected = []
    for _ in range(2):
        order = torch.randperm(5, generator=g).tolist()
        expected += [order[0:2], order[2:4], order[4:5]]
    assert got == expected
    for bad_seed in (1.5, True):
        with pytest.raises(ValueError, match="seed must be an int"):
            next(replay_batches(replay, bad_seed))
    with pytest.raises(ValueError, match="need replay texts"):  # looped forever before
        next(replay_batches(Replay(encoded([]), torch.zeros(0, 3), 2), 0))


@pytest.mark.parametrize(("shuffle", "batch_size"), [(False, 3), (True, 3), (True, 10)])
def test_train_loop_steps_and_history(shuffle, batch_size):
    model = Bag(0)
    config = ExperimentConfig(epochs=3, batch_size=batch_size, shuffle=shuffle, lr=0.1)
    data = encoded(TEXTS, LABELS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = train_loop(model, opt, data, config)
    per_epoch = math.ceil(len(TEXTS) / batch_size)
    assert history.epoch == [e for e in range(3) for _ in range(per_epoch)]
    assert len(history.task) == 3 * per_epoch and history.method == "sft"
    assert all(math.isnan(v) for v in history.kl_forward)
    # the first step's task loss is the start model's CE on the first batch
    first = list(range(min(batch_size, 4)))
    if shuffle:
        first = torch.randperm(4, generator=torch.Generator().manual_seed(0))[:batch_size].tolist()
    ids, mask = batch([TEXTS[i] for i in first])
    with torch.no_grad():
        start = Bag(0)(ids, mask).logits
    ce = -torch.log_softmax(start, -1)[torch.arange(len(first)), torch.tensor(LABELS)[first]]
    assert history.task[0] == pytest.approx(ce.mean().item(), rel=1e-6)


@pytest.mark.parametrize("optimizer", ["auto", "fused", "foreach", "for_loop"])
@pytest.mark.parametrize("device", [torch.device("cpu"), "cpu"])
def test_make_optimizer_is_the_stock_adamw_of_the_config(optimizer, device):
    # device "cpu" (a name, as torch takes it) raised AttributeError for optimizer="auto"
    config = ExperimentConfig(lr=0.05, weight_decay=0.3, optimizer=optimizer)
    model, stock = Bag(seed=1), Bag(seed=1)
    opt = make_optimizer(model.parameters(), config, device)
    ref = torch.optim.AdamW(stock.parameters(), lr=0.05, weight_decay=0.3)
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 2
    for _ in range(2):
        for m, o in ((model, opt), (stock, ref)):
            m.weight.grad = torch.ones_like(m.weight)
            m.bias.grad = -torch.ones_like(m.bias)
            o.step()
    assert torch.allclose(model.weight, stock.weight, rtol=1e-12, atol=1e-14)
    assert torch.allclose(model.bias, stock.bias, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(model.bias, Bag(seed=1).bias)


@pytest.mark.parametrize("device", [torch.device("cpu"), "cpu", torch.device("cuda"), "mps"])
def test_autocast_dtype_of_the_config(device):
    # "cpu" as a name raised AttributeError for precision="auto"
    from kl_helpers import precision

    for choice in ("auto", "fp32", "bf16", "fp16"):
        want = precision.autocast_dtype(choice, torch.device(device))
        assert autocast_dtype(ExperimentConfig(precision=choice), device) is want
    assert autocast_dtype(ExperimentConfig(precision="bf16"), device) is torch.bfloat16
    assert autocast_dtype(ExperimentConfig(precision="fp32"), device) is None
