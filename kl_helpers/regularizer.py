"""The regulariser core: divergence between a policy and a frozen reference, from logits, in nats.

One vocabulary for directions everywhere (engine config, ``KLTrainer``, LLM and RL code):
``"forward"`` = KL(p_ref‖p_θ) (expectation under the reference), ``"reverse"`` = KL(p_θ‖p_ref)
(expectation under the policy), ``"js"`` = generalised Jensen-Shannon with ``js_weight`` π the
reference's share of the mixture; as TRL's GKD ``beta``, π = 0 is forward KL and π = 1 reverse KL.
The reference's logits are always detached. ``-inf`` logits (masked classes) and masked positions
give no NaN, neither in the value nor in the gradient; an unmasked row with a NaN or +inf logit,
or −inf everywhere, has no softmax and gives NaN. Introduced in notebook 06; used by notebooks
06-09.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kl_helpers._validate import check_same_shape
from kl_helpers.divergences import by_rows, kl_divergence_logits, nonnegative_kl, result_dtype

DIRECTIONS: tuple[str, ...] = ("forward", "reverse", "js")
IGNORE_INDEX = -100  # label of positions that carry no loss (padding, prompt tokens)
RENAMED = {"fkl": "forward", "rkl": "reverse"}  # old engine names -> the one vocabulary


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is one of ``DIRECTIONS``; else a ValueError naming the choices
    (for any object, unhashable ones included)."""
    if isinstance(direction, str) and direction in RENAMED:
        raise ValueError(f"direction {direction!r} is now called {RENAMED[direction]!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def check_js_weight(js_weight: float) -> float:
    """Return ``js_weight`` if it lies in [0, 1] (0: forward KL, 1: reverse KL)."""
    if not 0.0 <= js_weight <= 1.0:
        raise ValueError(f"js_weight must be in [0, 1], got {js_weight}")
    return js_weight


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32 (log-softmax in bf16 loses the KL); others unchanged."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def generalised_js_from_logits(
    p_logits: torch.Tensor, q_logits: torch.Tensor, weight: float = 0.5
) -> torch.Tensor:
    """JS_π(P‖Q) = π·KL(P‖M) + (1−π)·KL(Q‖M), M = π·P + (1−π)·Q, per row (last dim), nats.

    ``weight`` is π ∈ (0, 1); π = ½ is the usual JS (at most log 2). JS_π/π → KL(P‖Q) as π → 0
    and JS_π/(1−π) → KL(Q‖P) as π → 1. Classes with −inf logits in both P and Q give no NaN.
    Float64 inside, non-negative terms (exactly 0 for identical logits); returned in float32 for
    half precision. Raises ValueError naming both shapes if they differ.
    """
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the JS mixing weight must be in (0, 1), got {weight}")
    check_same_shape(p_logits, q_logits, ("p_logits", "q_logits"))
    js = by_rows(lambda p, q: _js_rows(p, q, weight), p_logits, q_logits)
    return js.to(result_dtype(p_logits, q_logits))


