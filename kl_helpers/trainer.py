"""KL-regularised fine-tuning as a ``transformers.Trainer``: loss = task loss + β·D(policy, ref).

D is picked by one argument, ``divergence``, from the registry ``DIVERGENCES`` (all in nats):
``"forward"`` KL(p_ref‖p_θ) (expectation under the frozen reference), ``"reverse"`` KL(p_θ‖p_ref)
(expectation under the model being trained) and ``"js"``, the generalised Jensen-Shannon
divergence with the reference's weight π in the mixture, which moves from forward-KL-like (π → 0)
to reverse-KL-like (π → 1). Classification heads (logits ``(B, C)``) and causal language models
(logits ``(B, T, V)``: shifted by one, positions labelled −100 dropped, mean over valid tokens)
both work. Every divergence is built on ``kl_helpers.divergences.kl_from_logits``.

The reference model is held by the trainer, not by the trained model: it is frozen, in eval mode,
on ``args.device`` and never handed to accelerate, so DDP/FSDP never wrap it. For a fixed
classification dataset its logits can be computed once (``add_reference_logits``).
Run ``python -m kl_helpers.trainer --help`` for the command-line entry point (torchrun /
accelerate launch). Introduced in notebook 08.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from kl_helpers.divergences import kl_from_logits
from kl_helpers.losses import calculate_cross_entropy_loss

IGNORE_INDEX = -100  # label value of positions that carry no loss (padding, prompt tokens)
REF_LOGITS_COLUMN = "ref_logits"  # dataset column holding precomputed reference logits
LOG_KEYS = ("task_loss", "divergence")  # what the trainer adds to each training/eval log


# ----------------------------------------------------------------------------- pure losses


def generalised_js_from_logits(
    p_logits: torch.Tensor, q_logits: torch.Tensor, weight: float = 0.5
) -> torch.Tensor:
    """Generalised JS_π(P‖Q) = π·KL(P‖M) + (1−π)·KL(Q‖M), M = π·P + (1−π)·Q, per row, in nats.

    ``weight`` is π ∈ (0, 1); π = 0.5 is the usual JS (at most log 2). JS_π/π → KL(P‖Q) as π → 0
    and JS_π/(1−π) → KL(Q‖P) as π → 1. Classes with −inf logits in both P and Q give no NaN.
    """
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the JS mixing weight must be in (0, 1), got {weight}")
    log_p = F.log_softmax(p_logits, dim=-1)
    log_q = F.log_softmax(q_logits, dim=-1)
    # log M by logsumexp; where both are -inf its backward would be exp(-inf + inf) = NaN, so
    # those entries go through finite stand-ins and are set to -inf afterwards (double where).
    both_zero = torch.isneginf(log_p) & torch.isneginf(log_q)
    safe_p = torch.where(both_zero, torch.zeros_like(log_p), log_p)
    safe_q = torch.where(both_zero, torch.zeros_like(log_q), log_q)
    mixed = torch.logsumexp(
        torch.stack([safe_p + math.log(weight), safe_q + math.log1p(-weight)]), dim=0
    )
    log_m = torch.where(both_zero, torch.full_like(mixed, -math.inf), mixed)
    return weight * kl_from_logits(p_logits, log_m) + (1 - weight) * kl_from_logits(q_logits, log_m)


def _forward_kl(policy: torch.Tensor, ref: torch.Tensor, js_weight: float) -> torch.Tensor:
    """KL(p_ref‖p_θ) per row: the reference's probabilities weight the log-ratio."""
    return kl_from_logits(ref.detach(), policy)


def _reverse_kl(policy: torch.Tensor, ref: torch.Tensor, js_weight: float) -> torch.Tensor:
    """KL(p_θ‖p_ref) per row: the trained model's probabilities weight the log-ratio."""
    return kl_from_logits(policy, ref.detach())


def _js(policy: torch.Tensor, ref: torch.Tensor, js_weight: float) -> torch.Tensor:
    """JS_π(p_ref‖p_θ) per row, π = ``js_weight`` the reference's share of the mixture."""
    return generalised_js_from_logits(ref.detach(), policy, js_weight)


