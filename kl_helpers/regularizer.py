"""The regulariser core: divergence between a policy and a frozen reference, from logits, in nats.

One vocabulary for directions everywhere (engine config, ``KLTrainer``, LLM and RL code):
``"forward"`` = KL(p_ref‖p_θ) (expectation under the reference), ``"reverse"`` = KL(p_θ‖p_ref)
(expectation under the policy), ``"js"`` = generalised Jensen-Shannon with ``js_weight`` π the
reference's share of the mixture; as TRL's GKD ``beta``, π = 0 is forward KL and π = 1 reverse KL.
The reference's logits are always detached. ``-inf`` logits and masked positions give no NaN,
neither in the value nor in the gradient. Introduced in notebook 06; used by notebooks 06-09.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kl_helpers.divergences import kl_from_logits

DIRECTIONS: tuple[str, ...] = ("forward", "reverse", "js")
IGNORE_INDEX = -100  # label of positions that carry no loss (padding, prompt tokens)
RENAMED = {"fkl": "forward", "rkl": "reverse"}  # old engine names -> the one vocabulary


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is one of ``DIRECTIONS``; else a ValueError naming the choices."""
    if direction in RENAMED:
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
    policy = _upcast(policy_logits)
    ref = _upcast(ref_logits.detach()).to(policy.dtype)
    if temperature != 1.0:
        policy, ref = policy / temperature, ref / temperature
    if direction == "js" and js_weight == 0.0:
        direction = "forward"
    elif direction == "js" and js_weight == 1.0:
        direction = "reverse"
    if direction == "forward":
        return kl_from_logits(ref, policy)  # the reference's probabilities weight the log-ratio
    if direction == "reverse":
        return kl_from_logits(policy, ref)  # the policy's probabilities weight the log-ratio
    return generalised_js_from_logits(ref, policy, js_weight)


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """(task cross-entropy, divergence to the reference), nats, averaged per example or token.

    Classification: logits ``(B, C)``, labels ``(B,)``; token level: logits ``(B, T, V)``,
    labels ``(B, T)``. Items are the examples / tokens whose label is not −100; both terms are
    sums over this batch's items divided by ``num_items_in_batch`` (the items of the whole
    accumulated batch on all processes, as transformers passes it) or else by this batch's items,
    so that micro-batches add up to the big batch's means. Scalars on the logits' device.
    """
    kwargs = {"js_weight": js_weight, "temperature": temperature}
    if ref_logits.shape != policy_logits.shape:
        raise ValueError(
            f"reference logits {tuple(ref_logits.shape)} do not match the policy's "
            f"{tuple(policy_logits.shape)}"
        )
    if policy_logits.ndim == 2:  # classification: one item per labelled row
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
    task_sum = F.cross_entropy(rows, targets, reduction="sum")
    if num_items_in_batch is None:
        denominator = mask.sum().clamp(min=1)
    else:
        denominator = torch.as_tensor(num_items_in_batch, device=task_sum.device).clamp(min=1)
    denominator = denominator.to(task_sum.dtype)
    return task_sum / denominator, div.sum() / denominator
