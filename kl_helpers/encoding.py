"""Texts for the engine: ``TextData`` (train/test/replay texts), tokenised once, padded per batch.

Introduced in notebook 06; ``replay_texts`` (unlabelled inputs on which the KL term can be
computed, see ``ExperimentConfig.kl_inputs``) are used by the forgetting notebook.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextData:
    """Train and test texts with integer labels ``0..len(label_names)-1``, optional replay texts.

    ``replay_texts`` are unlabelled inputs (e.g. general text the model should not forget) on
    which the engine can compute the KL term to the reference; empty by default.

    Labels may be any integers (NumPy's too) and are stored as Python ints. ValueError if there is
    no training text, if a split's texts and labels differ in length, if a label is not an
    integer or lies outside ``[0, len(label_names))``, or if ``replay_texts`` is one string.
    """

    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[int, ...]
    label_names: tuple[str, ...]
    replay_texts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.train_texts) == 0:
            raise ValueError("TextData needs at least one training text")
        for split in ("train", "test"):
            texts, labels = getattr(self, f"{split}_texts"), getattr(self, f"{split}_labels")
            if len(texts) != len(labels):
                raise ValueError(f"{split}: {len(texts)} texts but {len(labels)} labels")
            not_int = [y for y in labels if not isinstance(y, numbers.Integral)]
            if not_int:
                raise ValueError(f"{split} labels must be integers: {not_int}")
            labels = tuple(int(y) for y in labels)
            object.__setattr__(self, f"{split}_labels", labels)
            bad = [y for y in labels if not 0 <= y < len(self.label_names)]
            if bad:
                raise ValueError(f"{split} labels must be in [0, {len(self.label_names)}): {bad}")
        if isinstance(self.replay_texts, str):
            raise ValueError("replay_texts must be a sequence of texts, not one string")

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    def fingerprint(self) -> str:
        """Stable hash of texts, labels and label names (part of the results-cache key).

        Replay texts enter the hash only when there are some, so data without them keeps the
        fingerprint (and the cached runs) it had before replay existed.
        """
        fields = [
            self.train_texts,
            self.train_labels,
            self.test_texts,
            self.test_labels,
            self.label_names,
        ]
        if self.replay_texts:
            fields.append(self.replay_texts)
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:12]

    def with_replay(self, texts: Sequence[str]) -> TextData:
        """A copy carrying ``texts`` as replay inputs (ValueError if ``texts`` is one string)."""
        if isinstance(texts, str):
            raise ValueError("replay_texts must be a sequence of texts, not one string")
        return TextData(
            self.train_texts,
            self.train_labels,
            self.test_texts,
            self.test_labels,
            self.label_names,
            tuple(texts),
        )

    @classmethod
    def from_split(
        cls, split, label_names: Sequence[str], text: str = "text", label: str = "label"
    ) -> TextData:
        """From a ``datasets.DatasetDict`` with "train" and "test" splits."""
        return cls(
            tuple(split["train"][text]),
            tuple(int(y) for y in split["train"][label]),
            tuple(split["test"][text]),
            tuple(int(y) for y in split["test"][label]),
            tuple(label_names),
        )


@dataclass(frozen=True)
class Encoded:
    """Texts tokenised once, unpadded: one 1-D id tensor per text, plus labels ``(N,)``."""

    ids: tuple[torch.Tensor, ...]
    labels: torch.Tensor
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)


def encode(
    tokenizer, texts: Sequence[str], labels: Sequence[int] | None, max_length: int
) -> Encoded:
    """Tokenise ``texts`` once (truncated to ``max_length`` tokens, no padding).

    ``labels=None`` (unlabelled replay texts) stores −1 for every text. ValueError if
    ``labels`` and ``texts`` differ in length.
    """
    if labels is None:
        labels = [-1] * len(texts)
    if len(labels) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    ids = (
        tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"] if texts else []
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        tuple(torch.tensor(x, dtype=torch.long) for x in ids),
        torch.tensor(list(labels), dtype=torch.long),
        int(pad_id),
    )


def pad_batch(
    ids: Sequence[torch.Tensor], pad_id: int, pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence (or to ``pad_to``): ``input_ids, attention_mask``.

    ValueError if ``pad_to`` is shorter than the longest sequence (nothing is cut)."""
    longest = max((len(x) for x in ids), default=0)
    length = longest if pad_to is None else pad_to
    if length < longest:
        raise ValueError(f"pad_to = {pad_to} is shorter than the longest sequence ({longest})")
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return input_ids, mask


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches of one epoch, shuffled with ``generator`` (in order if None).

    ValueError if ``batch_size`` < 1."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)