def _js_rows(p_logits: torch.Tensor, q_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """JS_π in float64 as two non-negative KLs to M whose log-ratios never cancel."""
    log_p = F.log_softmax(p_logits.double(), dim=-1)
    log_q = F.log_softmax(q_logits.double(), dim=-1)
    p, q = log_p.exp(), log_q.exp()
    m = weight * p + (1 - weight) * q
    to_p = _log_mixture_ratio(log_p, log_q, weight)  # log M − log P, exactly 0 where P = Q
    to_q = _log_mixture_ratio(log_q, log_p, 1 - weight)  # log M − log Q
    return weight * nonnegative_kl(log_p, p, to_p, m) + (1 - weight) * nonnegative_kl(
        log_q, q, to_q, m
    )


def _log_mixture_ratio(log_a: torch.Tensor, log_b: torch.Tensor, share: float) -> torch.Tensor:
    """log(share·A + (1 − share)·B) − log A = log1p((1 − share)·expm1(log B − log A)), read where
    A > 0 (elsewhere 0); no cancellation, 0 where A = B, finite stand-ins for huge ratios."""
    d = torch.where(torch.isneginf(log_a), torch.zeros_like(log_a), log_b - log_a)
    big = d > 30.0
    near = torch.log1p((1 - share) * torch.expm1(d.clamp(max=30.0)))
    far = torch.logaddexp(torch.full_like(d, math.log(share)), math.log1p(-share) + d)
    return torch.where(big, far, near)


def divergence_from_logits(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    direction: str = "forward",
    *,
    js_weight: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-row divergence over the last dim; shape ``logits.shape[:-1]``; nats.

    Both logits are divided by ``temperature`` first (TRL GKD's convention); the reference is
    detached. ``js_weight`` (js only): 0 gives forward KL, 1 reverse KL, in between JS_π.
    Computed in float64 by blocks of rows (``divergences.by_rows``) as sums of non-negative terms:
    ≥ 0, exactly 0 for identical logits, accurate down to KL ≈ 1e-9; returned in float32 for
    half-precision, integer or float32 logits, float64 for float64 (mixed: the promoted dtype).
    Same device as the logits. Raises ValueError naming both shapes if they differ, and naming
    the shape for 0-d logits or an empty last dim.
    """
    check_direction(direction)
    check_js_weight(js_weight)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if policy_logits.shape != ref_logits.shape:
        raise ValueError(
            f"reference logits {tuple(ref_logits.shape)} do not match the policy's "
            f"{tuple(policy_logits.shape)}"
        )
    if direction == "js" and js_weight == 0.0:
        direction = "forward"
    elif direction == "js" and js_weight == 1.0:
        direction = "reverse"

    ref_logits = ref_logits.detach()
    if direction == "forward":  # the reference's probabilities weight the log-ratio
        out = kl_divergence_logits(ref_logits, policy_logits, temperature)
    elif direction == "reverse":  # the policy's probabilities weight the log-ratio
        out = kl_divergence_logits(policy_logits, ref_logits, temperature)
    else:

        def rows(policy: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:  # float64 blocks
            return _js_rows(ref.double() / temperature, policy.double() / temperature, js_weight)

        out = by_rows(rows, policy_logits, ref_logits)
    return out.to(result_dtype(policy_logits, ref_logits))


def _check_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if mask.shape != shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    return mask.to(device=mask.device, dtype=torch.bool)


def per_token_divergence(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    direction: str = "forward",
    *,
    js_weight: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``(B, T, V)`` logits, ``(B, T)`` bool mask -> ``(B, T)`` divergences in nats.

    Exactly 0 where ``mask`` is False: those positions never enter any arithmetic, so −inf or
    NaN logits there give no NaN in the value or the gradient.
    """
    if policy_logits.ndim != 3:
        raise ValueError(f"per-token logits must be (B, T, V), got {tuple(policy_logits.shape)}")
    kwargs = {"js_weight": js_weight, "temperature": temperature}
    if mask is None:
        return divergence_from_logits(policy_logits, ref_logits, direction, **kwargs)
    if ref_logits.shape != policy_logits.shape:
        raise ValueError(
            f"reference logits {tuple(ref_logits.shape)} do not match the policy's "
            f"{tuple(policy_logits.shape)}"
        )
    mask = _check_mask(mask, policy_logits.shape[:2])
    rows = divergence_from_logits(policy_logits[mask], ref_logits[mask], direction, **kwargs)
    out = torch.zeros(mask.shape, dtype=rows.dtype, device=rows.device)
    return out.masked_scatter(mask, rows)


def masked_sum(values: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1):
    """Sum of ``values`` over ``dim`` where ``mask`` is True (e.g. per-sequence sums for RL)."""
    if mask is None:
        return values.sum(dim=dim)
    mask = _check_mask(mask, values.shape)
    return torch.where(mask, values, torch.zeros_like(values)).sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is True (everywhere if None); 0 if no item is valid."""
    if mask is None:
        mask = torch.ones_like(values, dtype=torch.bool)
    mask = _check_mask(mask, values.shape)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1).to(total.dtype)


def token_mask(
    logits: torch.Tensor, labels: torch.Tensor, shift: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align ``(B, T, V)`` logits with ``(B, T)`` labels, shifted by one for causal LMs.

    Returns ``(logits, labels, mask)`` with ``logits[:, :-1]`` paired with ``labels[:, 1:]``
    when ``shift``, and ``mask`` True where the label is not −100.
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"token-level losses need logits (B, T, V) and labels (B, T); got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    return logits, labels, labels != IGNORE_INDEX


def regularised_terms(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    direction: str = "forward",
    *,
    js_weight: float = 0.5,
    temperature: float = 1.0,
    shift: bool = False,
    num_items_in_batch: int | torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(task cross-entropy, divergence to the reference), nats, averaged per example or token.

    Classification: logits ``(B, C)``, labels ``(B,)``; token level: logits ``(B, T, V)``,
    labels ``(B, T)``. Items are the examples / tokens whose label is not −100; both terms are
    sums over this batch's items divided by ``num_items_in_batch`` (the items of the whole
    accumulated batch on all processes, as transformers passes it) or else by this batch's items,
    so that micro-batches add up to the big batch's means. Scalars on the logits' device.
    ``label_smoothing`` ε makes the task term the cross-entropy to (1 − ε)·one-hot + ε·uniform
    (``transformers``' ``label_smoothing_factor``, its ``LabelSmoother``); the divergence is not
    smoothed. ``shift`` (token level only) pairs position t with label t + 1. Raises ValueError
    for ε outside [0, 1), on mismatched shapes, on ``shift`` with classification logits, on
    labels that are not integers in [0, C) or −100, and on a ``num_items_in_batch`` of more than
    one element.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids (or -100), got {labels.dtype}")
    kwargs = {"js_weight": js_weight, "temperature": temperature}
    if ref_logits.shape != policy_logits.shape:
        raise ValueError(
            f"reference logits {tuple(ref_logits.shape)} do not match the policy's "
            f"{tuple(policy_logits.shape)}"
        )
    if policy_logits.ndim == 2:  # classification: one item per labelled row
        if shift:
            raise ValueError(
                f"shift pairs position t with label t + 1: it needs token-level logits (B, T, V), "
                f"got classification logits {tuple(policy_logits.shape)}"
            )
        if labels.shape != policy_logits.shape[:1]:
            raise ValueError(
                f"labels {tuple(labels.shape)} do not match logits {tuple(policy_logits.shape)}"
            )
        mask = labels != IGNORE_INDEX
        div = divergence_from_logits(policy_logits[mask], ref_logits[mask], direction, **kwargs)
        rows, targets = _upcast(policy_logits[mask]), labels[mask]
    else:
        policy, aligned, mask = token_mask(policy_logits, labels, shift)
        ref = ref_logits[:, :-1] if shift else ref_logits
        div = per_token_divergence(policy, ref, mask, direction, **kwargs)
        rows, targets = _upcast(policy[mask]), aligned[mask]
    _check_targets(targets, rows.shape[-1])
    task_sum = F.cross_entropy(rows, targets, reduction="sum", label_smoothing=label_smoothing)
    if num_items_in_batch is None:
        denominator = mask.sum().clamp(min=1)
    else:
        denominator = torch.as_tensor(num_items_in_batch, device=task_sum.device)
        if denominator.numel() != 1:
            raise ValueError(
                f"num_items_in_batch must be one number, got shape {tuple(denominator.shape)}"
            )
        denominator = denominator.reshape(()).clamp(min=1)
    denominator = denominator.to(task_sum.dtype)
    return task_sum / denominator, div.sum() / denominator


def _check_targets(targets: torch.Tensor, classes: int) -> None:
    """Raise ValueError naming the first label outside [0, classes) (−100 already removed)."""
    bad = (targets < 0) | (targets >= classes)
    if bad.any():
        raise ValueError(
            f"labels must be class ids in [0, {classes}) or -100 (ignored), got "
            f"{targets[bad][0].item()}"
        )
