"""A reward model for RLHF that is good but not perfect: the series' sentiment classifier.

The bundled encoder fine-tuned by the engine (cached with its weights in the results folder, via
notebook 08's ``retention.trained_reference``) scores a decoded response; the reward is its
probability of "positive" (in [0, 1]) or that class's log-odds log p₊ − log(1 − p₊) (nats).
Recipes: ``"sentiment"``, notebook 07's generated template sentences with its 12-epoch recipe
(adjective-driven, so it can be gamed); ``"reviews"``, the 600 training drug reviews with notebook
08's reference recipe (``retention.PLANS["full"].reference``; its earlier 2 epochs at 1e-4 learned
only the class prior: test accuracy 0.654 = the share of positive reviews). Introduced in
notebook 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kl_helpers.data.article import LABEL_NAMES
from kl_helpers.data.reviews import review_data
from kl_helpers.encoding import encode
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.reference import predict_logits
from kl_helpers.studies.beta_sweep import PLANS, sweep_data
from kl_helpers.studies.retention import PLANS as RETENTION_PLANS
from kl_helpers.studies.retention import trained_reference

REWARD_KINDS: tuple[str, ...] = ("prob", "logit")
POSITIVE = LABEL_NAMES.index("positive")
RECIPES: dict[str, ExperimentConfig] = {
    "sentiment": PLANS["full"].base,  # notebook 07: 12 epochs at 1e-4, 32 tokens
    "reviews": RETENTION_PLANS["full"].reference,  # notebook 08_forgetting's reference
}


@dataclass(frozen=True)
class RewardModel:
    """A sequence classifier as a reward: ``reward(texts)`` -> (N,) float32 on the CPU."""

    model: torch.nn.Module
    tokenizer: object
    name: str  # goes into RL cache keys
    kind: str = "prob"  # "prob": p(positive); "logit": log p₊ − log(1 − p₊), nats
    positive: int = POSITIVE  # index of the "positive" class
    max_length: int = 64  # tokens of a response the classifier reads

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"kind must be one of {REWARD_KINDS}, got {self.kind!r}")

    @property
    def label(self) -> str:
        """Name and output kind, e.g. for ``run_rl(reward_name=...)`` cache keys."""
        return f"{self.name}/{self.kind}"

    def log_probs(self, texts: Sequence[str]) -> torch.Tensor:
        """Class log-probabilities (N, C), float64 on the CPU, of ``texts`` (eval mode, no
        gradient; the classifier runs on its own device)."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("texts must be a non-empty sequence of strings")
        # An empty response is scored as such; the tokenizer still adds [CLS] and [SEP].
        enc = encode(self.tokenizer, list(texts), None, self.max_length)
        with torch.no_grad():
            logits = predict_logits(self.model, enc)
        return torch.log_softmax(logits.double(), dim=-1).cpu()

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """Reward per text: p(positive) or its log-odds, (N,) float32 on the CPU.

        The log-odds stay finite however confident the classifier is: where 1 − p₊ is below
        1e-6 (log-odds above ~13.8 nats; it rounds to 0 past ~37), log(1 − p₊) is taken as the
        log-sum-exp of the other classes' log-probabilities instead of from p₊."""
        log_probs = self.log_probs(texts)
        log_p = log_probs[:, self.positive]
        if self.kind == "prob":
            return log_p.exp().float()
        log_rest = torch.log(-torch.expm1(log_p))
        confident = log_p > -1e-6  # 1 − p₊ < 1e-6: too few of its digits survive in log p₊
        if confident.any():
            others = torch.cat(
                [log_probs[:, : self.positive], log_probs[:, self.positive + 1 :]], 1
            )
            log_rest = torch.where(confident, torch.logsumexp(others, dim=-1), log_rest)
        return (log_p - log_rest).float()

    def with_kind(self, kind: str) -> RewardModel:
        """The same classifier with another output kind."""
        return RewardModel(
            self.model, self.tokenizer, self.name, kind, self.positive, self.max_length
        )


def recipe_data(recipe: str):
    """The engine's training data of a recipe: notebook 07's full generated set or the reviews."""
    if recipe == "sentiment":
        return sweep_data(PLANS["full"].data).text_data
    if recipe == "reviews":
        return review_data()
    raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")


def train_reward_model(
    recipe: str = "sentiment",
    config: ExperimentConfig | None = None,
    results_dir: Path | str | None = None,
    kind: str = "prob",
) -> RewardModel:
    """The engine's classifier fine-tuned on ``recipe``'s data (``config`` overrides its
    settings), trained once and cached with its weights (``retention.trained_reference``); the
    classifier is returned on the CPU (move ``reward.model`` to run it elsewhere)."""

    data = recipe_data(recipe)
    config = RECIPES[recipe] if config is None else config
    ref = trained_reference(config, data, results_dir)
    name = f"reward-{recipe}:{ref.name}"
    return RewardModel(ref.model, ref.tokenizer, name, kind, POSITIVE, config.max_length)
