"""The frozen reference: one maker for the engine and ``KLTrainer``, and its logits computed once.

``make_reference`` copies (or takes) a model and freezes it: eval mode, no gradients, dropout off.
For a PEFT (LoRA) policy no copy is needed: ``reference_view`` yields the policy itself with its
adapters disabled, TRL's approach. ``logits_once`` runs a model over fixed batches in eval mode
and under ``no_grad``, for the reference's logits on a fixed dataset; ``ReferenceLogits`` shares
them between the runs of a sweep. Introduced in notebook 06.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import weakref
from collections.abc import Iterable, Iterator, Mapping

import torch

from kl_helpers.encoding import Encoded, pad_batch
from kl_helpers.precision import autocast


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every ``nn.Dropout``'s p to 0 (in place) so train-mode forwards are repeatable."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def make_reference(
    model: torch.nn.Module,
    *,
    copy_model: bool = True,
    device: torch.device | str | None = None,
    dropout: bool = False,
) -> torch.nn.Module:
    """A frozen reference: a deep copy of ``model`` (or ``model`` itself) in eval mode, no grad,
    on ``device`` (default: where ``model`` is).

    ``dropout=False`` also sets its dropout to 0, so the reference stays deterministic even if
    something puts it back in train mode.
    """
    reference = copy.deepcopy(model) if copy_model else model
    if not dropout:
        disable_dropout(reference)
    reference.eval()
    reference.requires_grad_(False)
    return reference.to(device) if device is not None else reference


def is_peft_model(model: torch.nn.Module) -> bool:
    """True for a ``peft.PeftModel`` (a policy with adapters that can be switched off)."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


@contextlib.contextmanager
def reference_view(
    policy: torch.nn.Module, reference: torch.nn.Module | None = None
) -> Iterator[torch.nn.Module]:
    """The module that computes reference logits: ``reference`` if given (on its own device),
    else the PEFT ``policy`` with its adapters disabled (the frozen base, no second copy of the
    weights, on the policy's device)."""
    if reference is not None:
        yield reference
        return
    if not is_peft_model(policy):
        raise ValueError("no reference model: pass one, or use a PEFT policy (adapters disabled)")
    was_training = policy.training
    policy.eval()  # a reference runs in eval mode: no dropout
    try:
        with policy.disable_adapter():
            yield policy
    finally:
        policy.train(was_training)


def redraw_classifier_head(model: torch.nn.Module, seed: int) -> None:
    """Re-initialise a BERT classifier head in place as ``from_pretrained`` does (N(0, 0.02²),
    zero bias), seeded: what loading the checkpoint again gives in the article."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise ValueError("redraw_classifier_head expects a model with a Linear `.classifier`")
    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
        if head.bias is not None:
            head.bias.zero_()


def frozen_reference(start_model: torch.nn.Module, config) -> torch.nn.Module:
    """The engine's reference for an ``ExperimentConfig``: a frozen exact copy of ``start_model``,
    or (``reference="independent_head"``, the article's variant) the same encoder with a head
    redrawn from ``config.reference_seed``. On ``start_model``'s device."""
    reference = make_reference(start_model, dropout=True)
    if config.reference == "independent_head":
        redraw_classifier_head(reference, config.reference_seed)
    return reference


@torch.no_grad()
def logits_once(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    amp_dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Eval-mode float32 logits of ``model`` for each batch of model inputs (moved to the model's
    device, where the logits stay), under ``no_grad``; the model's train/eval mode is restored."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, amp_dtype):
                out.append(model(**inputs).logits.float())
    finally:
        model.train(was_training)
    return out


def forward_logits(model: torch.nn.Module, input_ids, attention_mask) -> torch.Tensor:
    """Classifier logits ``(B, C)`` of a Hugging Face sequence-classification model, on its
    device (inputs must be there already)."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits


def predict_logits(
    model: torch.nn.Module,
    data: Encoded,
    batch_size: int = 64,
    pad_to: int | None = None,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Eval-mode logits ``(N, C)`` (float32, on the model's device); restores the model's mode.

    Texts are grouped by length to pad little; padding changes logits by < 1e-5.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

    def inputs() -> Iterator[dict[str, torch.Tensor]]:
        for chunk in chunks:
            ids, mask = pad_batch([data.ids[i] for i in chunk], data.pad_id, pad_to)
            yield {"input_ids": ids, "attention_mask": mask}

    out = logits_once(model, inputs(), amp_dtype)
    if not out:
        return torch.zeros(0, model.config.num_labels, device=device)
    logits = torch.cat(out)
    unsort = torch.empty(len(order), dtype=torch.long)
    unsort[torch.tensor(order)] = torch.arange(len(order))
    return logits[unsort.to(device)]


class ReferenceLogits:
    """Reference logits shared by the runs of a sweep: computed once per (start model, texts,
    settings) and reused, so e.g. 379 held-out texts are not re-run through the same frozen
    reference in every run. Valid while the start models' weights do not change."""

    def __init__(self) -> None:
        self._memo: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(
        self, start_model: torch.nn.Module, data: Encoded, settings: tuple, compute
    ) -> torch.Tensor:
        """``compute()`` the first time for these token ids and ``settings``, then the copy."""
        ids = hashlib.sha256(b"|".join(x.numpy().tobytes() for x in data.ids)).hexdigest()
        key = (ids, len(data), settings)
        memo = self._memo.setdefault(start_model, {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def __len__(self) -> int:
        """How many logit tables are held."""
        return sum(len(m) for m in self._memo.values())
