"""What ``KLTrainer`` needs around the core: model-kind detection, the reference under
accelerate (DDP, FSDP, DeepSpeed), reference logits for a dataset, LoRA and log helpers.
Introduced in notebook 12.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from kl_helpers._validate import integer
from kl_helpers.reference import logits_once, make_reference, predict_logits, reference_view
from kl_helpers.regularizer import IGNORE_INDEX

REF_LOGITS_COLUMN = "ref_logits"  # dataset column holding precomputed reference logits
LOG_KEYS = ("task_loss", "divergence")  # what the trainer adds to each training/eval log
WRAPPERS = (
    "DistributedDataParallel",
    "DataParallel",
    "FullyShardedDataParallel",
    "DeepSpeedEngine",
)


def unwrap_model(model: torch.nn.Module) -> tuple[torch.nn.Module, str | None]:
    """The transformers model inside DDP/``torch.compile``/PEFT wrappers, and the PEFT task type."""
    task_type = None
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
            config = model.peft_config.get(getattr(model, "active_adapter", "default"))
            task_type = str(getattr(config, "task_type", None) or "") or task_type
            model = model.get_base_model()
        elif type(model).__name__ in WRAPPERS:
            model = model.module
        else:
            return model, task_type


def is_causal_lm(model: torch.nn.Module) -> bool:
    """True for a causal LM (token labels shifted by one), False for the other transformers heads.

    Decided from the class hierarchy (subclasses count), the PEFT task type and the model's
    ``loss_type``, through DDP / ``torch.compile`` / PEFT wrappers; a ValueError when unsure.
    """
    from transformers.models.auto import modeling_auto as auto

    base, task_type = unwrap_model(model)
    if task_type:
        return task_type.rsplit(".", 1)[-1] == "CAUSAL_LM"
    names = {cls.__name__ for cls in type(base).__mro__}
    causal = set(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if names & causal or getattr(base, "loss_type", None) == "ForCausalLM":
        return True
    others = set()
    for mapping in (
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
        "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
        "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
        "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
        "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    ):
        others |= set(getattr(auto, mapping, {}).values())
    if names & others:
        return False
    raise ValueError(
        f"cannot tell whether {type(base).__name__} is a causal LM (labels shifted by one); "
        "set shift_labels=True or False in KLTrainingArguments"
    )


def deepspeed_zero_stage(accelerator: Any) -> int | None:
    """ZeRO stage of a DeepSpeed run (``--deepspeed`` or ``accelerate launch --use_deepspeed``)."""
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    return None if plugin is None else int(plugin.zero_stage)


def is_partitioned(model: torch.nn.Module) -> bool:
    """True if the weights are not all here (ZeRO-3 partitioned or on the meta device)."""
    return any(p.device.type == "meta" or hasattr(p, "ds_id") for p in model.parameters())


def copy_as_reference(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` as the reference, on its device; refused for partitioned
    (ZeRO-3) weights."""
    if is_partitioned(model):
        raise ValueError(
            "pass ref_model explicitly (or precompute reference logits): the model's weights are "
            "partitioned (DeepSpeed ZeRO-3 / meta), so a copy of it is not a usable reference"
        )
    return make_reference(model)


def prepare_reference(
    ref_model: torch.nn.Module, accelerator: Any, device: torch.device | str
) -> torch.nn.Module:
    """Put the frozen reference under accelerate in evaluation mode, as TRL does: same mixed
    precision (autocast) as the policy, never DDP-wrapped; sharded like the policy under
    DeepSpeed ZeRO-3 and FSDP (accelerate's evaluation mode alone would not shard it)."""
    make_reference(ref_model, copy_model=False, device=device)
    if deepspeed_zero_stage(accelerator) == 3:
        return deepspeed_inference_engine(ref_model, accelerator.state.deepspeed_plugin)
    reference = accelerator.prepare_model(ref_model, evaluation_mode=True)
    if getattr(accelerator.state, "fsdp_plugin", None) is not None:
        reference = fsdp_reference(reference, accelerator)
    return reference