# name -> per-row divergence(policy_logits, ref_logits, js_weight), nats; the reference is detached.
DIVERGENCES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "forward": _forward_kl,
    "reverse": _reverse_kl,
    "js": _js,
}


def _check_divergence(name: str) -> None:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; choose one of {sorted(DIVERGENCES)}")


def divergence_from_logits(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    divergence: str = "forward",
    js_weight: float = 0.5,
) -> torch.Tensor:
    """The selected divergence between policy and reference per row (last dim = classes), nats."""
    _check_divergence(divergence)
    return DIVERGENCES[divergence](policy_logits, ref_logits, js_weight)


def valid_token_positions(
    logits: torch.Tensor, labels: torch.Tensor, shift: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align ``(B, T, V)`` logits with ``(B, T)`` labels (shift by one for causal LMs).

    Returns the boolean mask of positions whose label is not −100 and the aligned labels;
    ``logits[..., :-1, :]`` goes with ``labels[..., 1:]`` when ``shift``.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"token-level losses need logits (B, T, V) and labels (B, T); got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if shift:
        labels = labels[:, 1:]
    return labels != IGNORE_INDEX, labels


def kl_regularised_terms(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    divergence: str = "forward",
    js_weight: float = 0.5,
    shift: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(task cross-entropy, divergence to the reference), both in nats, averaged per item.

    Classification: logits ``(B, C)``, labels ``(B,)``, batch means (the forward/reverse values
    equal ``calculate_fkl_loss`` / ``calculate_rkl_loss``). Token level: logits ``(B, T, V)``,
    labels ``(B, T)``; positions labelled −100 are dropped *before* any arithmetic (so −inf
    logits there cannot make NaN) and both terms are means over the valid tokens (0 if none).
    """
    _check_divergence(divergence)
    if ref_logits.shape != policy_logits.shape:
        raise ValueError(
            f"reference logits {tuple(ref_logits.shape)} do not match the policy's "
            f"{tuple(policy_logits.shape)}"
        )
    if policy_logits.ndim == 2:
        task = calculate_cross_entropy_loss(policy_logits, labels)
        return task, divergence_from_logits(policy_logits, ref_logits, divergence, js_weight).mean()
    valid, aligned = valid_token_positions(policy_logits, labels, shift)
    if shift:
        policy_logits, ref_logits = policy_logits[:, :-1], ref_logits[:, :-1]
    policy_rows, ref_rows = policy_logits[valid], ref_logits[valid]  # (N_valid, V)
    n_valid = max(int(valid.sum()), 1)
    task = F.cross_entropy(policy_rows, aligned[valid], reduction="sum") / n_valid
    div = divergence_from_logits(policy_rows, ref_rows, divergence, js_weight).sum() / n_valid
    return task, div


# ----------------------------------------------------------------------------- data helpers


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every ``nn.Dropout``'s p to 0 (in place) so train-mode forwards are repeatable."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def freeze_reference(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """Eval mode, no gradients, on ``device``: how the trainer holds its reference model."""
    model.eval()
    model.requires_grad_(False)
    return model.to(device)


def tokenize_dataset(
    dataset: Any, tokenizer: Any, max_length: int = 128, text_column: str = "text"
):
    """Tokenise ``text_column`` of a ``datasets.Dataset``; no padding (the collator pads)."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    return dataset.map(encode, batched=True, remove_columns=[text_column])


@torch.no_grad()
def add_reference_logits(
    dataset: Any,
    ref_model: torch.nn.Module,
    data_collator: Callable[[list[dict]], dict[str, torch.Tensor]],
    batch_size: int = 32,
    column: str = REF_LOGITS_COLUMN,
    device: torch.device | str | None = None,
):
    """Return ``dataset`` plus a column of the reference's logits ``(C,)`` per example.

    For a fixed classification dataset the frozen reference's logits never change, so one pass
    replaces a reference forward at every step. Token-level (LM) logits are refused: ``T × V``
    floats per example is too much to store.
    """
    device = device or next(ref_model.parameters()).device
    was_training = ref_model.training
    ref_model.eval()
    rows: list[list[float]] = []
    features = [dataset[i] for i in range(len(dataset))]
    for start in range(0, len(features), batch_size):
        batch = data_collator(features[start : start + batch_size])
        batch = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "label", column)}
        logits = ref_model(**batch).logits
        if logits.ndim != 2:
            raise ValueError(
                f"precomputed reference logits are for classification (B, C); got "
                f"{tuple(logits.shape)}"
            )
        rows.extend(logits.float().cpu().tolist())
    ref_model.train(was_training)
    if column in dataset.column_names:
        dataset = dataset.remove_columns(column)
    return dataset.add_column(column, rows)


