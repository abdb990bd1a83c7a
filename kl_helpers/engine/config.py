"""One typed, frozen config per training run of the SFT / forward-KL / reverse-KL / JS experiment.

Defaults are the article's protocol (batch 8, AdamW lr 1e-4, 100 epochs, max length 128). The
train/test split is not a field: it belongs to the data (``training.article_data(split_seed)``),
whose fingerprint is part of the results key. ``key()`` is a stable hash of every field, used by
the results cache so that a changed config reruns. Introduced in notebook 06.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kl_helpers._validate import integer, real
from kl_helpers.regularizer import DIRECTIONS, RENAMED, check_js_weight
from kl_helpers.runtime import quick_mode

METHODS: tuple[str, ...] = ("sft", *DIRECTIONS)  # plain SFT, or SFT + β·(forward | reverse | js)
KL_INPUTS: tuple[str, ...] = ("task", "replay", "both")  # which inputs the KL term is taken on
REFERENCES: tuple[str, ...] = ("same_start", "independent_head")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS: tuple[str, ...] = ("auto", "fused", "foreach", "for_loop")
PADDINGS: tuple[str, ...] = ("dynamic", "max_length")
ARTICLE_BETAS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
ARTICLE_EPOCHS = 100  # the article's
QUICK_EPOCHS = 40  # quick mode's (`make test`): the losses have nearly levelled off, SFT memorised
FLOAT_FIELDS = ("beta", "lr", "weight_decay", "js_weight")
INT_FIELDS = ("epochs", "batch_size", "max_length", "seed", "reference_seed", "eval_batch_size",
              "replay_batch_size")  # fmt: skip
BOOL_FIELDS = ("shuffle", "cache_reference")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that decides one run's numbers; the notebook's β cell overrides fields."""

    method: str = "sft"  # "sft" | "forward" (+β·KL(p_ref‖p_new)) | "reverse" (+β·KL(p_new‖p_ref))
    # | "js" (+β·JS_π, π = js_weight); one vocabulary with KLTrainer (kl_helpers.regularizer)
    beta: float = 0.0  # weight of the KL term; must be 0 for "sft", > 0 otherwise
    lr: float = 1e-4  # AdamW learning rate (the article's)
    weight_decay: float = 0.01  # AdamW's default decoupled weight decay (the article keeps it)
    epochs: int = 100  # passes over the training set (the article's)
    batch_size: int = 8  # training batch size (the article's; 7 train sentences -> 1 step/epoch)
    max_length: int = 128  # truncation length in tokens (the article's)
    seed: int = 0  # classification head init, shuffling and dropout; same seed -> same start
    model: str | None = None  # resolve_model choice; None -> bert-base-uncased if available
    reference: str = "same_start"  # "same_start": frozen copy of the start model (same head);
    # "independent_head": the article's set-up, a separately loaded model with its own head
    reference_seed: int = 1  # head seed of the reference when reference="independent_head"
    shuffle: bool = True  # reshuffle the training set every epoch (as the article's DataLoader)
    padding: str = "dynamic"  # "dynamic": longest in batch; "max_length": the article's pad to 128
    cache_reference: bool = True  # reuse reference logits; False recomputes them every step
    optimizer: str = "auto"  # AdamW implementation: "auto" picks the fastest for the device
    precision: str = "auto"  # "auto": bf16 autocast on a bf16-capable GPU, fp32 on CPU
    eval_batch_size: int = 64  # batch size for reference logits and final predictions
    device: str | None = None  # None -> kl_helpers.runtime.pick_device()
    js_weight: float = 0.5  # π for method "js": the reference's share of the mixture (0..1)
    kl_inputs: str = "task"  # KL term on the task's inputs, on unlabelled replay texts
    # (TextData.replay_texts, reference logits cached once), or on both (each input counts once)
    replay_batch_size: int = 8  # replay texts per step when kl_inputs is "replay" or "both"

    def __post_init__(self) -> None:
        # One spelling per value, so that key() is one hash per run: beta=1 and beta=1.0, or
        # epochs=np.int64(3) and 3, were different keys; a bool is not a number here.
        for name in FLOAT_FIELDS:
            value = real(getattr(self, name), name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        for name in INT_FIELDS:
            object.__setattr__(self, name, integer(getattr(self, name), name))
        for name in BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))
        check_method(self.method)
        _check_choice("kl_inputs", self.kl_inputs, KL_INPUTS)
        check_js_weight(self.js_weight)
        _check_choice("reference", self.reference, REFERENCES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("padding", self.padding, PADDINGS)
        if self.method == "sft" and self.beta != 0:
            raise ValueError(f"method 'sft' has no KL term, so beta must be 0, got {self.beta}")
        if self.method != "sft" and not self.beta > 0:
            raise ValueError(f"method {self.method!r} needs beta > 0, got {self.beta}")
        for name in ("epochs", "batch_size", "max_length", "eval_batch_size", "replay_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("seed", "reference_seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def label(self) -> str:
        """Short run name for legends and folders, e.g. ``sft``, ``forward_b0.3`` (plus
        ``_replay`` / ``_both`` when the KL term is not on the task's inputs)."""
        name = self.method if self.method == "sft" else f"{self.method}_b{self.beta:g}"
        return name if self.kl_inputs == "task" else f"{name}_{self.kl_inputs}"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ExperimentConfig fields: {unknown}")
        return cls(**values)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def key(self, *extra: str) -> str:
        """Stable 12-hex-digit hash of every field (plus ``extra`` strings, e.g. a data hash)."""
        payload = json.dumps([self.to_dict(), list(extra)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def article_protocol(quick: bool | None = None, **changes: Any) -> ExperimentConfig:
    """The article's protocol as one config (batch 8, AdamW at lr 1e-4, ``ARTICLE_EPOCHS`` = 100
    epochs, at most 128 tokens), or quick mode's, the same with ``QUICK_EPOCHS`` = 40 epochs, when
    ``quick`` (default: $KL_QUICK / $CI, ``runtime.quick_mode``) says so. ``changes`` set other
    fields (``model``, ``seed``, ...). ValueError for a ``quick`` that is no bool, for an
    ``epochs`` given here (the mode decides it), and as ``ExperimentConfig`` for invalid fields.
    Introduced in notebook 06."""
    if "epochs" in changes:
        raise ValueError("article_protocol decides epochs from quick; use .replace(epochs=...)")
    if quick is not None and not isinstance(quick, (bool, np.bool_)):
        raise ValueError(f"quick must be True, False or None, got {quick!r}")
    quick = quick_mode() if quick is None else bool(quick)
    return ExperimentConfig(epochs=QUICK_EPOCHS if quick else ARTICLE_EPOCHS, **changes)


def protocol_configs(
    base: ExperimentConfig | None = None, betas: tuple[float, ...] = ARTICLE_BETAS
) -> list[ExperimentConfig]:
    """The article's runs: SFT, then forward KL and reverse KL for each β (11 by default)."""
    base = base or ExperimentConfig()
    sft = base.replace(method="sft", beta=0.0)
    forward = [base.replace(method="forward", beta=float(b)) for b in betas]
    reverse = [base.replace(method="reverse", beta=float(b)) for b in betas]
    return [sft, *forward, *reverse]


def check_method(method: str) -> str:
    """Return ``method`` if it is "sft" or a direction; old names raise saying the new one, and
    anything else (any object, unhashable ones included) a ValueError naming the choices."""
    if isinstance(method, str) and method in RENAMED:
        raise ValueError(f"method {method!r} is now called {RENAMED[method]!r}")
    _check_choice("method", method, METHODS)
    return method


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
