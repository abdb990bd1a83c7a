"""kl_helpers.trainer.kl_trainer at its edges (issue 30), on a 2-layer Llama (hidden 16) and a tiny
BERT classifier built in code: KLTrainingArguments with β = NaN / inf / 0, temperature inf, lora_r
2.5, label_names as a tuple; refuse_loss_flags on any object; freeze_reference on a caller's model
in train mode (str and torch.device); compute_loss at β = 0 against the stock
``transformers.Trainer`` (labels with -100, a pad id, an id past the vocabulary) and at β > 0
against float64 forward / reverse KL, in eval mode and normalised by an accumulated batch in
training mode, with return_outputs; get_batch_samples' item count; two optimizer steps with gradient
accumulation against the stock Trainer's; get_decay_parameter_names both ways; prediction_step with
and without labels and a reference-logits column; log's train / eval / custom-prefix means, an
uneven last eval batch, and predict() before evaluate(); reference_logits without a reference;
construction with stock TrainingArguments, precomputed reference logits in one or both datasets (or
an eval dict), shift_labels forced either way on a causal LM, and a LoRA policy whose reference is
itself with adapters off. training_step against the stock Trainer's at β = 0 (returned loss and
every gradient, one and two micro-batches), at β > 0 against the float64 loss, and its scaling check
firing when the Trainer divides by another count; evaluation_loop against the stock Trainer's (eval
loss, logits, labels with -100, sample count) at β = 0 for eval batch sizes 1, 3 and 8, at β > 0
against the row-weighted float64 mean of every batch, and its eval means started afresh when a
predict() came between."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments
from transformers import default_data_collator as collate

from kl_helpers.models import build_tiny_bert
from kl_helpers.reference import disable_dropout
from kl_helpers.trainer.kl_trainer import KLTrainer, freeze_reference, refuse_loss_flags
from tests.trainer.trainer_args import train_args

VOCAB = 32


def llama(seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=32, pad_token_id=0)  # fmt: skip
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def lm_batch() -> dict[str, torch.Tensor]:
    """Row 0: a 2-token prompt without loss, then padding (id 0) labelled -100; row 1: the pad
    id 0 as a real label (counted); row 2: no valid label at all."""
    ids = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 0, 10, 11, 12], [13, 14, 15, 16, 17, 18]])
    labels = ids.clone()
    labels[0, :2] = -100
    labels[0, 4:] = -100
    labels[2] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def lm_dataset(n: int = 8) -> Dataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (n, 6), generator=g)
    labels = ids.clone()
    labels[:, :2] = -100
    labels[1::3, 3:] = -100  # uneven token counts per row
    mask = torch.ones_like(ids)
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": mask.tolist(),
                              "labels": labels.tolist()})  # fmt: skip


def hand_terms(
    policy: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor, kind: str, shift: bool
):
    """Float64 sums of cross-entropy and KL over the valid (shifted) positions, and their count."""
    if shift:
        policy, ref, labels = policy[:, :-1], ref[:, :-1], labels[:, 1:]
    keep = labels != -100
    logp, logq = F.log_softmax(policy.double(), -1)[keep], F.log_softmax(ref.double(), -1)[keep]
    y = labels[keep]
    task = -logp[torch.arange(len(y)), y].sum().item()
    if kind == "forward":  # KL(ref ‖ policy)
        div = (logq.exp() * (logq - logp)).sum().item()
    else:  # KL(policy ‖ ref)
        div = (logp.exp() * (logp - logq)).sum().item()
    return task, div, int(keep.sum())


def stock_args(path, **kw) -> TrainingArguments:
    values = dict(output_dir=str(path), per_device_train_batch_size=8, learning_rate=1e-3,
                  max_steps=2, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                  disable_tqdm=True, seed=0)  # fmt: skip
    values.update(kw)
    return TrainingArguments(**values)


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("field", "value"),
    [("beta", math.nan), ("beta", math.inf), ("temperature", math.inf), ("lora_r", 2.5)],
)
def test_arguments_refuse_what_the_loss_cannot_use(tmp_path, field, value):
    # β = NaN passed (`nan < 0` is False) and made every loss NaN; β = inf gives inf · 0 = NaN at
    # step 0 (the divergence starts at 0); temperature = inf turns -inf logits into NaN; lora_r
    # 2.5 reached peft's LoraConfig.
    with pytest.raises(ValueError, match=field):
        train_args(tmp_path, **{field: value})


def test_arguments_keep_the_edges_they_promise(tmp_path):
    args = train_args(tmp_path, beta=0.0, js_weight=0.0, divergence="js", temperature=1e-3,
                      label_names=("labels",))  # fmt: skip
    assert (args.beta, args.js_weight, args.temperature) == (0.0, 0.0, 1e-3)
    assert train_args(tmp_path, js_weight=1.0, lora_r=0).js_weight == 1.0
    assert list(args.label_names) == ["labels"]  # a tuple of the one column was refused


def test_refuse_loss_flags_on_any_object():
    from types import SimpleNamespace

    refuse_loss_flags(SimpleNamespace())  # no such fields: nothing set
    refuse_loss_flags(SimpleNamespace(label_names=["labels"], neftune_noise_alpha=None))
    for bad in (dict(label_names=["labels", "extra"]), dict(label_names="labels"),
                dict(neftune_noise_alpha=0.0)):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            refuse_loss_flags(SimpleNamespace(**bad))


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_freeze_reference_is_the_callers_model_frozen(device):
    model = build_tiny_bert(num_labels=2, seed=0).train()
    frozen = freeze_reference(model, device)
    assert frozen is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0 for m in dropouts)
    ids = torch.tensor([[101, 2000, 102]])
    model.train()  # dropout off: train mode gives the eval-mode logits
    train_logits = model(input_ids=ids).logits
    model.eval()
    assert torch.equal(train_logits, model(input_ids=ids).logits)


# ----------------------------------------------------------------------------- compute_loss


def test_beta_zero_is_the_stock_trainers_loss(tmp_path):
    batch = lm_batch()
    ours = KLTrainer(llama(0), train_args(tmp_path / "a", beta=0.0))
    stock = Trainer(model=llama(0), args=stock_args(tmp_path / "b"))
    for trainer in (ours, stock):
        trainer.model.eval()
    with torch.no_grad():
        got = ours.compute_loss(ours.model, dict(batch)).item()
        want = stock.compute_loss(stock.model, dict(batch)).item()
        logits = llama(0).eval()(input_ids=batch["input_ids"]).logits
    task, _, n = hand_terms(logits, logits, batch["labels"], "forward", shift=True)
    assert n == 7  # row 0: 2 tokens, row 1: 5 (the pad id 0 counts), row 2: none
    assert got == pytest.approx(want, abs=1e-6) and got == pytest.approx(task / n, abs=1e-5)


def test_label_past_the_vocabulary_is_an_error_as_in_the_stock_trainer(tmp_path):
    batch = lm_batch()
    batch["labels"][1, 3] = VOCAB  # one past the last id
    ours = KLTrainer(llama(0), train_args(tmp_path / "a", beta=0.0))
    stock = Trainer(model=llama(0), args=stock_args(tmp_path / "b"))
    with pytest.raises(IndexError):
        stock.compute_loss(stock.model, dict(batch))
    with pytest.raises(ValueError, match="class ids in"):
        ours.compute_loss(ours.model, dict(batch))


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_eval_loss_is_the_float64_mean_task_plus_beta_kl(tmp_path, kind):
    batch, beta = lm_batch(), 0.7
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=beta, divergence=kind),
                        ref_model=llama(1))  # fmt: skip
    trainer.model.eval()
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
        ref = llama(1).eval()(input_ids=batch["input_ids"]).logits
    policy = llama(0).eval()(input_ids=batch["input_ids"]).logits.detach()
    assert torch.allclose(outputs.logits, policy, atol=1e-6)
    task, div, n = hand_terms(policy, ref, batch["labels"], kind, shift=True)
    assert div > 1e-4  # two different models
    assert loss.item() == pytest.approx((task + beta * div) / n, rel=1e-5)


def test_training_loss_is_normalised_by_the_accumulated_batch(tmp_path):
    batch, beta = lm_batch(), 0.3
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=beta), ref_model=llama(1))
    trainer.model.train()
    trainer._num_items, trainer._micro_batches = torch.tensor(20), 4  # 4 micro-batches, 20 items
    loss = trainer.compute_loss(trainer.model, dict(batch))
    with torch.no_grad():
        policy = llama(0)(input_ids=batch["input_ids"]).logits
        ref = llama(1).eval()(input_ids=batch["input_ids"]).logits
    task, div, _ = hand_terms(policy, ref, batch["labels"], "forward", shift=True)
    # Σ over this micro-batch / 20 items, times the 4 micro-batches the Trainer divides by
    assert loss.item() == pytest.approx((task + beta * div) / 20 * 4, rel=1e-5)
    assert trainer._last_loss is not None and loss.requires_grad


def test_get_batch_samples_counts_the_shifted_items(tmp_path):
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=0.1))
    batches = [lm_batch(), {**lm_batch(), "labels": torch.full((3, 6), 7)}]
    samples, _ = trainer.get_batch_samples(iter(batches), 2, torch.device("cpu"))
    assert len(samples) == 2 and trainer._micro_batches == 2
    assert trainer._num_items.item() == 7 + 3 * 5  # the second batch: every shifted label


@pytest.mark.parametrize("kind", ["causal", "classification"])
def test_accumulated_steps_at_beta_zero_are_the_stock_trainers_big_batch(tmp_path, kind):
    # The stock Trainer's own accumulation on BERT sums the micro-batches' means (its forward
    # takes **kwargs, so it does not divide by the steps): compared with its one batch of 4.
    if kind == "causal":
        make, data = llama, lm_dataset()
    else:
        g = torch.Generator().manual_seed(2)
        ids = torch.randint(1000, 2000, (8, 5), generator=g)
        data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": [0, 1, 2, 1, 0, 2, 2, 1]})
        make = lambda seed: disable_dropout(build_tiny_bert(num_labels=3, seed=seed))  # noqa: E731
    ours = KLTrainer(make(0), train_args(tmp_path / "a", beta=0.0, per_device_train_batch_size=2,
                                         gradient_accumulation_steps=2),
                     train_dataset=data, data_collator=collate)  # fmt: skip
    stock = Trainer(model=make(0), args=stock_args(tmp_path / "b", per_device_train_batch_size=4),
                    train_dataset=data, data_collator=collate)  # fmt: skip
    ours.train()
    stock.train()
    ours_losses = [r["loss"] for r in ours.state.log_history if "loss" in r]
    stock_losses = [r["loss"] for r in stock.state.log_history if "loss" in r]
    assert ours_losses == pytest.approx(stock_losses, rel=1e-5) and len(ours_losses) == 2
    for (name, a), b in zip(ours.model.named_parameters(), stock.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not torch.allclose(next(ours.model.parameters()), next(make(0).parameters()))


# ----------------------------------------------------------------------------- other methods


def test_decay_parameter_names_both_ways(tmp_path):
    model = build_tiny_bert(num_labels=2, seed=0)
    stock = Trainer(model=model, args=stock_args(tmp_path / "b"))
    default = KLTrainer(model, train_args(tmp_path / "a"))
    assert default.get_decay_parameter_names(model) == stock.get_decay_parameter_names(model)
    assert any("bias" in n for n, _ in model.named_parameters())
    assert not any("bias" in n for n in default.get_decay_parameter_names(model))
    every = KLTrainer(model, train_args(tmp_path / "c", decay_all_parameters=True))
    assert every.get_decay_parameter_names(model) == [n for n, _ in model.named_parameters()]


def test_prediction_step_keeps_the_reference_column_from_the_model(tmp_path):
    trainer = KLTrainer(build_tiny_bert(num_labels=3, seed=0), train_args(tmp_path, beta=2.0))
    trainer.model.eval()
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2002, 102, 0]])
    mask = (ids != 0).long()
    ref = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 3.0]])
    inputs = {"input_ids": ids, "attention_mask": mask, "ref_logits": ref}
    with torch.no_grad():
        want = trainer.model(input_ids=ids, attention_mask=mask).logits
    loss, logits, labels = trainer.prediction_step(trainer.model, inputs, False)
    assert loss is None and labels is None and torch.allclose(logits, want, atol=1e-6)
    y = torch.tensor([2, 0])
    loss, logits, labels = trainer.prediction_step(trainer.model, {**inputs, "labels": y}, False)
    task, div, n = hand_terms(want, ref, y, "forward", shift=False)
    assert n == 2 and loss.item() == pytest.approx((task + 2.0 * div) / n, rel=1e-5)
    assert torch.equal(labels, y)


def test_reference_logits_without_a_reference(tmp_path):
    trainer = KLTrainer(llama(0), train_args(tmp_path))
    trainer.ref_model = None
    with pytest.raises(ValueError, match="no reference model"):
        trainer.reference_logits(trainer.model, {"input_ids": torch.tensor([[1, 2]])})


def test_log_adds_the_means_under_the_logs_prefix(tmp_path):
    trainer = KLTrainer(llama(0), train_args(tmp_path))
    trainer._sums = {"train": torch.tensor([3.0, 1.5, 3.0]), "eval": torch.tensor([2.0, 1.0, 4.0])}
    logs = {"loss": 9.0}
    trainer.log(logs)
    assert logs["task_loss"] == 1.0 and logs["divergence"] == 0.5
    test_logs = {"test_runtime": 0.1, "test_loss": 2.0}  # evaluate(metric_key_prefix="test")
    trainer.log(test_logs)
    assert test_logs["test_task_loss"] == 0.5 and test_logs["test_divergence"] == 0.25
    plain, empty = {"learning_rate": 1e-3}, {"loss": 1.0}  # no loss / nothing recorded since
    trainer.log(plain)
    trainer.log(empty)
    assert "task_loss" not in plain and "task_loss" not in empty
    assert trainer.state.log_history[0]["task_loss"] == 1.0


def test_eval_means_are_the_trainers_eval_loss_with_an_uneven_last_batch(tmp_path):
    # 8 rows in batches of 3, 3, 2: the Trainer weights each batch's loss by its rows; the logged
    # task loss and divergence weighted every batch alike, so task + β·div missed eval_loss.
    beta, data = 2.0, lm_dataset()
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=beta, per_device_eval_batch_size=3),
                        ref_model=llama(1), eval_dataset=data, data_collator=collate)  # fmt: skip
    metrics = trainer.evaluate()
    combined = metrics["eval_task_loss"] + beta * metrics["eval_divergence"]
    assert metrics["eval_divergence"] > 1e-4
    assert combined == pytest.approx(metrics["eval_loss"], rel=1e-6)


def test_predict_does_not_leak_into_the_next_evaluation(tmp_path):
    # predict() records eval sums but never logs them: the next evaluate() averaged them in.
    data = lm_dataset()
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=0.5, per_device_eval_batch_size=4),
                        ref_model=llama(1), eval_dataset=data, data_collator=collate)  # fmt: skip
    before = trainer.evaluate()
    trainer.predict(data.select([1]))
    after = trainer.evaluate()
    for key in ("eval_loss", "eval_task_loss", "eval_divergence"):
        assert after[key] == pytest.approx(before[key], rel=1e-6), key


# ----------------------------------------------------------------------------- construction


def test_construction_edges(tmp_path):
    with pytest.raises(ValueError, match="KLTrainingArguments"):
        KLTrainer(llama(0), stock_args(tmp_path))
    data = lm_dataset(4)
    with_ref = data.add_column("ref_logits", [[0.0]] * 4)
    # precomputed logits in both datasets: no reference; in the training set only, or an eval
    # dict: a frozen copy, which the eval batches need
    none = KLTrainer(llama(0), train_args(tmp_path), train_dataset=with_ref, eval_dataset=with_ref)
    assert none.ref_model is None
    for eval_data in (data, {"a": with_ref}):
        trainer = KLTrainer(llama(0), train_args(tmp_path), train_dataset=with_ref,
                            eval_dataset=eval_data)  # fmt: skip
        assert trainer.ref_model is not None and trainer.ref_model is not trainer.model


@pytest.mark.parametrize("shift", [False, True])
def test_shift_labels_overrides_the_model_kind(tmp_path, shift):
    batch = lm_batch()
    batch["labels"][2, :3] = torch.tensor([1, 2, 3])  # row 2 gets labels before position 3
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=0.0, shift_labels=shift))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        logits = llama(0).eval()(input_ids=batch["input_ids"]).logits
    task, _, n = hand_terms(logits, logits, batch["labels"], "forward", shift=shift)
    assert trainer.shift is shift and loss == pytest.approx(task / n, rel=1e-5)


def test_lora_policy_is_its_own_reference(tmp_path):
    batch = lm_batch()
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=5.0, lora_r=2))
    assert trainer.ref_model is None
    with torch.no_grad():  # LoRA's B is 0 at the start: KL to the adapter-free model is 0
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        policy = trainer.model(input_ids=batch["input_ids"]).logits
        with trainer.model.disable_adapter():
            ref = trainer.model(input_ids=batch["input_ids"]).logits
    task, div, n = hand_terms(policy, ref, batch["labels"], "forward", shift=True)
    assert div > 1e-4 and loss == pytest.approx((task + 5.0 * div) / n, rel=1e-5)


# ------------------------------------------------------------- training_step, evaluation_loop


def step_both(tmp_path, batches, beta=0.0, ref=None):
    """One training_step per micro-batch of KLTrainer and the stock Trainer (same init)."""
    steps = len(batches)
    args = train_args(tmp_path / "a", beta=beta, gradient_accumulation_steps=steps)
    ours = KLTrainer(llama(0), args, ref_model=ref)
    stock = Trainer(model=llama(0),
                    args=stock_args(tmp_path / "b", gradient_accumulation_steps=steps))  # fmt: skip
    out = []
    for trainer in (ours, stock):
        trainer.current_gradient_accumulation_steps = steps  # set by the training loop
        model = trainer.model.train()
        _, n_items = trainer.get_batch_samples(iter(batches), len(batches), torch.device("cpu"))
        losses = [trainer.training_step(model, dict(b), n_items) for b in batches]
        out.append((losses, {name: p.grad.clone() for name, p in model.named_parameters()}))
    return ours, out


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_training_step_at_beta_zero_is_the_stock_trainers(tmp_path, micro_batches):
    first = lm_batch()
    second = {k: v.flip(0) for k, v in lm_batch().items()}
    second["labels"][:, :3] = -100
    _, ((ours, ours_grads), (stock, stock_grads)) = step_both(
        tmp_path, [first, second][:micro_batches]
    )
    for a, b in zip(ours, stock, strict=True):
        assert not a.requires_grad and a.item() == pytest.approx(b.item(), rel=1e-5)
    for name, grad in ours_grads.items():
        assert torch.allclose(grad, stock_grads[name], rtol=1e-4, atol=1e-7), name


def test_training_step_at_beta_above_zero_is_the_float64_loss(tmp_path):
    batch, beta = lm_batch(), 0.8
    ours, ((losses, grads), _) = step_both(tmp_path, [batch], beta=beta, ref=llama(1))
    with torch.no_grad():
        policy = llama(0)(input_ids=batch["input_ids"]).logits
        ref = llama(1).eval()(input_ids=batch["input_ids"]).logits
    task, div, n = hand_terms(policy, ref, batch["labels"], "forward", shift=True)
    assert losses[0].item() == pytest.approx((task + beta * div) / n, rel=1e-5)
    assert any(g.abs().sum() > 0 for g in grads.values())


def test_training_step_refuses_a_trainer_that_divides_by_another_count(tmp_path, monkeypatch):
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=0.5), ref_model=llama(1))
    trainer.get_batch_samples(iter([lm_batch()]), 1, torch.device("cpu"))
    trainer.current_gradient_accumulation_steps = 1
    monkeypatch.setattr(trainer, "_divisor", lambda: 3)  # what another transformers might do
    with pytest.raises(RuntimeError, match="KLTrainer expected loss / 3"):
        trainer.training_step(trainer.model.train(), lm_batch())


def eval_both(tmp_path, batch_size, beta=0.0, ref=None):
    data = lm_dataset()
    ours = KLTrainer(llama(0), train_args(tmp_path / "a", beta=beta,
                                          per_device_eval_batch_size=batch_size),
                     ref_model=ref, data_collator=collate)  # fmt: skip
    stock = Trainer(model=llama(0), args=stock_args(tmp_path / "b",
                                                    per_device_eval_batch_size=batch_size),
                    data_collator=collate)  # fmt: skip
    return [
        t.evaluation_loop(
            t.get_eval_dataloader(data),
            "Evaluation",
            prediction_loss_only=False,
            metric_key_prefix="val",
        )  # fmt: skip
        for t in (ours, stock)
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_evaluation_loop_at_beta_zero_is_the_stock_trainers(tmp_path, batch_size):
    ours, stock = eval_both(tmp_path, batch_size)
    assert ours.num_samples == stock.num_samples == 8
    assert ours.metrics["val_loss"] == pytest.approx(stock.metrics["val_loss"], rel=1e-6)
    assert torch.allclose(torch.as_tensor(ours.predictions), torch.as_tensor(stock.predictions),
                          atol=1e-6)  # fmt: skip
    assert (ours.label_ids == stock.label_ids).all() and (ours.label_ids == -100).any()


def test_evaluation_loop_at_beta_above_zero_weights_each_batch_by_its_rows(tmp_path):
    beta, data = 1.5, lm_dataset()
    ours, _ = eval_both(tmp_path, 3, beta=beta, ref=llama(1))
    total = 0.0
    for start in range(0, 8, 3):
        rows = data[start : start + 3]
        ids, labels = torch.tensor(rows["input_ids"]), torch.tensor(rows["labels"])
        with torch.no_grad():
            policy = llama(0).eval()(input_ids=ids).logits
            ref = llama(1).eval()(input_ids=ids).logits
        task, div, n = hand_terms(policy, ref, labels, "forward", shift=True)
        total += len(ids) * (task + beta * div) / n
    assert ours.metrics["val_loss"] == pytest.approx(total / 8, rel=1e-5)


def test_evaluation_loop_starts_its_means_afresh(tmp_path):
    data = lm_dataset()
    trainer = KLTrainer(llama(0), train_args(tmp_path, beta=0.5, per_device_eval_batch_size=4),
                        ref_model=llama(1), data_collator=collate)  # fmt: skip
    trainer.predict(data.select([0, 1]))
    assert "eval" in trainer._sums  # predict recorded batches but never logged them
    trainer.evaluation_loop(trainer.get_eval_dataloader(data), "Evaluation",
                            metric_key_prefix="eval")  # fmt: skip
    sums = trainer._sums["eval"]
    assert sums[2].item() == 8  # rows of this loop only, not 10
