"""Issue 30, fault 2: every ``TrainingArguments`` field that changes what the stock Trainer computes
as its loss either works in ``KLTrainer`` exactly as in the stock Trainer (checked against
``transformers.Trainer.compute_loss`` and a float64 hand computation) or raises a ValueError that
names the field. ``label_smoothing_factor`` used to be ignored silently."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from kl_helpers.models import build_tiny_bert
from kl_helpers.trainer.kl_trainer import REFUSED_LOSS_FLAGS, KLTrainer, KLTrainingArguments
from tests.trainer.test_kl_trainer import tiny_causal_lm
from tests.trainer.trainer_args import train_args

EPS = 0.4  # large, so that on near-uniform random models smoothing moves the loss well past 1e-5
# Fields whose name says they may touch the loss, and what KLTrainer does with each.
LOSS_FIELDS = {
    "label_smoothing_factor": "applied to the task term as the stock LabelSmoother does",
    "average_tokens_across_devices": "True is what KLTrainer does; False refused on >1 process",
    "label_names": "refused unless ['labels']",
    "neftune_noise_alpha": "refused",
    "prediction_loss_only": "evaluation output only, the loss is unchanged",
    "include_num_input_tokens_seen": "a logged counter, the loss is unchanged",
    "hub_token": "not about the loss",
}


def causal_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (3, 7), generator=g)
    labels = ids.clone()
    labels[0, :2] = -100  # a prompt the loss skips
    labels[2, 5:] = -100  # padding
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def classification_batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 2000, (4, 6), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([0, 2, 1, 2]),
    }


def smoothed_nll_float64(logits: torch.Tensor, labels: torch.Tensor, eps: float, shift: bool):
    """Mean over labelled items of (1 − ε)(−log p_y) + ε·mean_c(−log p_c), in float64."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    logp = F.log_softmax(logits.double(), dim=-1)
    keep = labels != -100
    rows, y = logp[keep], labels[keep]
    nll = -rows.gather(-1, y[:, None]).squeeze(-1)
    return float(((1 - eps) * nll - eps * rows.mean(-1)).mean())


def kl_loss(model, tmp_path, batch, **kw) -> float:
    trainer = KLTrainer(model, train_args(tmp_path, **kw))
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, dict(batch)))


def stock_loss(model, tmp_path, batch, eps: float) -> float:
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                             label_smoothing_factor=eps)  # fmt: skip
    trainer = Trainer(model=model, args=args)
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, dict(batch)))


@pytest.mark.parametrize("kind", ["causal", "classification"])
def test_label_smoothing_matches_the_stock_trainer_and_float64(tmp_path, kind):
    make, batch = {
        "causal": (lambda: tiny_causal_lm(seed=0), causal_batch()),
        "classification": (lambda: build_tiny_bert(num_labels=3, seed=0), classification_batch()),
    }[kind]
    model = make().eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    hand = smoothed_nll_float64(logits, batch["labels"], EPS, shift=kind == "causal")
    stock = stock_loss(make(), tmp_path / "stock", batch, EPS)
    ours = kl_loss(make(), tmp_path / "kl", batch, beta=0.0, label_smoothing_factor=EPS)
    plain = kl_loss(make(), tmp_path / "plain", batch, beta=0.0)
    assert stock == pytest.approx(hand, abs=1e-5)
    assert ours == pytest.approx(hand, abs=1e-5)
    assert abs(plain - hand) > 1e-4, "smoothing must change the loss (10x the tolerance)"


def test_label_smoothing_leaves_the_divergence_alone(tmp_path):
    batch = causal_batch()
    ref = tiny_causal_lm(seed=1)

    def loss(beta, eps, name):
        trainer = KLTrainer(tiny_causal_lm(seed=0), train_args(tmp_path / name, beta=beta,
                            label_smoothing_factor=eps), ref_model=ref)  # fmt: skip
        trainer.model.eval()
        with torch.no_grad():
            return float(trainer.compute_loss(trainer.model, dict(batch)))

    smoothed = loss(0.5, EPS, "a") - loss(0.0, EPS, "b")
    plain = loss(0.5, 0.0, "c") - loss(0.0, 0.0, "d")
    assert smoothed == pytest.approx(plain, abs=1e-6) and plain > 0


@pytest.mark.parametrize(
    ("field", "value"), [("label_names", ["target"]), ("neftune_noise_alpha", 5.0)]
)
def test_refused_flags_raise_naming_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        train_args(tmp_path, **{field: value})


def test_label_names_of_labels_is_accepted(tmp_path):
    assert train_args(tmp_path, label_names=["labels"]).label_names == ["labels"]


def test_compute_loss_func_raises(tmp_path):
    with pytest.raises(ValueError, match="compute_loss_func"):
        KLTrainer(tiny_causal_lm(seed=0), train_args(tmp_path), compute_loss_func=lambda *a, **k: 0)


def test_per_device_token_averaging_is_refused_on_several_processes(tmp_path, monkeypatch):
    train_args(tmp_path, average_tokens_across_devices=False)  # one process: the same loss
    monkeypatch.setattr(KLTrainingArguments, "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match="average_tokens_across_devices"):
        train_args(tmp_path, average_tokens_across_devices=False)


def test_every_loss_field_of_training_arguments_is_triaged():
    """A transformers release that adds a field about the loss fails here until it is handled."""
    words = ("loss", "label", "smooth", "average", "neftune", "token", "num_items")
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert {n for n in names if any(w in n for w in words)} <= set(LOSS_FIELDS)
    assert set(REFUSED_LOSS_FLAGS) <= set(LOSS_FIELDS)
