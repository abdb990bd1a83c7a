"""The frozen reference: one maker for the engine and ``KLTrainer``, and its logits computed once.

``make_reference`` copies (or takes) a model and freezes it: eval mode, no gradients, dropout off
(``disable_dropout``: modules, attention's float rates and config fields). Every reference
forward goes through ``reference_view`` (or ``evaluated``), which runs it in eval mode whatever
mode it arrives in. For a PEFT (LoRA) policy no copy is needed: ``reference_view`` yields the
policy itself with its adapters disabled, TRL's approach. ``logits_once`` runs a model over fixed
batches in eval mode and under ``no_grad``, for the reference's logits on a fixed dataset;
``ReferenceLogits`` shares them between the runs of a sweep. Introduced in notebook 06.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from kl_helpers._validate import integer
from kl_helpers.encoding import Encoded, pad_batch
from kl_helpers.precision import autocast

DROPOUT_MODULES = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)


def _is_rate(name: str, value: Any) -> bool:
    """A dropout-like probability: a number in (0, 1] under a name containing "drop"."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return "drop" in name.lower() and number and 0 < value <= 1


def _zero_rates(obj: Any, seen: set[int]) -> None:
    """Set ``obj``'s dropout-like attributes to 0.0; recurse into sub-configs (``text_config``)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in list(vars(obj).items()):
        if _is_rate(name, value):
            setattr(obj, name, 0.0)
        elif hasattr(value, "to_dict") and hasattr(value, "model_type"):  # a PretrainedConfig
            _zero_rates(value, seen)


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Turn off every dropout of ``model`` in place, so train-mode forwards are repeatable and
    equal the eval-mode output; returns ``model``.

    Reaches what ``nn.Dropout`` alone misses: dropout modules of every kind (``p`` = 0), float
    attributes whose name says "drop" that attention code reads at forward time (Llama's
    ``attention_dropout``, OPT's ``dropout``, BART's ``layerdrop``, BERT's ``dropout_prob``), and
    the same fields of each module's ``config`` and its sub-configs (some models read
    ``config.attention_dropout`` in ``forward``). The configs change too, so a saved checkpoint
    records the dropout it trained with. TRL's ``disable_dropout_in_model`` only sets ``p``.
    """
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, DROPOUT_MODULES):
            module.p = 0.0
        _zero_rates(module, seen)
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            _zero_rates(config, seen)
    return model


@contextlib.contextmanager
def evaluated(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` in eval mode inside the block; afterwards every submodule is back in its own
    mode (a frozen part of a training policy stays in eval mode, the rest in train mode)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        if len({training for _, training in modes}) == 1:
            module.train(modes[0][1])
        else:
            for submodule, training in modes:  # parents first: children then set their own
                submodule.train(training)


def make_reference(
    model: torch.nn.Module,
    *,
    copy_model: bool = True,
    device: torch.device | str | None = None,
    dropout: bool = False,
) -> torch.nn.Module:
    """A frozen reference: a deep copy of ``model`` (or ``model`` itself) in eval mode, no grad,
    on ``device`` if given (else where ``model`` is).

    ``dropout=False`` also turns its dropout off (``disable_dropout``: modules, float attributes
    and config fields), so the reference stays deterministic and equal to its eval-mode output
    even if something puts it back in train mode; ``dropout=True`` keeps the settings (eval mode
    only).
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
    """The module that computes reference logits, in eval mode inside the block: ``reference``
    if given (on its own device), else the PEFT ``policy`` with its adapters disabled (the frozen
    base, no second copy of the weights, on the policy's device). Whatever mode either arrives in,
    its output is the deterministic eval-mode one, and every submodule gets its own mode back
    afterwards (``evaluated``)."""
    if reference is not None:
        with evaluated(reference):
            yield reference
        return
    if not is_peft_model(policy):
        raise ValueError("no reference model: pass one, or use a PEFT policy (adapters disabled)")
    with evaluated(policy), policy.disable_adapter():
        yield policy


def redraw_classifier_head(model: torch.nn.Module, seed: int) -> None:
    """Re-initialise a BERT classifier head in place as ``from_pretrained`` does (N(0, 0.02²),
    zero bias), seeded: what loading the checkpoint again gives in the article. ``seed`` is an
    int (ValueError for 1.5 or True)."""
    seed = integer(seed, "seed")
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
    """The engine's reference for an ``ExperimentConfig``: a frozen exact copy of ``start_model``
    (eval mode, dropout off), or (``reference="independent_head"``, the article's variant) the
    same encoder with a head redrawn from ``config.reference_seed``. On ``start_model``'s device."""
    reference = make_reference(start_model)
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
    out = []
    with evaluated(model):
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, amp_dtype):
                out.append(model(**inputs).logits.float())
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

    Texts are grouped by length to pad little; padding changes logits by < 1e-5. ``batch_size``
    is an int ≥ 1 and ``pad_to`` (if given) at least the longest text (ValueError otherwise).
    """
    batch_size = integer(batch_size, "batch_size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
        """``compute()`` the first time for these token ids and ``settings``, then the copy.

        The ids are keyed by value (int32 and int64 tensors of the same ids are one key) and by
        each text's length, so no two different splits of the same ids share a key."""
        digest = hashlib.sha256()
        for x in data.ids:
            row = torch.as_tensor(x).to(torch.int64).reshape(-1)
            digest.update(len(row).to_bytes(8, "little") + row.cpu().numpy().tobytes())
        ids = digest.hexdigest()
        key = (ids, len(data), settings)
        memo = self._memo.setdefault(start_model, {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def __len__(self) -> int:
        """How many logit tables are held."""
        return sum(len(m) for m in self._memo.values())
