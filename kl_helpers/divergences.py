"""Discrete KL divergence, entropy and cross-entropy, in nats.

Convention: ``kl_divergence(p, q)`` is KL(P‖Q) = Σ p log(p/q), the expectation taken under ``p``
(the first argument). 0·log 0 = 0; Q(x)=0 where P(x)>0 gives +inf. Introduced in notebook 01.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kl_helpers._validate import (
    as_float_tensor,
    check_probabilities,
    check_same_shape,
    probability_pair,
)


def entropy(p: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Shannon entropy H(P) = −Σ p log p over the last dim, in nats; shape ``p.shape[:-1]``."""
    p = as_float_tensor(p)
    if validate:
        check_probabilities(p, "p")
    return -torch.special.xlogy(p, p).sum(dim=-1)


def cross_entropy(p: torch.Tensor, q: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Cross-entropy H(P, Q) = −Σ p log q over the last dim, in nats (+inf if q=0 where p>0)."""
    p, q = probability_pair(p, q, validate)
    return -torch.special.xlogy(p, q).sum(dim=-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """KL(P‖Q) = Σ p log(p/q) over the last dim, in nats; weights are ``p``'s probabilities."""
    p, q = probability_pair(p, q, validate)
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(dim=-1)


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p_logits)‖softmax(q_logits)) per row (last dim), in nats.

    Works in log space; ``-inf`` logits (masked classes) follow 0·log 0 = 0 and give no NaN,
    neither in the value nor in the gradient.
    """
    check_same_shape(p_logits, q_logits, ("p_logits", "q_logits"))
    log_p = F.log_softmax(p_logits, dim=-1)
    log_q = F.log_softmax(q_logits, dim=-1)
    p = log_p.exp()
    # Mask the log-ratio (not the product): where p = 0 the ratio may be -inf - x, and
    # 0 * (-inf) would make NaN in the value or its gradient.
    log_ratio = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return (p * log_ratio).sum(dim=-1)


def symmetrised_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jeffreys divergence KL(P‖Q) + KL(Q‖P), in nats."""
    return kl_divergence(p, q) + kl_divergence(q, p)
