"""The article's SFT loss functions, under the article's names, in nats.

``calculate_fkl_loss`` is forward KL(p_ref‖p_new) and ``calculate_rkl_loss`` is reverse
KL(p_new‖p_ref), both averaged over the batch with the reference detached (no gradient); they
are thin calls into ``kl_helpers.regularizer``, the one core the engine and ``KLTrainer`` share.
Introduced in notebook 05, used by the notebook-06 experiment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kl_helpers.regularizer import divergence_from_logits


def calculate_cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Task loss: batch-mean cross-entropy −log p_new(y), nats; logits (B, C), labels (B,)."""
    return F.cross_entropy(logits, labels)


def calculate_fkl_loss(new_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Forward KL(p_ref‖p_new), batch mean; expectation under the frozen reference."""
    return divergence_from_logits(new_logits, ref_logits, "forward").mean()


def calculate_rkl_loss(new_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Reverse KL(p_new‖p_ref), batch mean; expectation under the model being trained."""
    return divergence_from_logits(new_logits, ref_logits, "reverse").mean()
