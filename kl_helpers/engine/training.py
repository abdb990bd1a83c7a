"""A fast, seeded engine for SFT with an optional KL (or JS) penalty to a frozen reference.

Layers: ``kl_regularised_loss`` (pure, on logits; the divergences come from
``kl_helpers.regularizer``) → ``train_step`` (one batch; a live reference runs under
``torch.no_grad()``) → ``train_loop`` (epochs; returns a ``LossHistory``, draws nothing) →
``run_experiment`` / ``run_sweep`` (``kl_helpers.engine.experiment``: one config, many configs
cached on disk). Speed: texts are tokenised once and padded per batch; the frozen reference's
logits are computed once per text (training and replay texts) and reused; AdamW in the fastest
implementation; bf16 autocast on a GPU with native bf16. The KL term can be taken on the task's
inputs, on unlabelled *replay* inputs, or on both (``ExperimentConfig.kl_inputs``).
Introduced in notebook 06.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kl_helpers._validate import integer, kl_weight
from kl_helpers.encoding import Encoded, batches, pad_batch
from kl_helpers.engine.config import KL_INPUTS, ExperimentConfig, check_method
from kl_helpers.engine.losses import calculate_cross_entropy_loss
from kl_helpers.engine.results import LossHistory
from kl_helpers.precision import autocast, make_adamw
from kl_helpers.precision import autocast_dtype as precision_dtype
from kl_helpers.reference import (
    evaluated,
    forward_logits,
)
from kl_helpers.regularizer import DIRECTIONS, divergence_from_logits

MONITORS = ("task", "kl_forward", "kl_reverse", "kl_js")  # what train_step returns, in order


def _check_beta(beta: object) -> float:
    """β as a float: finite and ≥ 0 (ValueError otherwise; ∞·KL is no loss to step on)."""
    value = kl_weight(beta, allow_zero=True)
    if not math.isfinite(value):
        raise ValueError(f"beta must be finite, got {beta!r}")
    return value


def _check_kl_inputs(kl_inputs: str) -> str:
    if kl_inputs not in KL_INPUTS:
        raise ValueError(f"kl_inputs must be one of {KL_INPUTS}, got {kl_inputs!r}")
    return kl_inputs


@dataclass(frozen=True)
class Replay:
    """Unlabelled replay inputs for the KL term: encoded texts and their reference logits."""

    data: Encoded
    ref_logits: torch.Tensor  # (N_replay, C), computed once
    batch_size: int


def divergence_terms(
    logits: torch.Tensor, ref_logits: torch.Tensor, js_weight: float = 0.5
) -> dict[str, torch.Tensor]:
    """Batch-mean divergence to the reference in every direction, ``{direction: nats}``."""
    logits = logits.float()
    return {
        d: divergence_from_logits(logits, ref_logits, d, js_weight=js_weight).mean()
        for d in DIRECTIONS
    }


def kl_regularised_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ref_logits: torch.Tensor,
    method: str,
    beta: float,
    *,
    js_weight: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, task, kl_forward, kl_reverse)`` in nats; total = task + β·D of ``method``.

    ``kl_forward`` is KL(p_ref‖p_new), ``kl_reverse`` KL(p_new‖p_ref), batch means; both are
    returned for monitoring, only ``method``'s divergence enters ``total`` (none for "sft").
    ``beta`` is finite and ≥ 0 (ValueError otherwise; a NaN or ∞ β gave a NaN or ∞ loss).
    """
    check_method(method)
    beta = _check_beta(beta)
    task = calculate_cross_entropy_loss(logits.float(), labels)
    terms = divergence_terms(logits, ref_logits, js_weight)
    total = task if method == "sft" else task + beta * terms[method]
    return total, task, terms["forward"], terms["reverse"]


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    beta: float,
    ref_logits: torch.Tensor | None = None,
    reference: torch.nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    *,
    js_weight: float = 0.5,
    kl_inputs: str = "task",
    replay_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One optimizer step on one batch; detached ``(task, kl_forward, kl_reverse, kl_js)`` on the
    model's device (the inputs, ``labels`` and ``ref_logits`` must be there already).

    Pass cached ``ref_logits`` (fast) or a frozen ``reference`` to run in eval mode under
    ``no_grad``; plain SFT may pass neither (as the article does), then the KL monitors are NaN.
    With ``kl_inputs`` "replay" or "both", ``replay_batch`` = (input_ids, attention_mask,
    reference logits) of unlabelled inputs on which the KL term is taken (instead of / as well as
    the task's). ``method``, ``beta`` (finite, ≥ 0) and ``kl_inputs`` are checked before the
    step (ValueError): an unknown ``kl_inputs`` such as "replays" was taken as "task".
    """
    check_method(method)
    beta = _check_beta(beta)
    _check_kl_inputs(kl_inputs)
    if ref_logits is None and reference is not None:
        with torch.no_grad(), evaluated(reference), autocast(input_ids.device, amp_dtype):
            ref_logits = forward_logits(reference, input_ids, attention_mask)
    if ref_logits is None and method != "sft":
        raise ValueError("train_step needs ref_logits or a reference model")
    if kl_inputs != "task" and replay_batch is None:
        raise ValueError(f"kl_inputs={kl_inputs!r} needs a replay batch")
    optimizer.zero_grad(set_to_none=True)
    with autocast(input_ids.device, amp_dtype):
        logits = forward_logits(model, input_ids, attention_mask)
        if kl_inputs != "task":
            replay_logits = forward_logits(model, replay_batch[0], replay_batch[1])
    task = calculate_cross_entropy_loss(logits.float(), labels)
    if ref_logits is None:  # plain SFT without any reference: nothing to monitor (NaN)
        terms = dict.fromkeys(DIRECTIONS, torch.full_like(task, torch.nan))
    else:
        kl_logits, kl_ref = logits, ref_logits
        if kl_inputs == "replay":
            kl_logits, kl_ref = replay_logits, replay_batch[2]
        elif kl_inputs == "both":  # every input, task or replay, counts once in the mean
            kl_logits = torch.cat([logits.float(), replay_logits.float()])
            kl_ref = torch.cat([ref_logits.float(), replay_batch[2].float()])
        terms = divergence_terms(kl_logits, kl_ref, js_weight)
    total = task if method == "sft" else task + beta * terms[method]
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return torch.stack([task, *(terms[d] for d in DIRECTIONS)]).detach()


def replay_batches(replay: Replay, seed: int) -> Iterator[torch.Tensor]:
    """Endless index batches of ``replay.batch_size`` replay texts, reshuffled every pass.

    Its own generator (from ``seed``), so the task batches do not depend on replay. ValueError
    for no replay texts (the loop would never yield) or a seed/batch size that is no int.
    """
    seed, size = integer(seed, "seed"), integer(replay.batch_size, "batch_size")
    if len(replay.data) == 0 or size < 1:
        raise ValueError(f"need replay texts and batch_size >= 1, got {len(replay.data)}, {size}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(replay.data), generator=generator)
        yield from order.split(size)


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Encoded,
    config: ExperimentConfig,
    ref_logits: torch.Tensor | None = None,
    reference: torch.nn.Module | None = None,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
    replay: Replay | None = None,
) -> LossHistory:
    """Train ``config.epochs`` epochs (model in train mode); per-step losses as a LossHistory of
    Python floats. Batches and ``data``'s labels are moved to ``device`` (default: the model's);
    ``ref_logits`` may be on any device (indexed where they are, then moved).

    ``ref_logits`` ``(N, C)`` holds the reference's logits for every text of ``data`` (cached);
    else ``reference`` is run on every batch. Shuffling is seeded by ``config.seed``. With
    ``config.kl_inputs`` "replay"/"both", every step also takes a batch of ``replay`` texts.
    """
    device = device or next(model.parameters()).device
    if config.kl_inputs != "task" and (replay is None or len(replay.data) == 0):
        raise ValueError(
            f"kl_inputs={config.kl_inputs!r} needs replay texts (TextData.replay_texts)"
        )
    generator = torch.Generator().manual_seed(config.seed) if config.shuffle else None
    replay_idx = replay_batches(replay, config.seed) if config.kl_inputs != "task" else None
    pad_to = config.max_length if config.padding == "max_length" else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    labels_all = data.labels.to(device)
    model.train()
    steps, epochs = [], []
    for epoch in range(config.epochs):
        for idx in batches(len(data), config.batch_size, generator):
            input_ids, mask = pad_batch([data.ids[i] for i in idx], data.pad_id, pad_to)
            input_ids, mask = input_ids.to(device), mask.to(device)
            idx_dev = idx.to(device)
            cached = None
            if ref_logits is not None:  # indexed where they are, then moved
                cached = ref_logits[idx.to(ref_logits.device)].to(device)
            replay_batch = None
            if replay_idx is not None:
                r = next(replay_idx)
                r_ids, r_mask = pad_batch(
                    [replay.data.ids[i] for i in r], replay.data.pad_id, pad_to
                )
                r_ref = replay.ref_logits[r.to(replay.ref_logits.device)]
                replay_batch = (r_ids.to(device), r_mask.to(device), r_ref.to(device))
            steps.append(
                train_step(
                    model,
                    optimizer,
                    input_ids,
                    mask,
                    labels_all[idx_dev],
                    config.method,
                    config.beta,
                    cached,
                    reference,
                    amp_dtype,
                    scaler,
                    js_weight=config.js_weight,
                    kl_inputs=config.kl_inputs,
                    replay_batch=replay_batch,
                )
            )
            epochs.append(epoch)
    values = torch.stack(steps).double().cpu() if steps else torch.zeros(0, len(MONITORS))
    return LossHistory(
        epoch=epochs,
        task=values[:, 0].tolist(),
        kl_forward=values[:, 1].tolist(),
        kl_reverse=values[:, 2].tolist(),
        beta=config.beta,
        method=config.method,
        kl_js=values[:, 3].tolist(),
    )


def make_optimizer(
    params, config: ExperimentConfig, device: torch.device | str
) -> torch.optim.AdamW:
    """AdamW(lr, weight_decay on every parameter) in the ``config.optimizer`` implementation for
    ``device`` (a ``torch.device`` or a name; ``precision.adamw_implementation``)."""
    return make_adamw(params, config.lr, config.weight_decay, config.optimizer, device)


def autocast_dtype(config: ExperimentConfig, device: torch.device | str) -> torch.dtype | None:
    """Mixed-precision dtype for ``config.precision`` on ``device`` (None = fp32; a
    ``torch.device`` or a name)."""
    return precision_dtype(config.precision, device)