# ----------------------------------------------------------------------------- the Trainer


@dataclass
class KLTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the regulariser: loss = task + β·D(policy, reference)."""

    beta: float = field(default=0.1, metadata={"help": "β, weight of the divergence (>= 0)."})
    divergence: str = field(
        default="forward",
        metadata={"help": "forward = KL(ref‖policy), reverse = KL(policy‖ref), js = JS_π."},
    )
    js_weight: float = field(
        default=0.5,
        metadata={"help": "π in (0, 1): the reference's share of the JS mixture (js only)."},
    )
    shift_labels: bool | None = field(
        default=None,
        metadata={"help": "Shift token labels by one (causal LM); None: decide from the model."},
    )
    ref_logits_column: str = field(
        default=REF_LOGITS_COLUMN,
        metadata={"help": "Dataset column with precomputed reference logits, if present."},
    )
    disable_dropout: bool = field(
        default=False, metadata={"help": "Set dropout to 0 in the trained model (repeatable)."}
    )

    def __post_init__(self) -> None:
        _check_divergence(self.divergence)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0.0 < self.js_weight < 1.0:
            raise ValueError(f"js_weight must be in (0, 1), got {self.js_weight}")
        super().__post_init__()


def _is_causal_lm(model: torch.nn.Module) -> bool:
    """True for transformers' *ForCausalLM classes (their labels are shifted by one)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return type(model).__name__ in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def _has_column(dataset: Any, column: str) -> bool:
    return dataset is not None and column in (getattr(dataset, "column_names", None) or [])


