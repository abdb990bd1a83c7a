"""KLTrainer against TRL users' expectations: mixed precision, DeepSpeed, causal-LM detection,
gradient accumulation, temperature / js_weight, num_labels, weight decay, bf16 "auto", LoRA.

Each test here failed on the trainer before the regulariser core (issue 12).
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import DataCollatorWithPadding, default_data_collator

from kl_helpers import precision
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.training import autocast_dtype
from kl_helpers.models import build_tiny_bert
from kl_helpers.reference import disable_dropout, is_peft_model, reference_view
from kl_helpers.trainer import utils as trainer_utils
from kl_helpers.trainer.cli import (
    ScriptArguments,
    build_classification_trainer,
    kl_training_arguments,
    main,
)
from kl_helpers.trainer.kl_trainer import KLTrainer, KLTrainingArguments
from tests.trainer.trainer_args import train_args


def args_for(tmp_path, **kw) -> KLTrainingArguments:
    """``train_args`` with one step of batch 4 unless ``kw`` say otherwise."""
    return train_args(tmp_path, **{"per_device_train_batch_size": 4, "max_steps": 1, **kw})


def logs_of(trainer: KLTrainer) -> list[dict]:
    return [row for row in trainer.state.log_history if "task_loss" in row]


def tiny_gpt2(seed: int = 0, vocab: int = 40):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return disable_dropout(GPT2LMHeadModel(config))


def lm_rows() -> dict[str, list[list[int]]]:
    """Four rows of 6 tokens with 1, 5, 3 and 2 valid next-token labels (padding is -100)."""
    ids = [[5, 6, 0, 0, 0, 0], [7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 0, 0], [3, 4, 5, 0, 0, 0]]
    lengths = [2, 6, 4, 3]
    mask = [[1] * n + [0] * (6 - n) for n in lengths]
    labels = [
        [t if m else -100 for t, m in zip(r, mr, strict=True)]
        for r, mr in zip(ids, mask, strict=True)
    ]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def classification_data(tokenizer, n: int = 8):
    from kl_helpers.data.article import article_dataset
    from kl_helpers.trainer.utils import tokenize_dataset

    return tokenize_dataset(article_dataset().select(range(n)), tokenizer)


# ----------------------------------------------------------------------------- mixed precision


def test_bf16_kl_is_exactly_zero_at_step_zero_and_reference_is_prepared(tmp_path, tokenizer):
    data = classification_data(tokenizer)
    model = disable_dropout(build_tiny_bert(num_labels=3, seed=0))
    trainer = KLTrainer(
        model=model,
        args=args_for(tmp_path, bf16=True, beta=0.5, max_steps=2),
        train_dataset=data,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    # Prepared by accelerate in evaluation mode: autocast like the policy, no DDP wrapper, frozen.
    assert hasattr(trainer.ref_model, "_original_forward")
    assert not trainer.ref_model.training
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())
    trainer.train()
    first = logs_of(trainer)[0]
    assert first["divergence"] == 0.0  # same weights, same autocast: exactly zero
    assert logs_of(trainer)[1]["divergence"] > 0


# ----------------------------------------------------------------------------- DeepSpeed


def fake_accelerator(stage: int | None):
    plugin = None if stage is None else SimpleNamespace(zero_stage=stage, deepspeed_config={})
    return SimpleNamespace(
        state=SimpleNamespace(deepspeed_plugin=plugin),
        prepare_model=lambda model, evaluation_mode: ("prepared", model, evaluation_mode),
    )


def test_deepspeed_stage_comes_from_the_accelerate_state(monkeypatch):
    """`accelerate launch --use_deepspeed` only shows in the accelerator's state, not in args."""
    assert trainer_utils.deepspeed_zero_stage(fake_accelerator(None)) is None
    assert trainer_utils.deepspeed_zero_stage(fake_accelerator(3)) == 3
    calls = []
    monkeypatch.setattr(
        trainer_utils, "deepspeed_inference_engine", lambda m, plugin: calls.append(m) or "zero3"
    )
    model = build_tiny_bert(num_labels=2)
    assert trainer_utils.prepare_reference(model, fake_accelerator(3), "cpu") == "zero3"
    assert calls == [model] and not model.training
    for stage in (None, 1, 2):  # ZeRO-1/2 keep whole weights: accelerate prepares the reference
        assert trainer_utils.prepare_reference(model, fake_accelerator(stage), "cpu") == (
            "prepared", model, True,
        )  # fmt: skip


def test_fsdp_runs_shard_the_reference(monkeypatch):
    """accelerate's evaluation mode does not shard under FSDP: the reference is wrapped itself."""
    accelerator = fake_accelerator(None)
    accelerator.state.fsdp_plugin = object()
    monkeypatch.setattr(trainer_utils, "fsdp_reference", lambda m, acc: ("sharded", m[0]))
    model = build_tiny_bert(num_labels=2)
    assert trainer_utils.prepare_reference(model, accelerator, "cpu") == ("sharded", "prepared")


