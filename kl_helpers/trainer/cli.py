"""The command line of ``KLTrainer``: ``python -m kl_helpers.trainer`` (torchrun / accelerate
launch), and ``kl_training_arguments`` that makes the Trainer do what the notebook-06 engine does.
Introduced in notebook 12.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kl_helpers.data.article import article_dataset, article_split
from kl_helpers.models import build_tiny_bert, load_classifier, load_tokenizer, resolve_model
from kl_helpers.precision import autocast_dtype
from kl_helpers.reference import disable_dropout, make_reference
from kl_helpers.runtime import pick_device, quiet_libraries
from kl_helpers.trainer.kl_trainer import KLTrainer, KLTrainingArguments
from kl_helpers.trainer.utils import add_reference_logits, num_labels_of, tokenize_dataset


def kl_training_arguments(config: Any, output_dir: str, **overrides: Any) -> KLTrainingArguments:
    """``KLTrainingArguments`` doing what the notebook-06 engine does for an ``ExperimentConfig``.

    Same β, direction, lr, weight decay on every parameter (``decay_all_parameters``), epochs,
    batch size, seed and mixed precision ("auto": bf16 only on a GPU with native bf16);
    constant learning rate and no gradient clipping (the engine has neither); one log row per
    optimizer step.
    """
    amp = autocast_dtype(config.precision, pick_device(config.device))
    values: dict[str, Any] = dict(
        output_dir=output_dir,
        beta=float(config.beta),
        divergence="forward" if config.method == "sft" else config.method,
        js_weight=config.js_weight,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        decay_all_parameters=True,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        seed=config.seed,
        bf16=amp == torch.bfloat16,
        fp16=amp == torch.float16,
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

    def __post_init__(self) -> None:
        """ValueError unless ``article_data`` is "train" or "all" and ``num_train_examples`` is
        None or an int ≥ 1."""
        if self.article_data not in ("train", "all"):
            raise ValueError(f"article_data must be 'train' or 'all', got {self.article_data!r}")
        n = self.num_train_examples
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"num_train_examples must be None or an int >= 1, got {n!r}")


def _load_texts(script: ScriptArguments):
    from datasets import load_dataset

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

    data = train_dataset if train_dataset is not None else _load_texts(script)
    num_labels = num_labels_of(data)
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
        reference = make_reference(model, device=args.device)
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