class KLTrainer(Trainer):
    """``transformers.Trainer`` whose loss is task cross-entropy + β·D(policy, frozen reference).

    ``ref_model=None`` freezes a copy of ``model`` as it is now (the correct start reference),
    unless the datasets carry precomputed reference logits. Logs ``task_loss`` and
    ``divergence`` (nats) next to the Trainer's ``loss``, averaged like it over logging steps,
    gradient-accumulation micro-batches and processes.
    """

    # compute_loss returns a per-micro-batch mean: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: torch.nn.Module,
        args: KLTrainingArguments,
        ref_model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, KLTrainingArguments):
            raise ValueError("KLTrainer needs KLTrainingArguments (beta, divergence, js_weight)")
        if args.disable_dropout:
            disable_dropout(model)
        column = args.ref_logits_column
        precomputed = _has_column(kwargs.get("train_dataset"), column) and (
            kwargs.get("eval_dataset") is None or _has_column(kwargs.get("eval_dataset"), column)
        )
        if ref_model is None and not precomputed:
            if getattr(args, "deepspeed", None) or any(
                p.device.type == "meta" for p in model.parameters()
            ):
                raise ValueError(
                    "pass ref_model explicitly (or precompute reference logits) under DeepSpeed: "
                    "a copy of a ZeRO-partitioned model is not a usable reference"
                )
            ref_model = copy.deepcopy(model)
        super().__init__(model=model, args=args, **kwargs)
        self.ref_model = self._prepare_reference(ref_model)
        self.shift = args.shift_labels if args.shift_labels is not None else _is_causal_lm(model)
        self._sums: dict[str, torch.Tensor] = {}  # mode -> [Σ task, Σ divergence, n micro-batches]

    # -- reference model -------------------------------------------------------------------

    def _prepare_reference(self, ref_model: torch.nn.Module | None) -> torch.nn.Module | None:
        """Freeze the reference and put it where the policy runs; never wrapped in DDP/FSDP."""
        if ref_model is None:
            return None
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if plugin is not None and plugin.zero_stage == 3:
            return _deepspeed_inference_engine(ref_model, plugin.deepspeed_config)
        return freeze_reference(ref_model, self.args.device)

    @torch.no_grad()
    def reference_logits(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Reference logits for a batch (the model inputs, without labels), no gradient."""
        if self.ref_model is None:
            raise ValueError(
                f"no reference model and the batch has no {self.args.ref_logits_column!r} column"
            )
        return self.ref_model(**inputs).logits

    # -- loss and logging ------------------------------------------------------------------

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the precomputed reference-logits column when unused columns are removed."""
        super()._set_signature_columns_if_needed()
        if self.args.ref_logits_column not in self._signature_columns:
            self._signature_columns.append(self.args.ref_logits_column)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Task cross-entropy + β·divergence on one micro-batch (mean per example or token)."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        ref_logits = inputs.pop(self.args.ref_logits_column, None)
        outputs = model(**inputs)
        if ref_logits is None:
            ref_logits = self.reference_logits(inputs)
        task, div = kl_regularised_terms(
            outputs.logits.float(),
            ref_logits.float(),
            labels,
            self.args.divergence,
            self.args.js_weight,
            self.shift,
        )
        self._record("train" if model.training else "eval", task, div)
        loss = task + self.args.beta * div
        return (loss, outputs) if return_outputs else loss

    def _record(self, mode: str, task: torch.Tensor, div: torch.Tensor) -> None:
        row = torch.stack([task.detach(), div.detach(), torch.ones_like(task)])
        self._sums[mode] = self._sums[mode] + row if mode in self._sums else row

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """As the Trainer's, but the reference-logits column never reaches the model."""
        if inputs.get("labels") is None:
            inputs = {k: v for k, v in inputs.items() if k != self.args.ref_logits_column}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean task loss and divergence since the last log (all processes) to ``logs``."""
        # Training logs carry "loss"; evaluate() logs "<prefix>_loss" after eval batches ran.
        if "loss" in logs:
            mode, prefix = "train", ""
        elif "eval" in self._sums:
            mode = "eval"
            prefix = next((k[: -len("loss")] for k in logs if k.endswith("_loss")), None)
        else:
            prefix = None
        if prefix is not None:
            sums = self._sums.pop(mode, None)
            if sums is None:
                sums = torch.zeros(3, device=self.args.device)
            # Every process logs at the same steps, so this collective is matched on all of them.
            total = self.accelerator.reduce(sums.to(self.args.device), reduction="sum")
            if total[2] > 0:
                logs[f"{prefix}{LOG_KEYS[0]}"] = (total[0] / total[2]).item()
                logs[f"{prefix}{LOG_KEYS[1]}"] = (total[1] / total[2]).item()
        super().log(logs, start_time)


def _deepspeed_inference_engine(model: torch.nn.Module, ds_config: dict) -> torch.nn.Module:
    """Shard a frozen reference with ZeRO-3 for inference only (no optimizer), as TRL does."""
    import deepspeed  # only present when DeepSpeed training was asked for

    config = copy.deepcopy(ds_config)
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


METHOD_TO_DIVERGENCE = {"sft": "forward", "fkl": "forward", "rkl": "reverse"}  # engine -> trainer


def kl_training_arguments(config: Any, output_dir: str, **overrides: Any) -> KLTrainingArguments:
    """``KLTrainingArguments`` doing what the notebook-06 engine does for an ``ExperimentConfig``.

    Same β, direction, lr, weight decay, epochs, batch size and seed; constant learning rate and
    no gradient clipping (the engine has neither); one log row per optimizer step.
    """
    values: dict[str, Any] = dict(
        output_dir=output_dir,
        beta=float(config.beta),
        divergence=METHOD_TO_DIVERGENCE[config.method],
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        seed=config.seed,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning warns and does nothing on CPU
    )
    values.update(overrides)
    return KLTrainingArguments(**values)


def remove_progress_callbacks(trainer: Trainer) -> Trainer:
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


# ----------------------------------------------------------------------------- command line


@dataclass
class ScriptArguments:
    """What the command line trains: which model, which data."""

    model: str = field(
        default="minilm",
        metadata={"help": "minilm (bundled), bert-base-uncased, a local folder, or tiny (tests)."},
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "CSV/JSON with 'text' and 'label' columns; default: the article's data."},
    )
    article_data: str = field(
        default="train",
        metadata={"help": "Without --train_file: train (the 7-sentence split) or all (all 9)."},
    )
    max_length: int = field(default=128, metadata={"help": "Truncate texts to this many tokens."})
    precompute_reference: bool = field(
        default=True, metadata={"help": "Compute the reference logits once, before training."}
    )
    num_train_examples: int | None = field(
        default=None, metadata={"help": "Use only the first N training examples."}
    )


def _load_texts(script: ScriptArguments):
    from datasets import load_dataset

    from kl_helpers.data import article_dataset, article_split

    if script.train_file is None:
        data = article_dataset() if script.article_data == "all" else article_split()["train"]
    else:
        kind = "json" if script.train_file.endswith((".json", ".jsonl")) else "csv"
        data = load_dataset(kind, data_files=script.train_file, split="train")
    if script.num_train_examples is not None:
        data = data.select(range(min(script.num_train_examples, len(data))))
    return data


def build_classification_trainer(
    script: ScriptArguments, args: KLTrainingArguments, train_dataset: Any = None
) -> KLTrainer:
    """Tokeniser, model (seeded head), data and ``KLTrainer`` as the command line builds them."""
    from transformers import DataCollatorWithPadding

    from kl_helpers.models import build_tiny_bert, load_classifier, load_tokenizer, resolve_model

    data = train_dataset if train_dataset is not None else _load_texts(script)
    num_labels = max(3, int(max(data["label"])) + 1)
    tiny = script.model == "tiny"
    choice = resolve_model("minilm" if tiny else script.model)
    tokenizer = load_tokenizer(choice)
    if tiny:
        model = build_tiny_bert(num_labels=num_labels, seed=args.seed)
    else:
        model = load_classifier(choice, num_labels=num_labels, seed=args.seed)
    if args.disable_dropout:
        disable_dropout(model)
    collator = DataCollatorWithPadding(tokenizer)
    train = tokenize_dataset(data, tokenizer, script.max_length)
    ref_model = None
    if script.precompute_reference:
        reference = freeze_reference(copy.deepcopy(model), args.device)
        train = add_reference_logits(train, reference, collator)
        del reference
    return KLTrainer(
        model=model,
        args=args,
        ref_model=ref_model,
        train_dataset=train,
        data_collator=collator,
        processing_class=tokenizer,
    )


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Command line: train a KL-regularised classifier; writes ``log_history.json`` in output_dir.

    Example: ``torchrun --nproc_per_node=4 -m kl_helpers.trainer --output_dir runs/fkl
    --beta 0.1 --divergence forward --per_device_train_batch_size 2``.
    """
    from transformers import HfArgumentParser

    from kl_helpers.runtime import quiet_libraries

    quiet_libraries()
    parser = HfArgumentParser((ScriptArguments, KLTrainingArguments))
    script, args = parser.parse_args_into_dataclasses(args=list(argv) if argv is not None else None)
    trainer = build_classification_trainer(script, args)
    trainer.train()
    history = trainer.state.log_history
    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "log_history.json").write_text(json.dumps(history, indent=1))
    return history


if __name__ == "__main__":
    main()