def test_zero1_and_2_may_copy_the_model_but_partitioned_weights_are_refused():
    model = build_tiny_bert(num_labels=2)
    ref = trainer_utils.copy_as_reference(model)  # what ZeRO-1/2 runs do: whole weights
    assert not ref.training and ref is not model
    next(model.parameters()).ds_id = 0  # how DeepSpeed ZeRO-3 marks a partitioned parameter
    with pytest.raises(ValueError, match="partitioned"):
        trainer_utils.copy_as_reference(model)


# ----------------------------------------------------------------------------- causal LM


def test_causal_lm_detection_through_subclasses_peft_and_compile():
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import GPT2LMHeadModel

    class MyLM(GPT2LMHeadModel):
        pass

    lm = tiny_gpt2()
    sub = MyLM(lm.config)
    peft = get_peft_model(tiny_gpt2(), LoraConfig(task_type=TaskType.CAUSAL_LM, r=2))
    assert trainer_utils.is_causal_lm(lm)
    assert trainer_utils.is_causal_lm(sub)
    assert trainer_utils.is_causal_lm(peft)
    assert trainer_utils.is_causal_lm(torch.compile(sub))
    assert not trainer_utils.is_causal_lm(build_tiny_bert(num_labels=2))
    with pytest.raises(ValueError, match="cannot tell whether"):
        trainer_utils.is_causal_lm(torch.nn.Linear(2, 2))


def test_trainer_shifts_labels_for_a_subclassed_lm(tmp_path):
    from datasets import Dataset
    from transformers import GPT2LMHeadModel

    class MyLM(GPT2LMHeadModel):
        pass

    model = disable_dropout(MyLM(tiny_gpt2().config))
    trainer = KLTrainer(
        model=model, args=args_for(tmp_path), train_dataset=Dataset.from_dict(lm_rows()),
        data_collator=default_data_collator,
    )  # fmt: skip
    assert trainer.shift


# ----------------------------------------------------------------------------- accumulation


def test_four_micro_batches_of_one_equal_one_batch_of_four(tmp_path):
    """1 + 5 + 3 + 2 valid tokens: per-token normalisation over the whole accumulated batch."""
    from datasets import Dataset

    data = Dataset.from_dict(lm_rows())
    runs = {}
    for name, (batch, accumulation) in {"one": (4, 1), "four": (1, 4)}.items():
        model, ref = tiny_gpt2(seed=0), tiny_gpt2(seed=1)
        trainer = KLTrainer(
            model=model,
            args=args_for(
                tmp_path / name, per_device_train_batch_size=batch,
                gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.5,
                max_grad_norm=0.0, beta=0.7, divergence="reverse",
            ),
            ref_model=ref, train_dataset=data, data_collator=default_data_collator,
        )  # fmt: skip
        trainer.train()
        runs[name] = (logs_of(trainer)[0], copy.deepcopy(trainer.model.state_dict()))
    (log1, w1), (log4, w4) = runs["one"], runs["four"]
    for key in ("loss", "task_loss", "divergence"):
        assert log4[key] == pytest.approx(log1[key], rel=1e-5), key
    for name in w1:
        torch.testing.assert_close(w4[name], w1[name], rtol=1e-5, atol=1e-6)
    start = tiny_gpt2(seed=0).state_dict()
    assert any(not torch.equal(start[n], w1[n]) for n in w1)  # the step really moved weights


# ----------------------------------------------------------------------------- TRL options


