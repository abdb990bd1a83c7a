"""KL-regularised fine-tuning as a ``transformers.Trainer``: loss = task loss + β·D(policy, ref).

D comes from the one regulariser core, ``kl_helpers.regularizer``, with its vocabulary:
``divergence="forward"`` KL(p_ref‖p_θ), ``"reverse"`` KL(p_θ‖p_ref), ``"js"`` the generalised
Jensen-Shannon divergence with ``js_weight`` π the reference's share of the mixture (TRL GKD's
``beta``: π = 0 is forward KL, π = 1 reverse KL), optionally at a ``temperature``; all in nats.
Classification heads (logits ``(B, C)``) and causal LMs (``(B, T, V)``: shifted by one, −100
dropped) both work; both terms are normalised by the valid examples / tokens of the accumulated
batch on all processes, so any accumulation / DDP split equals one big batch.

The reference is frozen, in eval mode, and prepared by accelerate in evaluation mode (TRL's way:
same mixed precision as the policy, never DDP-wrapped; sharded under FSDP and ZeRO-3). For a
PEFT/LoRA policy (``--lora_r``) the reference is the policy with its adapters disabled, no copy.
For a fixed classification dataset its logits can be computed once (``add_reference_logits``).
Run ``python -m kl_helpers.trainer --help`` for the command line (torchrun / accelerate launch).
Introduced in notebook 12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from kl_helpers._validate import integer, real
from kl_helpers.reference import disable_dropout, is_peft_model, make_reference, reference_view
from kl_helpers.regularizer import (
    check_direction,
    check_js_weight,
    regularised_terms,
)
from kl_helpers.trainer.utils import (
    LOG_KEYS,
    REF_LOGITS_COLUMN,
    check_trainer_scaling,
    copy_as_reference,
    count_label_items,
    is_causal_lm,
    lora_model,
    loss_multiplier,
    prepare_reference,
)


@dataclass
class KLTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the regulariser: loss = task + β·D(policy, reference)."""

    beta: float = field(
        default=0.1, metadata={"help": "β, weight of the divergence (finite, >= 0)."}
    )
    divergence: str = field(
        default="forward",
        metadata={"help": "forward = KL(ref‖policy), reverse = KL(policy‖ref), js = JS_π."},
    )
    js_weight: float = field(
        default=0.5,
        metadata={"help": "π in [0, 1]: the reference's share of the JS mixture (GKD's beta)."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Both logits are divided by it (finite, > 0) before the divergence."},
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
        default=False,
        metadata={"help": "Every dropout of the trained model off, LoRA's too (repeatable)."},
    )
    decay_all_parameters: bool = field(
        default=False,
        metadata={
            "help": "Weight decay on every parameter (the notebook-06 engine's AdamW); False: "
            "transformers' default, which exempts biases and LayerNorm weights."
        },
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains all weights."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling α."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={"help": "Comma-separated module names for LoRA; None: peft's default."},
    )

    def __post_init__(self) -> None:
        """Check the regulariser's fields, then the Trainer's. ValueError for β NaN, inf (inf · 0
        is NaN at step 0) or < 0, a temperature that is not finite and > 0, a ``lora_r`` that is
        not an int ≥ 0, and the fields in ``REFUSED_LOSS_FLAGS``."""
        refuse_loss_flags(self)
        check_direction(self.divergence)
        check_js_weight(self.js_weight)
        beta, temperature = real(self.beta, "beta"), real(self.temperature, "temperature")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        self.lora_r = integer(self.lora_r, "lora_r")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0, got {self.lora_r}")
        super().__post_init__()
        if not self.average_tokens_across_devices and self.world_size > 1:
            raise ValueError(
                "average_tokens_across_devices=False is not supported by KLTrainer: it always "
                "normalises by the valid items of the whole batch on all processes (one big batch)"
            )


# TrainingArguments fields that change what the stock Trainer computes as its loss, and what
# KLTrainer does with each (tests/trainer/test_trainer_flags.py checks them against the stock
# Trainer): label_smoothing_factor is applied to the task term exactly as its LabelSmoother does;
# average_tokens_across_devices=True is what KLTrainer always does (False is refused on several
# processes, where it would differ); the fields below are refused with a ValueError naming them.
REFUSED_LOSS_FLAGS = {
    "label_names": (
        lambda v: v is not None and (isinstance(v, str) or list(v) != ["labels"]),
        "KLTrainer reads the targets from the 'labels' column only",
    ),
    "neftune_noise_alpha": (
        lambda v: v is not None,
        "NEFTune's noise on the input embeddings would also reach an adapter-disabled or shared "
        "reference, and the KL would measure the noise",
    ),
}


def refuse_loss_flags(args: TrainingArguments) -> None:
    """Raise ValueError naming any field of ``args`` in ``REFUSED_LOSS_FLAGS`` that is set."""
    for name, (is_set, why) in REFUSED_LOSS_FLAGS.items():
        value = getattr(args, name, None)
        if is_set(value):
            raise ValueError(f"{name}={value!r} is not supported by KLTrainer: {why}")


def freeze_reference(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """Eval mode, no gradients, dropout off, on ``device``: ``make_reference`` without a copy."""
    return make_reference(model, copy_model=False, device=device)


def _has_column(dataset: Any, column: str) -> bool:
    return dataset is not None and column in (getattr(dataset, "column_names", None) or [])


class KLTrainer(Trainer):
    """``transformers.Trainer`` whose loss is task cross-entropy + β·D(policy, frozen reference).

    ``ref_model=None`` freezes a copy of ``model`` as it is now (the correct start reference),
    or, for a PEFT policy, uses it with adapters disabled; nothing when the datasets carry
    precomputed reference logits. Logs ``task_loss`` and ``divergence`` (nats) next to the
    Trainer's ``loss``, averaged like it over logging steps, accumulation and processes, and in
    evaluation over batches weighted by their rows (each ``evaluate`` / ``predict`` afresh).
    """

    # Scaling contract (``trainer_utils.loss_multiplier``): the Trainer divides compute_loss's
    # value by the step's micro-batches (model_accepts_loss_kwargs stays False, TRL's setting)
    # and DDP averages over processes; compute_loss multiplies both back and training_step
    # checks the Trainer's division at every micro-batch.
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
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                "compute_loss_func is not supported by KLTrainer: its loss is the task "
                "cross-entropy + beta * divergence (override compute_loss to change it)"
            )
        if not hasattr(Trainer, "get_batch_samples"):
            raise ValueError("KLTrainer needs transformers >= 4.46 (Trainer.get_batch_samples)")
        if args.lora_r > 0 and not is_peft_model(model):
            model = lora_model(model, args)
        if args.disable_dropout:  # after LoRA: its adapters' dropout too
            disable_dropout(model)
        self.shift = args.shift_labels if args.shift_labels is not None else is_causal_lm(model)
        column = args.ref_logits_column
        precomputed = _has_column(kwargs.get("train_dataset"), column) and (
            kwargs.get("eval_dataset") is None or _has_column(kwargs.get("eval_dataset"), column)
        )
        if ref_model is None and not precomputed and not is_peft_model(model):
            ref_model = copy_as_reference(model)
        super().__init__(model=model, args=args, **kwargs)
        self.model_accepts_loss_kwargs = False  # see loss_is_scaled_for_ga
        self.ref_model = (
            prepare_reference(ref_model, self.accelerator, self.args.device)
            if ref_model is not None
            else None
        )
        self._sums: dict[str, torch.Tensor] = {}  # mode -> [Σ task, Σ divergence, n micro-batches]
        self._num_items: torch.Tensor | None = None  # valid items of this optimizer step
        self._micro_batches = 1  # micro-batches of this optimizer step on each process
        self._last_loss: torch.Tensor | None = None  # compute_loss's last training value

    # -- reference model -------------------------------------------------------------------

    @torch.no_grad()
    def reference_logits(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """Reference logits for a batch (model inputs without labels), eval mode, no gradient."""
        if self.ref_model is None and not is_peft_model(self.accelerator.unwrap_model(model)):
            raise ValueError(
                f"no reference model and the batch has no {self.args.ref_logits_column!r} column"
            )
        policy = self.accelerator.unwrap_model(model)
        with reference_view(policy, self.ref_model) as reference:
            return reference(**inputs).logits

    # -- loss and logging ------------------------------------------------------------------

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the precomputed reference-logits column when unused columns are removed."""
        super()._set_signature_columns_if_needed()
        if self.args.ref_logits_column not in self._signature_columns:
            self._signature_columns.append(self.args.ref_logits_column)

    def get_batch_samples(self, epoch_iterator, num_batches, *args, **kwargs):
        """As the Trainer's, and count the valid items (examples / tokens) of the whole
        accumulated batch on all processes: the loss is normalised by that count."""
        samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, *args, **kwargs)
        self._micro_batches = max(len(samples), 1)
        total = count_label_items(samples, self.shift).to(self.args.device)
        if self.args.world_size > 1:  # every process calls this once per step: matched collective
            total = self.accelerator.gather(total.reshape(1)).sum()
        self._num_items = total
        return samples, num_items

    def training_step(self, model, inputs, *args, **kwargs) -> torch.Tensor:
        """The Trainer's, then a check that it divided our loss as ``loss_multiplier`` assumes."""
        self._last_loss = None
        returned = super().training_step(model, inputs, *args, **kwargs)
        if self._last_loss is not None:
            check_trainer_scaling(returned, self._last_loss, self._divisor())
        return returned

    def _divisor(self) -> int:
        return getattr(self, "current_gradient_accumulation_steps", None) or self._micro_batches

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Task cross-entropy + β·divergence. Training: sums over this micro-batch's valid items
        divided by those of the whole accumulated batch on all processes, times what the Trainer
        and DDP divide by, so any split into micro-batches and processes gives the gradient and
        the logged means of one big batch. Evaluation: this batch's means."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        ref_logits = inputs.pop(self.args.ref_logits_column, None)
        outputs = model(**inputs)
        if ref_logits is None:
            ref_logits = self.reference_logits(model, inputs)
        n_items = self._num_items if model.training else None
        task, div = regularised_terms(
            outputs.logits,
            ref_logits,
            labels,
            self.args.divergence,
            js_weight=self.args.js_weight,
            temperature=self.args.temperature,
            shift=self.shift,
            num_items_in_batch=n_items,
            label_smoothing=self.args.label_smoothing_factor,
        )
        if n_items is not None:
            scale = loss_multiplier(self._divisor(), self.accelerator.num_processes)
            task, div = task * scale, div * scale
        weight = 1 if model.training else len(labels)  # evaluation_loop weights rows
        self._record("train" if model.training else "eval", task, div, weight)
        loss = task + self.args.beta * div
        if n_items is not None:
            self._last_loss = loss.detach()
        return (loss, outputs) if return_outputs else loss

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        """Every parameter with ``decay_all_parameters`` (as the engine), else the Trainer's."""
        if self.args.decay_all_parameters:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def _record(self, mode: str, task: torch.Tensor, div: torch.Tensor, weight: int = 1) -> None:
        task, div = task.detach().float(), div.detach().float()
        row = torch.stack([task * weight, div * weight, torch.full_like(task, weight)])
        self._sums[mode] = self._sums[mode] + row if mode in self._sums else row

    def evaluation_loop(self, *args, **kwargs):
        """As the Trainer's, with the logged evaluation means started afresh: ``predict``
        records batches but never logs them, so they must not reach the next ``evaluate``."""
        self._sums.pop("eval", None)
        return super().evaluation_loop(*args, **kwargs)

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
