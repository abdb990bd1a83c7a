"""RLHF with a KL penalty, the pure parts: config, response masks, baselines, KL placement, loss.

The objective is E_π[r] − β·KL(π‖π_ref) over whole responses, with the policy π a LoRA-adapted
causal LM and π_ref its adapter-disabled base. Two placements of the KL, as practitioners use them
(names follow TRL: ``beta``, ``num_generations``, ``temperature``, ``max_new_tokens``):

- ``"k1_reward"`` (RLOO/PPO style, TRL's ``RLOOTrainer``): the response's k1 = Σ_t log π/π_ref,
  detached, is subtracted from the reward before the baseline. REINFORCE on that shaped reward is
  an unbiased gradient of E_π[r] − β·KL(π‖π_ref) over sequences.
- ``"k3_loss"`` (GRPO style, TRL's ``GRPOTrainer``): Σ_t k3 = Σ_t (ρ − 1 − log ρ), ρ = π_ref/π,
  is added to the loss and differentiated through π. Its expected gradient is Σ_t ∇KL(π_ref‖π) at
  each sampled prefix (the *forward* KL, prefixes not differentiated), not ∇KL(π‖π_ref): close to
  it only while π ≈ π_ref. ``tests/rl/test_loss.py`` checks both statements by enumeration.

The KL terms are sums over response tokens in both placements, so β means the same in both (TRL's
GRPO averages over tokens instead). Baselines: ``"rloo"`` (leave-one-out mean of the other
``num_generations − 1`` responses to the same prompt) or ``"group"`` (GRPO: subtract the group mean
and divide by its standard deviation + 1e-4). Monitors of KL(π‖π_ref) use the regulariser core.

Why a small loop and not TRL: checked against trl 1.16.0 (on PyPI, not a dependency here). Its
RLOO and GRPO trainers are ``transformers.Trainer`` subclasses that need ``datasets>=4.7`` and
``accelerate>=1.10``, keep the two KL placements in two trainers with different other defaults
(reward scaling, token averaging, clipping), and expose no per-token tensors for a unit test or a
notebook figure. Their reference for a new LoRA adapter is the one we use (adapter disabled). On a
2-core CPU one step of ours is one sampling loop, two forward passes and one backward, each
prompt run once in each (``rl.forward``); nothing in it needs the Trainer
(``benchmarks/bench_trl.py`` times it against ``RLOOTrainer``). Introduced in notebook 10.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kl_helpers._validate import check_same_shape, is_any, token_ids
from kl_helpers.llm.token_kl import token_estimates
from kl_helpers.regularizer import masked_sum

KL_PLACEMENTS: tuple[str, ...] = ("k1_reward", "k3_loss")
BASELINES: tuple[str, ...] = ("rloo", "group")
GROUP_STD_EPS = 1e-4  # TRL GRPO's epsilon under the group standard deviation


@dataclass(frozen=True)
class RLConfig:
    """One RLHF run: the KL penalty, sampling, LoRA and the optimiser (a field per choice).

    ValueError for a field out of its range (a negative seed among them)."""

    beta: float = 0.05  # weight of KL(π‖π_ref) per response (nats); 0 = no penalty
    kl_estimator: str = "k1_reward"  # where the KL goes: "k1_reward" | "k3_loss"
    baseline: str = "rloo"  # "rloo" (leave-one-out) | "group" (GRPO mean/std)
    num_generations: int = 4  # responses per prompt (TRL's num_generations; RLOO's k)
    prompts_per_step: int = 2  # prompts per step; batch = prompts_per_step · num_generations
    max_new_tokens: int = 24  # response length cap (tokens)
    temperature: float = 1.0  # sampling temperature; log-probs use the same (as TRL)
    steps: int = 50  # policy updates
    lr: float = 5e-4  # AdamW learning rate of the LoRA weights
    max_grad_norm: float = 1.0  # gradient clipping (L2 norm)
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scale α (update = α/r · BA)
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # modules that get adapters
    seed: int = 0  # LoRA init, prompt order and sampling

    def __post_init__(self) -> None:
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be finite and >= 0, got {self.beta}")
        if self.kl_estimator not in KL_PLACEMENTS:
            raise ValueError(
                f"kl_estimator must be one of {KL_PLACEMENTS}, got {self.kl_estimator!r}"
            )
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        for name in (
            "num_generations", "prompts_per_step", "max_new_tokens", "steps", "lora_r",
            "lora_alpha", "seed",
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if isinstance(self.lora_targets, list):  # from JSON or a caller: compare and hash as one
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2 (a baseline), got {self.num_generations}"
            )
        for name in ("prompts_per_step", "max_new_tokens", "steps", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:  # NumPy's and seed_everything's seeds are >= 0
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not (self.temperature > 0 and self.lr > 0 and self.max_grad_norm > 0):  # NaN too
            raise ValueError(
                f"temperature, lr and max_grad_norm must be > 0, got {self.temperature}, "
                f"{self.lr}, {self.max_grad_norm}"
            )

    @property
    def batch_size(self) -> int:
        """Responses per step."""
        return self.prompts_per_step * self.num_generations

    @property
    def label(self) -> str:
        """Short run name for legends and folders, e.g. ``k1_reward_b0.05``."""
        return f"{self.kl_estimator}_b{self.beta:g}"

    def replace(self, **changes: Any) -> RLConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RLConfig:
        """Inverse of :meth:`to_dict` (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def key(self, *extra: str) -> str:
        """Stable 12-hex-digit hash of every field plus ``extra`` strings (model, prompts...)."""
        payload = json.dumps([self.to_dict(), list(extra)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def response_mask(responses: torch.Tensor, eos_id: int | Sequence[int] | None) -> torch.Tensor:
    """(B, T) bool on ``responses``' device: True up to and including each row's first end token,
    False after it. ``eos_id`` is one id or several (any of them ends a row); None keeps all."""
    if responses.ndim != 2:
        raise ValueError(f"responses must be (B, T), got {tuple(responses.shape)}")
    eos = token_ids(eos_id, "eos_id")
    if eos is None:
        return torch.ones_like(responses, dtype=torch.bool)
    is_eos = is_any(responses, eos).long()
    return (torch.cumsum(is_eos, dim=1) - is_eos) == 0


def _grouped(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D (one per response), got {tuple(rewards.shape)}")
    if not rewards.is_floating_point():  # 0/1 rewards: the float32 advantages of their values
        rewards = rewards.float()
    if num_generations < 2 or rewards.numel() % num_generations:
        raise ValueError(
            f"need num_generations >= 2 dividing {rewards.numel()} rewards, got {num_generations}"
        )
    return rewards.reshape(-1, num_generations)


def rloo_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """r_i − mean_{j≠i} r_j within each prompt's group (rows prompt-major); shape (B,)."""
    grouped = _grouped(rewards, num_generations)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_generations - 1)
    return (grouped - baseline).reshape(-1)


def group_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """(r_i − group mean) / (group std + 1e-4), GRPO's baseline (unbiased std); shape (B,)."""
    grouped = _grouped(rewards, num_generations)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    return (centred / (std + GROUP_STD_EPS)).reshape(-1)


ADVANTAGES = {"rloo": rloo_advantages, "group": group_advantages}


@dataclass(frozen=True)
class RLLoss:
    """The loss to minimise and what went into it (all but ``loss`` detached)."""

    loss: torch.Tensor  # scalar, differentiable in the policy's log-probs
    advantages: torch.Tensor  # (B,)
    shaped_rewards: torch.Tensor  # (B,) reward − β·k1 ("k1_reward") or the reward itself
    kl_k1: torch.Tensor  # (B,) Σ_t k1: a single-sample estimate of KL(π‖π_ref) per response
    kl_k3: torch.Tensor  # (B,) Σ_t k3


def rl_loss(
    policy_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    kl_estimator: str = "k1_reward",
    num_generations: int = 4,
    baseline: str = "rloo",
) -> RLLoss:
    """REINFORCE with a baseline and the KL penalty placed as ``kl_estimator`` says; nats.

    ``policy_logp``/``ref_logp`` (B, T): log-probs of the sampled tokens (0 off ``mask``), the
    reference's detached here. Loss = −mean_b A_b·Σ_t log π(y_bt) [+ β·mean_b Σ_t k3_bt].
    Raises ValueError for an empty batch (B = 0: no mean).
    """
    if kl_estimator not in KL_PLACEMENTS:
        raise ValueError(f"kl_estimator must be one of {KL_PLACEMENTS}, got {kl_estimator!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    check_same_shape(ref_logp, policy_logp, ("ref_logp", "policy_logp"))
    check_same_shape(mask, policy_logp, ("mask", "policy_logp"))
    if policy_logp.ndim != 2 or rewards.shape != policy_logp.shape[:1]:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} must be (B,) for (B, T) log-probs "
            f"{tuple(policy_logp.shape)}"
        )
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    if policy_logp.shape[0] == 0:
        raise ValueError(f"rl_loss needs at least one response, got {tuple(policy_logp.shape)}")
    mask = mask.to(torch.bool)
    est = token_estimates(policy_logp, ref_logp, mask)  # k_i(log ρ = 0) = 0 off the mask
    k1 = masked_sum(est["k1"], mask).detach()
    k3 = masked_sum(est["k3"], mask)
    rewards = rewards.detach().to(policy_logp.dtype)
    shaped = rewards - beta * k1 if kl_estimator == "k1_reward" else rewards
    advantages = ADVANTAGES[baseline](shaped, num_generations).detach()
    loss = -(advantages * masked_sum(policy_logp, mask)).mean()
    if kl_estimator == "k3_loss" and beta > 0:
        loss = loss + beta * k3.mean()
    return RLLoss(loss, advantages, shaped.detach(), k1, k3.detach())