def classification_logs(tmp_path, tokenizer, **kw) -> dict:
    data = classification_data(tokenizer)
    trainer = KLTrainer(
        model=disable_dropout(build_tiny_bert(num_labels=3, seed=0)),
        args=args_for(tmp_path, per_device_train_batch_size=8, beta=1.0, **kw),
        ref_model=build_tiny_bert(num_labels=3, seed=1),
        train_dataset=data,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    return logs_of(trainer)[0]


def test_js_weight_zero_and_one_are_forward_and_reverse(tmp_path, tokenizer):
    fwd = classification_logs(tmp_path / "f", tokenizer, divergence="forward")
    rev = classification_logs(tmp_path / "r", tokenizer, divergence="reverse")
    js0 = classification_logs(tmp_path / "j0", tokenizer, divergence="js", js_weight=0.0)
    js1 = classification_logs(tmp_path / "j1", tokenizer, divergence="js", js_weight=1.0)
    assert js0["divergence"] == pytest.approx(fwd["divergence"], rel=1e-6)
    assert js1["divergence"] == pytest.approx(rev["divergence"], rel=1e-6)
    assert fwd["divergence"] != pytest.approx(rev["divergence"], rel=1e-3)


def test_temperature_softens_both_distributions(tmp_path, tokenizer):
    data = classification_data(tokenizer)
    policy = build_tiny_bert(num_labels=3, seed=0).eval()
    ref = build_tiny_bert(num_labels=3, seed=1).eval()
    batch = DataCollatorWithPadding(tokenizer)([data[i] for i in range(len(data))])
    batch.pop("labels")
    with torch.no_grad():
        p = torch.softmax(policy(**batch).logits.double() / 3.0, -1)
        r = torch.softmax(ref(**batch).logits.double() / 3.0, -1)
    want = (r * (r.log() - p.log())).sum(-1).mean().item()  # forward KL at T = 3
    got = classification_logs(tmp_path, tokenizer, temperature=3.0)["divergence"]
    assert got == pytest.approx(want, rel=1e-2)  # float32 KL of ~2e-5 nats: 3 digits
    assert classification_logs(tmp_path / "t1", tokenizer)["divergence"] > 1.5 * got


def test_num_labels_come_from_the_data(tmp_path):
    csv = tmp_path / "binary.csv"
    csv.write_text("text,label\ngood film,1\nbad film,0\nfine film,1\n")
    script = ScriptArguments(model="tiny", train_file=str(csv), precompute_reference=False)
    trainer = build_classification_trainer(script, args_for(tmp_path / "out"))
    assert trainer.model.config.num_labels == 2


def test_engine_weight_decay_is_on_every_parameter(tmp_path):
    config = ExperimentConfig(method="forward", beta=0.5, weight_decay=0.01, device="cpu")
    args = kl_training_arguments(config, str(tmp_path), use_cpu=True)
    model = build_tiny_bert(num_labels=3)
    trainer = KLTrainer(model=model, args=args, ref_model=build_tiny_bert(num_labels=3))
    optimizer = trainer.create_optimizer()
    decays = {g["weight_decay"] for g in optimizer.param_groups if g["params"]}
    assert decays == {0.01}  # as the engine's AdamW: biases and LayerNorms decay too
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == len(list(model.parameters()))
    default = KLTrainer(
        model=build_tiny_bert(num_labels=3), args=args_for(tmp_path, weight_decay=0.01),
        ref_model=build_tiny_bert(num_labels=3),
    )  # fmt: skip
    assert {g["weight_decay"] for g in default.create_optimizer().param_groups} == {0.0, 0.01}


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_needs_native_bf16(monkeypatch, native):
    """Colab's T4 emulates bf16: is_bf16_supported() says True, but only native counts."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: native or including_emulation,
    )
    cuda = torch.device("cuda")
    want = torch.bfloat16 if native else None
    assert precision.autocast_dtype("auto", cuda) is want
    assert autocast_dtype(ExperimentConfig(), cuda) is want
    assert precision.autocast_dtype("auto", torch.device("cpu")) is None


# ----------------------------------------------------------------------------- LoRA


def test_lora_trains_adapters_and_the_reference_never_changes(tmp_path):
    from datasets import Dataset

    batch = lm_rows()
    inputs = {k: torch.tensor(batch[k]) for k in ("input_ids", "attention_mask")}
    model = tiny_gpt2(seed=0)
    with torch.no_grad():
        base_logits = model(**inputs).logits
    trainer = KLTrainer(
        model=model,
        args=args_for(
            tmp_path, lora_r=4, lora_alpha=8, lora_target_modules="c_attn", max_steps=4,
            learning_rate=5e-2, beta=0.3,
        ),
        train_dataset=Dataset.from_dict(batch), data_collator=default_data_collator,
    )  # fmt: skip
    assert is_peft_model(trainer.model) and trainer.ref_model is None  # no second copy
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    logs = logs_of(trainer)
    assert logs[0]["divergence"] == pytest.approx(0.0, abs=1e-9)  # LoRA starts as the identity
    assert logs[-1]["divergence"] > 1e-4
    with torch.no_grad(), reference_view(trainer.model) as reference:
        assert not reference.training
        torch.testing.assert_close(reference(**inputs).logits, base_logits, rtol=0, atol=0)
    with torch.no_grad():
        assert not torch.allclose(trainer.model(**inputs).logits, base_logits)


def test_command_line_accepts_lora(tmp_path):
    history = main([
        "--model", "tiny", "--article_data", "all", "--num_train_examples", "4",
        "--max_steps", "1", "--logging_steps", "1", "--learning_rate", "1e-3",
        "--lora_r", "2", "--lora_target_modules", "query,value", "--use_cpu", "--disable_dropout",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--output_dir", str(tmp_path), "--per_device_train_batch_size", "4",
    ])  # fmt: skip
    row = next(r for r in history if "divergence" in r)
    assert math.isfinite(row["loss"]) and row["divergence"] == pytest.approx(0.0, abs=1e-9)
