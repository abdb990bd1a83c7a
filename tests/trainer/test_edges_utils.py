"""kl_helpers.trainer.utils at its edges (issue 30): count_label_items against loops with -100 and
pad ids, token and class labels, shift on and off, lists, BatchEncoding, no batches and batches
without labels; loss_multiplier/check_trainer_scaling with 0, 2.0 and NaN; num_labels_of with
ClassLabel, plain ints, NumPy ints, -100, floats and bools; training_log with rows missing keys;
unwrap_model and is_causal_lm through PEFT and torch.compile-like wrappers. With fakes (objects
holding only the attributes read; neither DeepSpeed nor several GPUs are here): deepspeed_zero_stage
without a state, without a plugin, with stages 0..3 as ints, NumPy ints and strings; is_partitioned
for whole weights, one meta or ds_id-marked parameter, buffers on meta and no parameters;
fsdp_reference with FSDP replaced by a recording class (every plugin argument passed,
sharding_strategy None falling back to reshard_after_forward, an already wrapped model not wrapped
again, FSDP2 refused, eval mode); deepspeed_inference_engine with a fake deepspeed module (optimizer
and scheduler dropped from a copy of the config, "auto" and missing bucket sizes set from
hidden_size, explicit ones kept, no hidden_size leaving them alone, the weights frozen, the engine
in eval mode). What cannot be tested here: deepspeed.initialize itself, real ZeRO-3 partitioning and
FSDP sharding across processes (they need DeepSpeed and several GPUs; no test in this repository
runs them)."""

from __future__ import annotations

import copy
import math
import sys
from collections import UserDict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kl_helpers.trainer.utils import (
    check_trainer_scaling,
    count_label_items,
    deepspeed_inference_engine,
    deepspeed_zero_stage,
    fsdp_reference,
    is_partitioned,
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


# ----------------------------------------------------------------------------- sharding (fakes)


def test_deepspeed_zero_stage_from_any_accelerator():
    assert deepspeed_zero_stage(object()) is None  # no state at all
    assert deepspeed_zero_stage(SimpleNamespace(state=SimpleNamespace())) is None
    assert (
        deepspeed_zero_stage(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None))) is None
    )
    for stage in (0, 1, 2, 3, np.int64(3), "3"):
        plugin = SimpleNamespace(zero_stage=stage)
        got = deepspeed_zero_stage(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)))
        assert got == int(stage) and type(got) is int


def test_is_partitioned():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    assert not is_partitioned(model)
    assert not is_partitioned(torch.nn.ReLU())  # no parameters: nothing is elsewhere
    with_meta_buffer = torch.nn.Linear(2, 2)
    with_meta_buffer.register_buffer("table", torch.zeros(2, device="meta"))
    assert not is_partitioned(with_meta_buffer)  # buffers are not weights
    model[1].bias.ds_id = 7  # how DeepSpeed ZeRO-3 marks a partitioned parameter
    assert is_partitioned(model)
    meta = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, device="meta"))
    assert is_partitioned(meta)


class RecordingFSDP(torch.nn.Module):
    """Stands in for FullyShardedDataParallel: keeps the module and every keyword."""

    def __init__(self, module, **kwargs):
        super().__init__()
        self.module, self.kwargs = module, kwargs


def fsdp_plugin(**changes):
    calls = []
    values = dict(sharding_strategy="FULL_SHARD", reshard_after_forward=True, cpu_offload="off",
                  auto_wrap_policy="policy", mixed_precision_policy="bf16",
                  sync_module_states=True, backward_prefetch="pre", forward_prefetch=False,
                  use_orig_params=True, limit_all_gathers=True,
                  set_auto_wrap_policy=lambda model: calls.append(model))  # fmt: skip
    values.update(changes)
    return SimpleNamespace(**values), calls


@pytest.mark.parametrize("strategy", ["FULL_SHARD", None])
def test_fsdp_reference_passes_the_plugins_arguments(monkeypatch, strategy):
    import torch.distributed.fsdp as fsdp

    monkeypatch.setattr(fsdp, "FullyShardedDataParallel", RecordingFSDP)
    plugin, calls = fsdp_plugin(sharding_strategy=strategy, reshard_after_forward="RESHARD")
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), device="cuda:3")
    model = torch.nn.Linear(2, 2).train()
    out = fsdp_reference(model, accelerator)
    assert isinstance(out, RecordingFSDP) and out.module is model and calls == [model]
    assert out.kwargs == dict(
        sharding_strategy=strategy or "RESHARD", cpu_offload="off", auto_wrap_policy="policy",
        mixed_precision="bf16", sync_module_states=True, backward_prefetch="pre",
        forward_prefetch=False, use_orig_params=True, limit_all_gathers=True, device_id="cuda:3",
    )  # fmt: skip
    assert not out.training and not model.training
    again = fsdp_reference(out.train(), accelerator)  # already wrapped: only put in eval mode
    assert again is out and not out.training and calls == [model]


def test_fsdp_reference_refuses_fsdp2(monkeypatch):
    plugin, calls = fsdp_plugin()
    accelerator = SimpleNamespace(is_fsdp2=True, state=SimpleNamespace(fsdp_plugin=plugin))
    with pytest.raises(ValueError, match="FSDP2 is not supported"):
        fsdp_reference(torch.nn.Linear(2, 2), accelerator)
    assert calls == []


class FakeEngine:
    def __init__(self, model, config):
        self.model, self.config, self.evaluated = model, config, False

    def eval(self):
        self.evaluated = True
        return self


@pytest.mark.parametrize("hidden", [16, None])
def test_deepspeed_inference_engine_with_a_fake_deepspeed(monkeypatch, hidden):
    calls = []

    def initialize(model, config):
        calls.append(config)
        return FakeEngine(model, config), None, None, None

    monkeypatch.setitem(sys.modules, "deepspeed", SimpleNamespace(initialize=initialize))
    config = {"optimizer": {"type": "AdamW"}, "scheduler": {"type": "WarmupLR"},
              "train_batch_size": 8,
              "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto",
                                    "stage3_prefetch_bucket_size": 123}}  # fmt: skip
    original = copy.deepcopy(config)
    model = torch.nn.Linear(2, 2)
    if hidden is not None:
        model.config = SimpleNamespace(hidden_size=hidden)
    engine = deepspeed_inference_engine(model, SimpleNamespace(deepspeed_config=config))
    assert config == original  # the plugin's own config is untouched
    (used,) = calls
    assert "optimizer" not in used and "scheduler" not in used and used["train_batch_size"] == 8
    zero = used["zero_optimization"]
    if hidden is None:
        assert zero == original["zero_optimization"]  # nothing to size the buckets from
    else:
        assert zero == {"stage": 3, "reduce_bucket_size": hidden * hidden,
                        "stage3_param_persistence_threshold": 10 * hidden,
                        "stage3_prefetch_bucket_size": 123}  # fmt: skip
    assert engine.model is model and engine.evaluated
    assert not any(p.requires_grad for p in model.parameters())
