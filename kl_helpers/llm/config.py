"""Notebook 09's one experiment config: which prompts make the policy and the reference, and how
much sampling and enumeration it does (full, or quick for CI via ``runtime.quick_mode``).
Introduced in notebook 09.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kl_helpers.runtime import quick_mode

PIRATE = "You are a pirate. Answer every question like a pirate would."


@dataclass(frozen=True)
class TokenKLConfig:
    """Notebook 09's settings; each field says why it has its value."""

    mode: str = "full"  # "full" (the saved outputs) or "quick" (nbval/CI)
    llm: str | None = None  # None: the resolver's rule; "bundled" forces the offline GGUF
    policy_system: str = PIRATE  # π: the same weights, told to talk like a pirate
    ref_system: str | None = None  # π_ref: the chat template's default system prompt
    questions: tuple[str, ...] = (
        "Describe the weather today.",
        "What should I cook for dinner?",
    )
    n_samples: int = 24  # responses sampled from π per question
    max_new_tokens: int = 24  # short responses keep the CPU time small
    tree_k: int = 4  # truncated tree: the reference's top-k tokens at every prefix ...
    tree_length: int = 3  # ... for this many tokens (k^length sequences, enumerated)
    grad_sample_sizes: tuple[int, ...] = (1, 4, 16, 64, 256)  # responses per gradient estimate
    grad_repeats: int = 200  # repeated estimates per size, for the error's mean and spread
    contexts: tuple[str, str] = (  # two prompts whose next-token distributions barely overlap
        "The capital of France is",
        "The largest planet in the solar system is",
    )
    grid: int = 61  # (α, τ) grid points per axis for the forward/reverse landscapes
    seed: int = 0

    def replace(self, **changes) -> TokenKLConfig:
        """A copy with some fields changed (the notebook's edit cell uses it)."""
        return dataclasses.replace(self, **changes)


QUICK = TokenKLConfig(
    mode="quick",
    questions=("Describe the weather today.",),
    n_samples=8,
    max_new_tokens=10,
    tree_k=3,
    tree_length=2,
    grad_sample_sizes=(1, 4, 16),
    grad_repeats=50,
    grid=21,
)


def token_kl_config(quick: bool | None = None) -> TokenKLConfig:
    """The full config, or the quick one when ``quick`` (default: $KL_QUICK / $CI) says so."""
    if quick is None:
        quick = quick_mode()
    return QUICK if quick else TokenKLConfig()
