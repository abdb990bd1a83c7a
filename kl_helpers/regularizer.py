"""The regulariser core: divergences between a policy's and a frozen reference's logits, in nats.

One vocabulary for directions everywhere: ``forward`` = KL(p_ref‖p_θ) (weights: the reference),
``reverse`` = KL(p_θ‖p_ref) (weights: the policy), ``js`` = generalised Jensen-Shannon with
``js_weight`` = the reference's share of the mixture (0 → forward KL, 1 → reverse KL, as TRL's GKD
``beta``). The reference is always detached; −inf logits and masked positions give no NaN.

(Minimal version written on branch issue-14 with the agreed interface; issue 12 owns this module.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIRECTIONS = ("forward", "reverse", "js")


def _kl_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P‖Q) = Σ p (log p − log q) over the last dim; 0·log 0 = 0 without NaN (value and grad)."""
    p = log_p.exp()
    log_ratio = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return (p * log_ratio).sum(dim=-1)


def divergence_from_logits(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    direction: str = "forward",
    *,
    js_weight: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-row divergence over the last dim; shape logits.shape[:-1]; nats."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if policy_logits.shape != ref_logits.shape:
        raise ValueError(
            f"policy_logits {tuple(policy_logits.shape)} and ref_logits "
            f"{tuple(ref_logits.shape)} must have the same shape"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= js_weight <= 1.0:
        raise ValueError(f"js_weight must be in [0, 1], got {js_weight}")
    log_p = F.log_softmax(policy_logits / temperature, dim=-1)
    log_r = F.log_softmax(ref_logits.detach() / temperature, dim=-1)
    if direction == "js" and js_weight == 0.0:
        direction = "forward"
    if direction == "js" and js_weight == 1.0:
        direction = "reverse"
    if direction == "forward":
        return _kl_from_log_probs(log_r, log_p)
    if direction == "reverse":
        return _kl_from_log_probs(log_p, log_r)
    # The mixture in probability space; tokens that both give probability 0 keep log m = −inf
    # without a NaN gradient (logsumexp over all −inf has one).
    m = js_weight * log_r.exp() + (1 - js_weight) * log_p.exp()
    log_m = torch.where(m > 0, torch.log(torch.where(m > 0, m, torch.ones_like(m))), log_p)
    return js_weight * _kl_from_log_probs(log_r, log_m) + (1 - js_weight) * _kl_from_log_probs(
        log_p, log_m
    )


def per_token_divergence(
    policy_logits: torch.Tensor,
    ref_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    direction: str = "forward",
    *,
    js_weight: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """(B, T, V) logits, (B, T) bool mask -> (B, T) divergences, exactly 0 where mask is False."""
    if policy_logits.ndim != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(policy_logits.shape)}")
    if mask is None:
        return divergence_from_logits(
            policy_logits, ref_logits, direction, js_weight=js_weight, temperature=temperature
        )
    mask = mask.to(torch.bool)
    if mask.shape != policy_logits.shape[:2]:
        raise ValueError(
            f"mask {tuple(mask.shape)} must match the logits' (B, T) = "
            f"{tuple(policy_logits.shape[:2])}"
        )
    keep = mask.unsqueeze(-1)
    # Masked rows may hold anything (padding, all −inf): replace them before the softmax.
    safe_policy = torch.where(keep, policy_logits, torch.zeros_like(policy_logits))
    safe_ref = torch.where(keep, ref_logits.detach(), torch.zeros_like(ref_logits))
    values = divergence_from_logits(
        safe_policy, safe_ref, direction, js_weight=js_weight, temperature=temperature
    )
    return torch.where(mask, values, torch.zeros_like(values))


def masked_sum(
    values: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1
) -> torch.Tensor:
    """Sum of ``values`` over ``dim`` where ``mask`` is True (e.g. per-sequence sums in RL)."""
    if mask is None:
        return values.sum(dim=dim)
    mask = mask.to(torch.bool)
    return torch.where(mask, values, torch.zeros_like(values)).sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` over the items where ``mask`` is True (0 if there are none)."""
    if mask is None:
        return values.mean() if values.numel() else values.new_zeros(())
    mask = mask.to(torch.bool)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)
