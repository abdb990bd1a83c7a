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
    """Task loss: batch-mean cross-entropy −log p_new(y), nats; logits (B, C), labels (B,).

    Labels of -100 (Hugging Face's "ignore") are left out of the mean, as ``F.cross_entropy``
    does. ValueError for a batch with no label left (the mean of nothing, NaN in PyTorch) and for
    a label outside [0, C) other than -100 (PyTorch's IndexError, a device assert on CUDA).
    The checks read the labels' values (one host sync on an accelerator); meta tensors skip them.
    """
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if labels.is_meta or logits.is_meta:  # no values to check (shape-only runs)
        return F.cross_entropy(logits, labels)
    kept = labels != -100
    if not kept.any():
        raise ValueError("no label to score: the batch is empty or every label is -100")
    bad = kept & ((labels < 0) | (labels >= logits.shape[-1]))
    if bad.any():
        raise ValueError(
            f"labels must be in [0, {logits.shape[-1] - 1}] or -100, got {labels[bad].tolist()}"
        )
    return F.cross_entropy(logits, labels)


def _batch_mean(new_logits: object, ref_logits: object, direction: str) -> torch.Tensor:
    new_logits, ref_logits = torch.as_tensor(new_logits), torch.as_tensor(ref_logits)
    if new_logits.ndim == 0 or new_logits.numel() // max(new_logits.shape[-1], 1) == 0:
        raise ValueError(f"an empty batch has no mean KL (logits shape {tuple(new_logits.shape)})")
    return divergence_from_logits(new_logits, ref_logits, direction).mean()


def calculate_fkl_loss(new_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Forward KL(p_ref‖p_new), batch mean; expectation under the frozen reference. ValueError
    for an empty batch (NaN otherwise); logits may be tensors, arrays or lists."""
    return _batch_mean(new_logits, ref_logits, "forward")


def calculate_rkl_loss(new_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Reverse KL(p_new‖p_ref), batch mean; expectation under the model being trained.
    ValueError for an empty batch (NaN otherwise); logits may be tensors, arrays or lists."""
    return _batch_mean(new_logits, ref_logits, "reverse")
