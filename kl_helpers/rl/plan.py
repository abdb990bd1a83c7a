"""Notebook 10's experiment: its config (full, or quick for CI via ``runtime.quick_mode``), the
training and held-out prompts, the reward recipe. Introduced in notebook 10; notebook 11 reads the
same plan (its pool, Best-of-N sizes, one-word answers, the optimum's β grid) and reloads its runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from kl_helpers.edits import check_betas, check_seed
from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.reward import RECIPES, REWARD_KINDS
from kl_helpers.runtime import quick_mode

_ITEMS = (
    "the medicine you take for your headaches",
    "the pill your doctor prescribed for sleep",
    "your allergy tablets",
    "the cream you used for a rash",
    "the antidepressant you started last year",
    "your blood pressure medication",
    "the painkiller you took after surgery",
    "the inhaler you use for asthma",
    "the drug you take for migraines",
    "the antibiotic you finished last week",
    "your acne treatment",
    "the nasal spray you use in spring",
    "the vitamin supplement you take daily",
    "the anxiety medication you were given",
    "your diabetes medicine",
    "the cough syrup you bought",
)
PROMPTS: tuple[str, ...] = tuple(f"Write a one-sentence review of {item}." for item in _ITEMS)


@dataclass(frozen=True)
class RLHFPlan:
    """Notebooks 10 and 11's settings; each field says why it has its value.

    ValueError for a setting out of its range: among others ``short_ns`` that are not increasing
    integers from 1 and ``optimum_betas`` that are not finite and > 0."""

    mode: str = "full"  # "full" (the saved outputs) or "quick" (nbval/CI)
    llm: str | None = None  # None: the resolver's rule; "bundled" forces the offline GGUF
    train_prompts: tuple[str, ...] = PROMPTS[:12]  # the policy is updated on these only
    heldout_prompts: tuple[str, ...] = PROMPTS[12:]  # every evaluation; never trained on
    proxy: str = "sentiment"  # reward being optimised: notebook 07's adjective-driven classifier
    gold: str = "reviews"  # the "true" reward: notebook 08's classifier of real drug reviews
    proxy_epochs: int | None = None  # None: the recipe's epochs; quick mode trains fewer
    gold_epochs: int | None = None  # None: the recipe's (notebook 08's reference, cached there)
    reward_kind: str = "logit"  # log-odds of "positive" (nats): unbounded, so it can be hacked
    base: RLConfig = RLConfig(beta=0.0, lr=2e-3, steps=40, max_new_tokens=24)  # LoRA RL lr
    hack_steps: int = 40  # the β = 0 run: long enough for the reward hacking to show
    sweep_steps: int = 10  # each β > 0 run (and the β = 0 run's point at this step)
    # per-response KL weights (reward nats per nat); β = 0.1 also ran until 2026-12-07: it could
    # not be told from β = 0 over three seeds, and its 3 runs (~3 min) broke the make-run budget
    betas: tuple[float, ...] = (0.3, 1.0)
    compare_beta: float = 0.3  # the β at which k1-in-reward meets k3-in-loss
    eval_every: int = 10  # held-out evaluation every this many updates (each ~9 s on a CPU)
    # held-out responses per prompt and evaluation: the standard error of a mean over
    # len(heldout_prompts) × this many responses must stay below the differences compared
    # (8 × 4 prompts = 32 responses; the reference's baseline is the pool's, bon_pool × 4)
    eval_generations: int = 8
    bon_ns: tuple[int, ...] = (1, 2, 4, 8, 16)  # Best-of-N sizes
    bon_pool: int = 32  # reference samples per held-out prompt for Best-of-N (M ≥ 2N)
    # one-word answers: Best-of-N and the optimum exactly over every one-token response
    short_prompt: str = "Describe {} in one word."  # formatted with each held-out item
    short_prefix: str = ""  # a fixed start of the answer ("In one word:" spreads π_ref wider)
    short_top_p: float = 0.99  # π_ref of the first token: its nucleus of this mass, renormalised
    short_ns: tuple[int, ...] = (1, 2, 4, 8, 16, 64, 256)  # Best-of-N sizes for one-word answers
    optimum_betas: tuple[float, ...] = tuple(float(b) for b in torch.logspace(1, -2, 25))
    seed: int = 0
    # seeds of every β-sweep point and of the placement comparison: seed, seed + 1, ... (one
    # seed's evaluation error says nothing of how far another seed's run lands; claims that
    # compare runs use the spread over these seeds). The long β = 0 trace runs at ``seed`` only.
    sweep_seeds: int = 3

    def __post_init__(self) -> None:
        if self.mode not in ("full", "quick"):
            raise ValueError(f"mode must be 'full' or 'quick', got {self.mode!r}")
        if not self.train_prompts or not self.heldout_prompts:
            raise ValueError("train_prompts and heldout_prompts must both be non-empty")
        if set(self.train_prompts) & set(self.heldout_prompts):
            raise ValueError("a held-out prompt is also a training prompt: keep the two apart")
        if len(self.train_prompts) < self.base.prompts_per_step:
            raise ValueError(
                f"need >= {self.base.prompts_per_step} train_prompts (base.prompts_per_step)"
            )
        for name in ("proxy", "gold"):
            if getattr(self, name) not in RECIPES:
                raise ValueError(
                    f"{name} must be one of {tuple(RECIPES)}, got {getattr(self, name)!r}"
                )
        if self.reward_kind not in REWARD_KINDS:
            raise ValueError(f"reward_kind must be one of {REWARD_KINDS}, got {self.reward_kind!r}")
        object.__setattr__(self, "betas", check_betas(self.betas, "betas"))
        if self.compare_beta not in self.betas:
            raise ValueError(f"compare_beta={self.compare_beta} must be one of betas {self.betas}")
        if not 1 <= self.eval_every <= self.sweep_steps <= self.hack_steps:
            raise ValueError(
                "need 1 <= eval_every <= sweep_steps <= hack_steps (the β = 0 run is read at "
                f"the sweep's step), got {self.eval_every}, {self.sweep_steps}, {self.hack_steps}"
            )
        if self.sweep_steps % self.eval_every:
            raise ValueError(
                f"sweep_steps ({self.sweep_steps}) must be a multiple of eval_every "
                f"({self.eval_every}): the β = 0 run needs an evaluation at that step"
            )
        if self.eval_generations < 2:
            raise ValueError(f"eval_generations must be >= 2, got {self.eval_generations}")
        ns = list(self.bon_ns)
        if not ns or ns[0] != 1 or ns != sorted(set(ns)) or any(int(n) != n for n in ns):
            raise ValueError(f"bon_ns must be increasing integers starting at 1, got {self.bon_ns}")
        if self.bon_pool < 2 * ns[-1]:
            raise ValueError(f"bon_pool ({self.bon_pool}) must be >= 2 × the largest N ({ns[-1]})")
        if "{}" not in self.short_prompt:
            raise ValueError(f"short_prompt needs a '{{}}' for the item, got {self.short_prompt!r}")
        short = list(self.short_ns)
        if (
            not short
            or short[0] != 1
            or short != sorted(set(short))
            or any(int(n) != n for n in short)
        ):
            raise ValueError(f"short_ns must be increasing integers from 1, got {self.short_ns}")
        if not 0 < self.short_top_p <= 1:
            raise ValueError(f"short_top_p must be in (0, 1], got {self.short_top_p}")
        if not self.optimum_betas or not all(0 < b < math.inf for b in self.optimum_betas):
            raise ValueError(f"optimum_betas must be finite and > 0, got {self.optimum_betas}")
        check_seed(self.seed, "seed")
        if (
            isinstance(self.sweep_seeds, bool)
            or not isinstance(self.sweep_seeds, int)
            or self.sweep_seeds < 1
        ):
            raise ValueError(f"sweep_seeds must be an integer >= 1, got {self.sweep_seeds!r}")

    def replace(self, **changes) -> RLHFPlan:
        """A copy with some fields changed (the notebook's edit cell uses it)."""
        return dataclasses.replace(self, **changes)

    def seeds(self) -> tuple[int, ...]:
        """The sweep's seeds: ``seed``, ``seed + 1``, ... (``sweep_seeds`` of them)."""
        return tuple(self.seed + i for i in range(self.sweep_seeds))

    def run_config(
        self, beta: float, kl_estimator: str = "k1_reward", seed: int | None = None
    ) -> RLConfig:
        """The RLConfig of one run (``seed`` default: the plan's): β = 0 at the plan's seed runs
        ``hack_steps`` (the long trace), every other run ``sweep_steps``. ValueError (from
        RLConfig) for a negative or non-finite β, a negative seed or an unknown estimator."""
        seed = self.seed if seed is None else seed
        steps = self.hack_steps if beta == 0 and seed == self.seed else self.sweep_steps
        return self.base.replace(beta=beta, kl_estimator=kl_estimator, steps=steps, seed=seed)

    def short_prompts(self) -> tuple[str, ...]:
        """``short_prompt`` for each held-out prompt's item (one-word answers)."""
        prefix, suffix = "Write a one-sentence review of ", "."
        items = [p.removeprefix(prefix).removesuffix(suffix) for p in self.heldout_prompts]
        return tuple(self.short_prompt.format(item) for item in items)

    def eval_config(self) -> RLConfig:
        """Sampling settings of the held-out evaluation (``eval_generations`` per prompt)."""
        return self.base.replace(num_generations=self.eval_generations)


QUICK = RLHFPlan(
    mode="quick",
    train_prompts=PROMPTS[:4],
    heldout_prompts=PROMPTS[12:14],
    proxy_epochs=2,
    gold_epochs=1,  # notebook 08's quick reference: cached by 08 under `make nbval`
    base=RLConfig(beta=0.0, lr=2e-3, steps=4, max_new_tokens=8, num_generations=2),
    hack_steps=4,
    sweep_steps=2,
    betas=(0.1, 1.0),
    compare_beta=0.1,
    eval_every=2,
    eval_generations=2,
    bon_ns=(1, 2, 4),
    bon_pool=8,
    short_top_p=0.9,
    optimum_betas=(10.0, 1.0, 0.1, 0.01),
    sweep_seeds=2,
)


def rlhf_plan(quick: bool | None = None) -> RLHFPlan:
    """The full plan, or the quick one when ``quick`` (default: $KL_QUICK / $CI) says so."""
    if quick is None:
        quick = quick_mode()
    return QUICK if quick else RLHFPlan()


def reward_config(recipe: str, epochs: int | None):
    """The engine config of a reward ``recipe`` (``reward.RECIPES``), with ``epochs`` if given."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    config = RECIPES[recipe]
    return config if epochs is None else config.replace(epochs=epochs)
