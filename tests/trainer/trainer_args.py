"""The one builder of small, quiet, CPU-only ``KLTrainingArguments`` for the trainer tests."""

from __future__ import annotations

from pathlib import Path

from kl_helpers.trainer.kl_trainer import KLTrainingArguments


def train_args(tmp_path: Path | str, **kw) -> KLTrainingArguments:
    """Two logged steps of batch 8 at lr 1e-3, no saving or reports, no dropout; ``kw`` override."""
    values = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        disable_dropout=True,
        seed=0,
    )
    values.update(kw)
    return KLTrainingArguments(**values)