def fsdp_reference(model: torch.nn.Module, accelerator: Any) -> torch.nn.Module:
    """Shard a frozen reference with FSDP using the run's FSDP plugin (the arguments accelerate
    gives the policy), so no GPU holds a full copy; eval mode, never stepped."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    if getattr(accelerator, "is_fsdp2", False):
        raise ValueError("FSDP2 is not supported for a live reference: precompute its logits")
    if not isinstance(model, FSDP):
        plugin = accelerator.state.fsdp_plugin
        plugin.set_auto_wrap_policy(model)
        model = FSDP(
            model,
            sharding_strategy=plugin.sharding_strategy or plugin.reshard_after_forward,
            cpu_offload=plugin.cpu_offload,
            auto_wrap_policy=plugin.auto_wrap_policy,
            mixed_precision=plugin.mixed_precision_policy,
            sync_module_states=plugin.sync_module_states,
            backward_prefetch=plugin.backward_prefetch,
            forward_prefetch=plugin.forward_prefetch,
            use_orig_params=plugin.use_orig_params,
            limit_all_gathers=plugin.limit_all_gathers,
            device_id=accelerator.device,
        )
    model.eval()
    return model


def deepspeed_inference_engine(model: torch.nn.Module, plugin: Any) -> torch.nn.Module:
    """Shard a frozen reference with ZeRO-3 for inference only (no optimizer), as TRL does."""
    import deepspeed  # only present when DeepSpeed training was asked for

    config = copy.deepcopy(plugin.deepspeed_config)
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    zero = config.setdefault("zero_optimization", {})
    if hidden is not None:
        for key, value in (
            ("reduce_bucket_size", hidden * hidden),
            ("stage3_param_persistence_threshold", 10 * hidden),
            ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
        ):
            if zero.get(key) in (None, "auto"):
                zero[key] = value
    model.requires_grad_(False)
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine


def lora_model(model: torch.nn.Module, args: Any) -> torch.nn.Module:
    """``model`` with LoRA adapters from ``args.lora_*`` (task type from the model's kind)."""
    from peft import LoraConfig, TaskType, get_peft_model

    task = TaskType.CAUSAL_LM if is_causal_lm(model) else TaskType.SEQ_CLS
    targets = args.lora_target_modules
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    config = LoraConfig(
        task_type=task,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets or None,
    )
    return get_peft_model(model, config)


def count_label_items(samples: Sequence[Any], shift: bool) -> torch.Tensor:
    """Valid items (labels not −100; token labels from position 1 when ``shift``) in the
    micro-batches of one optimizer step, as a 0-dim int tensor on the labels' device.

    A batch is any mapping with ``labels``: a ``dict`` (``default_data_collator``) or a
    ``BatchEncoding`` (``DataCollatorWithPadding``, ``DataCollatorForLanguageModeling``), which
    is a ``UserDict``, not a ``dict``. Anything else is a ValueError, not a silent fallback.
    """
    counts = []
    for batch in samples:
        labels = batch.get("labels") if isinstance(batch, Mapping) else None
        if labels is None:
            raise ValueError(
                "KLTrainer needs training batches that are mappings with 'labels'; got a "
                f"{type(batch).__name__} without them"
            )
        labels = torch.as_tensor(labels)
        if labels.ndim >= 2 and shift:
            labels = labels[..., 1:]
        counts.append((labels != IGNORE_INDEX).sum())
    return torch.stack(counts).sum() if counts else torch.tensor(0)


def loss_multiplier(micro_batches: int, processes: int) -> float:
    """What ``KLTrainer.compute_loss`` multiplies its Σ/N_global terms by, in training.

    Relied on, and checked at every micro-batch by ``check_trainer_scaling``: the Trainer divides
    the value of ``compute_loss`` by the number of micro-batches of the optimizer step (transformers
    5.15 and 5.24: ``current_gradient_accumulation_steps`` when ``model_accepts_loss_kwargs`` is
    False and there is no ``compute_loss_func``; accelerate's own accumulation is set to 1 step),
    and DDP / FSDP / DeepSpeed average the gradients over the processes. Undoing both makes the
    gradient that of Σ(items)/N_global over the whole accumulated, gathered batch. Both are ints
    ≥ 1 (ValueError otherwise).
    """
    micro_batches, processes = (
        integer(micro_batches, "micro_batches"),
        integer(processes, "processes"),
    )
    if micro_batches < 1 or processes < 1:
        raise ValueError(
            f"micro_batches and processes must be >= 1, got {micro_batches}, {processes}"
        )
    return float(micro_batches * processes)


def check_trainer_scaling(returned: torch.Tensor, loss: torch.Tensor, micro_batches: int) -> None:
    """Raise a RuntimeError unless ``training_step`` returned ``loss / micro_batches`` (the
    division ``loss_multiplier`` undoes); another transformers version may scale otherwise.
    ``micro_batches`` is an int ≥ 1 (ValueError otherwise)."""
    micro_batches = integer(micro_batches, "micro_batches")
    if micro_batches < 1:
        raise ValueError(f"micro_batches must be >= 1, got {micro_batches}")
    want = loss.detach().float() / micro_batches
    got = returned.detach().float().reshape(want.shape).to(want.device)
    if not torch.allclose(got, want, rtol=1e-5, atol=0.0, equal_nan=True):
        raise RuntimeError(
            f"the Trainer scaled the loss to {got.item():.6g}, KLTrainer expected loss / "
            f"{micro_batches} = {want.item():.6g}: this transformers version divides by "
            "something else, so accumulation would no longer equal one big batch"
        )


def tokenize_dataset(
    dataset: Any, tokenizer: Any, max_length: int = 128, text_column: str = "text"
):
    """Tokenise ``text_column`` of a ``datasets.Dataset``, truncated to ``max_length`` tokens; no
    padding (the collator pads). ``max_length`` is an int ≥ 1 and ≥ the special tokens the
    tokenizer adds (2 for BERT's [CLS] … [SEP]): below that the tokenizer did not truncate at all,
    so it is a ValueError."""
    max_length = integer(max_length, "max_length")
    specials = getattr(tokenizer, "num_special_tokens_to_add", lambda: 0)()
    if max_length < max(1, specials):
        raise ValueError(
            f"max_length must be >= {max(1, specials)} (the tokenizer adds {specials} special "
            f"tokens, and below that it does not truncate), got {max_length}"
        )

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    return dataset.map(encode, batched=True, remove_columns=[text_column])


def add_reference_logits(
    dataset: Any,
    ref_model: torch.nn.Module,
    data_collator: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int = 32,
    column: str = REF_LOGITS_COLUMN,
    device: torch.device | str | None = None,
):
    """Return ``dataset`` plus a column of the reference's logits ``(C,)`` per example, stored as
    Python lists (the model runs on ``device``, default its own).

    For a fixed classification dataset the frozen reference's logits never change, so one pass
    (``kl_helpers.reference.logits_once``) replaces a reference forward at every step.
    Token-level (LM) logits are refused: ``T × V`` floats per example is too much to store.
    ``batch_size`` is an int ≥ 1 (ValueError otherwise).
    """
    batch_size = integer(batch_size, "batch_size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        ref_model.to(device)
    features = [dataset[i] for i in range(len(dataset))]
    skip = ("labels", "label", column)
    batches = (
        {k: v for k, v in data_collator(features[s : s + batch_size]).items() if k not in skip}
        for s in range(0, len(features), batch_size)
    )
    rows: list[list[float]] = []
    for logits in logits_once(ref_model, batches):
        if logits.ndim != 2:
            raise ValueError(
                f"precomputed reference logits are for classification (B, C); got "
                f"{tuple(logits.shape)}"
            )
        rows.extend(logits.cpu().tolist())
    if column in dataset.column_names:
        dataset = dataset.remove_columns(column)
    return dataset.add_column(column, rows)


def num_labels_of(dataset: Any, column: str = "label") -> int:
    """Number of classes of a dataset: its ``ClassLabel`` feature, else the largest label + 1.

    Labels must be integers ≥ 0 (Python or NumPy; ValueError for none, -100, 1.5 or True: a
    float label was truncated, 1.5 counted as class 1)."""
    feature = getattr(dataset, "features", {}).get(column)
    if getattr(feature, "num_classes", None):
        return int(feature.num_classes)
    raw = list(dataset[column])
    try:
        labels = [integer(y, column) for y in raw]
    except ValueError:
        labels = []
    if not labels or min(labels) < 0:
        raise ValueError(f"labels must be integers >= 0, got {sorted(set(map(str, raw)))[:5]}")
    return max(labels) + 1


def remove_progress_callbacks(trainer: Any) -> Any:
    """Drop the Trainer's progress bar / log printer (for notebooks whose outputs are checked)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    for callback in (PrinterCallback, ProgressCallback, NotebookProgressCallback):
        trainer.remove_callback(callback)
    return trainer


def training_log(log_history: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Per-log-row columns ``step``, ``loss``, ``task_loss``, ``divergence`` from a log history."""
    rows = [row for row in log_history if LOG_KEYS[0] in row and "loss" in row]
    return {key: [float(row[key]) for row in rows] for key in ("step", "loss", *LOG_KEYS)}


def lora_logit_gaps(
    policy: torch.nn.Module, start: torch.nn.Module, data: Any
) -> tuple[float, float]:
    """How far a PEFT ``policy`` trained from ``start`` is from it, in classifier logits over
    ``data`` (an ``Encoded``): (max |adapter-disabled − start|, max |policy − start|) as floats.

    The three logit tables are computed on the policy's device, ``start`` as a copy moved there
    (``start`` stays where it is), so the gaps are not CPU-versus-GPU rounding. Raises
    ``ValueError`` if ``policy`` is not a PEFT model (``reference.reference_view``).
    """
    device = next(policy.parameters()).device
    start_logits = predict_logits(copy.deepcopy(start).to(device), data)
    with reference_view(policy) as reference:
        ref_after = predict_logits(reference, data)
    after = predict_logits(policy, data)
    return (ref_after - start_logits).abs().max().item(), (after - start_logits).abs().max().item()
