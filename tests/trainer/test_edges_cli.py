"""kl_helpers.trainer.cli at its edges (issue 30): kl_training_arguments against the
ExperimentConfig field by field for SFT (forward at β = 0), forward, reverse and JS (js_weight),
integer β, overrides that replace any value (β, logging, a field the engine never sets), "auto"
precision on the CPU (no mixed precision) and the engine's constants (constant learning rate, no
clipping, one log per step, decay on every parameter); ScriptArguments' defaults, its fields
parsed from a command line by HfArgumentParser (booleans as "false", None kept), article_data
and num_train_examples outside what the help says refused; build_classification_trainer on a
caller's dataset (2 and 4 labels, labels as NumPy ints), the tiny model's dropout off or on as
the arguments say, the same seed giving the same head, and the precomputed reference-logits
column equal to the untrained model's own logits text by text (eval mode, unpadded), or absent
with precompute_reference false. A real checkpoint ("minilm", "bert-base-uncased") is not loaded
here: the bundled tokenizer and a tiny BERT stand in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import HfArgumentParser

from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.models import load_tokenizer, resolve_model
from kl_helpers.trainer.cli import (
    ScriptArguments,
    build_classification_trainer,
    kl_training_arguments,
)
from kl_helpers.trainer.kl_trainer import KLTrainingArguments
from tests.trainer.trainer_args import train_args


@pytest.mark.parametrize(
    ("method", "beta", "js_weight", "divergence"),
    [("sft", 0.0, 0.5, "forward"), ("forward", 2, 0.5, "forward"), ("reverse", 0.1, 0.5, "reverse"),
     ("js", 3.0, 0.25, "js")],
)  # fmt: skip
def test_kl_training_arguments_field_by_field(tmp_path, method, beta, js_weight, divergence):
    config = ExperimentConfig(method=method, beta=beta, js_weight=js_weight, lr=3e-4,
                              weight_decay=0.02, epochs=7, batch_size=5, seed=11,
                              device="cpu")  # fmt: skip
    args = kl_training_arguments(config, str(tmp_path), use_cpu=True)
    assert isinstance(args, KLTrainingArguments)
    assert args.beta == float(beta) and type(args.beta) is float
    assert args.divergence == divergence and args.js_weight == js_weight
    assert (args.learning_rate, args.weight_decay, args.num_train_epochs) == (3e-4, 0.02, 7)
    assert (args.per_device_train_batch_size, args.seed) == (5, 11)
    assert not args.bf16 and not args.fp16  # "auto" on the CPU: fp32
    assert args.decay_all_parameters and args.max_grad_norm == 0.0 and args.logging_steps == 1
    assert args.lr_scheduler_type == "constant" and args.output_dir == str(tmp_path)
    assert args.dataloader_pin_memory == torch.cuda.is_available()


def test_kl_training_arguments_overrides_win(tmp_path):
    config = ExperimentConfig(method="forward", beta=1.0, device="cpu")
    args = kl_training_arguments(config, str(tmp_path), use_cpu=True, beta=0.25, logging_steps=3,
                                 divergence="reverse", max_steps=2)  # fmt: skip
    got = (args.beta, args.logging_steps, args.divergence, args.max_steps)
    assert got == (0.25, 3, "reverse", 2)
    with pytest.raises(ValueError, match="beta"):
        kl_training_arguments(config, str(tmp_path), use_cpu=True, beta=float("nan"))


def test_script_arguments_defaults_and_command_line():
    defaults = ScriptArguments()
    assert (defaults.model, defaults.train_file, defaults.article_data) == ("minilm", None, "train")
    assert (defaults.max_length, defaults.precompute_reference) == (128, True)
    assert defaults.num_train_examples is None
    parser = HfArgumentParser(ScriptArguments)
    (parsed,) = parser.parse_args_into_dataclasses(
        args=["--model", "tiny", "--article_data", "all", "--max_length", "9",
              "--precompute_reference", "false", "--num_train_examples", "3"]
    )  # fmt: skip
    assert parsed == ScriptArguments(model="tiny", article_data="all", max_length=9,
                                     precompute_reference=False, num_train_examples=3)  # fmt: skip
    assert dataclasses.replace(parsed, article_data="train").article_data == "train"


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"article_data": "All"}, "article_data"), ({"article_data": "test"}, "article_data"),
     ({"num_train_examples": 0}, "num_train_examples"),
     ({"num_train_examples": -1}, "num_train_examples"),
     ({"num_train_examples": 2.5}, "num_train_examples")],
)  # fmt: skip
def test_script_arguments_refuse_what_the_help_rules_out(changes, match):
    # Before the fix "All" or "test" silently trained on the 7-sentence train split, and 0 or -1
    # examples selected an empty dataset (range(min(-1, n))) that failed later, elsewhere.
    with pytest.raises(ValueError, match=match):
        ScriptArguments(**changes)


def dataset(labels) -> Dataset:
    texts = ["good film", "bad film", "a fine, long film", "dull", "great plot", "weak plot"]
    return Dataset.from_dict({"text": texts[: len(labels)], "label": list(labels)})


@pytest.mark.parametrize("labels", [[0, 1, 1, 0], list(np.array([3, 0, 2, 1, 3, 0]))])
def test_build_classification_trainer_on_a_callers_dataset(tmp_path, labels):
    script = ScriptArguments(model="tiny", max_length=16)
    args = train_args(tmp_path, seed=3)
    trainer = build_classification_trainer(script, args, train_dataset=dataset(labels))
    model = trainer.model
    assert model.config.num_labels == max(int(y) for y in labels) + 1
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    column = trainer.train_dataset[args.ref_logits_column]
    tokenizer = load_tokenizer(resolve_model("minilm"))
    model.eval()
    with torch.no_grad():
        for text, logits in zip(dataset(labels)["text"], column, strict=True):
            enc = tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
            want = model(**enc).logits[0]
            assert torch.allclose(torch.tensor(logits), want, atol=1e-5), text
    again = build_classification_trainer(script, args, train_dataset=dataset(labels))
    for a, b in zip(again.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)  # the same seed: the same head


def test_build_classification_trainer_without_precomputed_reference(tmp_path):
    script = ScriptArguments(model="tiny", precompute_reference=False)
    args = train_args(tmp_path, disable_dropout=False)
    trainer = build_classification_trainer(script, args, train_dataset=dataset([0, 1, 0]))
    assert args.ref_logits_column not in trainer.train_dataset.column_names
    dropouts = [m.p for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and any(p > 0 for p in dropouts)
