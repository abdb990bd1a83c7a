"""Does the KL penalty keep what the model knew? Notebook 08's retention experiment.

Step 1 fine-tunes the bundled encoder on the 600 training drug reviews with the engine and keeps
its weights (safetensors, next to the run in the results cache, so a second run loads them).
Step 2 starts from that model and regularises towards it (``reference="same_start"``) while
fine-tuning on a new task with the article's settings; every run's "test" texts are the 379
held-out reviews, so the engine's saved probabilities measure what was kept. Quick mode is
decided by ``kl_helpers.runtime.quick_mode``. Introduced in notebook 08.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kl_helpers import models
from kl_helpers._validate import real
from kl_helpers.data.article import LABEL_NAMES, article_data
from kl_helpers.edits import check_seeds
from kl_helpers.encoding import TextData
from kl_helpers.engine.config import ARTICLE_BETAS, ExperimentConfig
from kl_helpers.engine.experiment import resolve_device, resolved, run_experiment, run_sweep
from kl_helpers.engine.results import (
    RunResult,
    default_results_dir,
    is_finished,
    load_run,
    run_dir,
    run_key,
    save_run,
)
from kl_helpers.reference import ReferenceLogits
from kl_helpers.runtime import quick_mode

FORWARD, REVERSE = "forward", "reverse"  # the engine's method names (kl_helpers.regularizer)
KL_METHODS: tuple[str, ...] = (FORWARD, REVERSE)
WEIGHTS_FILE = "model.safetensors"  # the trained reference's weights, inside its run folder
TRUNCATION_SIDE = "left"  # long reviews keep their last tokens, where the verdict usually is
SWAP_POSITIVE_NEGATIVE: dict[int, int] = {0: 1, 1: 0, 2: 2}  # the "flipped" task's convention
TASKS: tuple[str, ...] = ("article", "flipped")  # the new tasks of step 2 (see ``task_data``)


@dataclass(frozen=True)
class RetentionPlan:
    """The whole experiment: how the reference learns, the new tasks, β grid, seeds, replay."""

    mode: str  # "quick" or "full"
    reference: ExperimentConfig  # step 1: fine-tuning the encoder on the 600 training reviews
    task: ExperimentConfig  # step 2: the article's lr, batch, epochs on the new task's sentences
    tasks: tuple[str, ...]  # new tasks: "article" (its labels) and/or "flipped" (pos <-> neg)
    betas: tuple[float, ...]  # β > 0 for the KL on the task's own sentences; β = 0 is SFT
    seeds: tuple[int, ...]  # dropout (and replay sampling) of step 2; one reference for all
    replay_betas: tuple[float, ...] = ()  # β for the KL on replayed training reviews instead
    replay_batch_size: int = 8  # unlabelled training reviews per step for the replay KL
    replay_tasks: tuple[str, ...] = ("article",)  # tasks that also get the replay variant
    replay_methods: tuple[str, ...] = KL_METHODS  # directions of the replay KL
    truncation_side: str = TRUNCATION_SIDE  # reviews keep their last ("left") or first tokens

    def configs(self, task: str) -> list[ExperimentConfig]:
        """Per seed: SFT, then forward and reverse KL on the task's sentences at every β."""
        out = []
        for seed in self.seeds:
            base = self.task.replace(seed=seed)
            out.append(base.replace(method="sft", beta=0.0))
            out += [base.replace(method=m, beta=float(b)) for m in KL_METHODS for b in self.betas]
        return out

    def replay_configs(self) -> list[ExperimentConfig]:
        """Per seed, replay direction and replay β: the KL taken on replayed reviews instead."""
        return [
            self.task.replace(
                seed=s,
                method=m,
                beta=float(b),
                kl_inputs="replay",
                replay_batch_size=self.replay_batch_size,
            )
            for s in self.seeds
            for m in self.replay_methods
            for b in self.replay_betas
        ]

    def n_runs(self) -> int:
        """Step-2 runs over all tasks (replay included)."""
        replay = len(self.replay_configs()) * len([t for t in self.replay_tasks if t in self.tasks])
        return len(self.tasks) * len(self.configs(self.tasks[0])) + replay

    @property
    def name(self) -> str:
        """The plan's name in a run's fingerprint (``kl_helpers.notebook.claims``): mode and
        reference recipe, e.g. ``full (reference: last 32 tokens, 3 epochs, lr 0.0001, batch
        16)``."""
        r = self.reference
        side = "last" if self.truncation_side == "left" else "first"
        return (
            f"{self.mode} (reference: {side} {r.max_length} tokens, {r.epochs} epochs, "
            f"lr {r.lr:g}, batch {r.batch_size})"
        )

    def describe(self) -> str:
        """One line: mode, grid, seeds, run count."""
        return (
            f"{self.mode}: reference {self.reference.epochs} epochs on the training reviews "
            f"({'last' if self.truncation_side == 'left' else 'first'} "
            f"{self.reference.max_length} tokens, lr {self.reference.lr:g}, batch "
            f"{self.reference.batch_size}); tasks {list(self.tasks)} × "
            f"β ∈ {{0, {', '.join(f'{b:g}' for b in self.betas)}}} × {list(KL_METHODS)} × "
            f"seeds {list(self.seeds)}, {self.task.epochs} epochs each; replay KL "
            f"{list(self.replay_methods)} at β ∈ {{{', '.join(f'{b:g}' for b in self.replay_betas)}"
            f"}}; {self.n_runs()} runs"
        )


# The reference recipe, chosen by measurement (benchmarks/bench_retention_reference.py; 2026-11-29,
# one seed, held-out reviews; class prior NLL 0.849 nats, majority macro-F1 0.264): the last 32
# tokens at lr 3e-4 for 4 epochs (the recipe of 2026-11-25) reached NLL 0.979 (above the prior),
# at 1e-4 for 3 epochs NLL 0.856 / macro-F1 0.425, at 5e-5 for 3 epochs 0.789 / 0.329; the last 64
# tokens at 1e-4 for 3 epochs NLL 0.717 (0.132 ± 0.019 below the prior) and macro-F1 0.398
# (0.134 ± 0.020 above the majority), at twice the cost per token of 32 (271 CPU-seconds on one
# thread). Step 2 cuts the reviews the same way, so it evaluates what the reference learned.
_REFERENCE = ExperimentConfig(lr=1e-4, batch_size=16, epochs=3, max_length=64, seed=0)
_TASK = ExperimentConfig(
    max_length=_REFERENCE.max_length
)  # the article's lr 1e-4, batch 8, 100 ep.
PLANS: dict[str, RetentionPlan] = {
    "full": RetentionPlan(
        mode="full",
        reference=_REFERENCE,
        task=_TASK,
        tasks=("article",),  # plain SFT on it already forgets; "flipped" is in the edit cell
        betas=(*ARTICLE_BETAS, 3.0),  # the article's grid and one larger β
        seeds=(0, 1, 2),
        # Replay in one direction at one β (3 runs of 30-40 s). β = 3 also ran until 2026-12-07
        # (it kept in two seeds of three) and was cut for the make-run budget.
        replay_betas=(0.3,),
        replay_batch_size=4,
        replay_methods=(FORWARD,),
    ),
    "quick": RetentionPlan(
        mode="quick",
        reference=_REFERENCE.replace(epochs=1),
        task=_TASK.replace(epochs=20),
        tasks=("article",),
        betas=(3.0,),
        seeds=(0,),
        replay_betas=(3.0,),
        replay_batch_size=4,
        replay_methods=(FORWARD,),
    ),
}


def retention_plan(quick: bool | None = None) -> RetentionPlan:
    """The quick plan if ``quick`` (default: ``kl_helpers.runtime.quick_mode()``), else full."""
    return PLANS["quick" if (quick_mode() if quick is None else quick) else "full"]


def edited_plan(
    plan: RetentionPlan,
    betas: Sequence[float] | None = None,
    replay_betas: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    model: str | None = None,
    replay_methods: Sequence[str] | None = None,
) -> RetentionPlan:
    """``plan`` with the edit cell's values (None: the plan's); bad ones raise ValueError.

    βs are real numbers (NumPy's too; not bools or strings), seeds distinct integers ≥ 0 (NumPy's
    too; not bools), stored as Python floats and ints."""
    betas = tuple(real(b, "BETAS") for b in (plan.betas if betas is None else betas))
    replay = tuple(
        real(b, "REPLAY_BETAS")
        for b in (plan.replay_betas if replay_betas is None else replay_betas)
    )
    seeds = check_seeds(plan.seeds if seeds is None else seeds)
    tasks = tuple(plan.tasks if tasks is None else tasks)
    methods = tuple(plan.replay_methods if replay_methods is None else replay_methods)
    if not betas or not all(np.isfinite(b) and b > 0 for b in betas + replay):
        raise ValueError(f"BETAS (non-empty) and REPLAY_BETAS need finite β > 0: {betas}, {replay}")
    if not tasks or not set(tasks) <= set(TASKS):
        raise ValueError(f"TASKS must be a non-empty subset of {TASKS}, got {tasks}")
    if not methods or not set(methods) <= set(KL_METHODS) or len(set(methods)) < len(methods):
        raise ValueError(f"REPLAY_METHODS must be distinct values of {KL_METHODS}, got {methods}")
    return dataclasses.replace(
        plan,
        betas=betas,
        replay_betas=replay,
        seeds=seeds,
        tasks=tasks,
        replay_methods=methods,
        reference=plan.reference.replace(model=model),
    )


def task_data(task: str, held_out: TextData) -> TextData:
    """The new task's training sentences, evaluated on ``held_out``'s test texts (the reviews).

    "article": the article's 7 training sentences with its labels; "flipped": the same sentences
    with positive and negative swapped, a convention that contradicts the reference's.
    """
    article = article_data()
    if task == "article":
        labels = article.train_labels
    elif task == "flipped":
        labels = tuple(SWAP_POSITIVE_NEGATIVE[y] for y in article.train_labels)
    else:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return TextData(
        article.train_texts, labels, held_out.test_texts, held_out.test_labels, LABEL_NAMES
    )


@dataclass(frozen=True)
class Reference:
    """The fine-tuned start model of step 2, its tokenizer, the run that trained it, a name that
    carries that run's cache key (so step-2 runs are cached per reference), and its logits on
    the held-out and replay texts, computed once for every step-2 run."""

    model: torch.nn.Module
    tokenizer: object
    run: RunResult
    name: str
    logits: ReferenceLogits = field(default_factory=ReferenceLogits, compare=False, repr=False)


def trained_reference(
    config: ExperimentConfig,
    data: TextData,
    results_dir: Path | str | None = None,
    truncation_side: str = TRUNCATION_SIDE,
) -> Reference:
    """``config``'s model fine-tuned on ``data`` by the engine (eval mode, on the CPU); texts
    longer than ``config.max_length`` keep their first (``truncation_side="right"``) or last
    (``"left"``) tokens, in training, in evaluation and in every step-2 run that uses it.

    Cached: when the run and its ``model.safetensors`` are in ``results_dir`` they are loaded,
    otherwise the run trains and both are written.
    """
    from safetensors.torch import load_model, save_model

    if truncation_side not in ("left", "right"):
        raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    choice = models.resolve_model(config.model)
    tokenizer = models.load_tokenizer(choice)
    tokenizer.truncation_side = truncation_side
    name = f"{choice.name}|truncate-{truncation_side}"  # in the cache key
    model = models.load_classifier(choice, data.num_labels, seed=config.seed)
    full = resolved(config, name, resolve_device(config))
    key = run_key(full, data.fingerprint())
    weights = run_dir(results_dir, full, key) / WEIGHTS_FILE
    if is_finished(results_dir, full, key) and weights.is_file():
        run = load_run(results_dir, full, key)
    else:
        kept: dict[str, torch.Tensor] = {}

        def keep(trained: torch.nn.Module) -> None:
            kept.update({k: v.detach().cpu().clone() for k, v in trained.state_dict().items()})

        run = run_experiment(
            full, data, model=model, tokenizer=tokenizer, model_name=name, on_trained=keep
        )
        model.load_state_dict(kept)
        # the run's own folder: its key was computed when it started (the source may have changed)
        weights = save_run(run, results_dir) / WEIGHTS_FILE
        save_model(model, str(weights))
    load_model(model, str(weights))
    return Reference(model.eval(), tokenizer, run, f"{name}+reviews-{run.key}")


def run_task(
    plan: RetentionPlan,
    task: str,
    reference: Reference,
    held_out: TextData,
    replay_texts: Sequence[str] = (),
    results_dir: Path | str | None = None,
    progress: bool | None = None,
) -> list[RunResult]:
    """Step 2 for one task through the engine's cached ``run_sweep``: the plan's runs with the KL
    on the task's sentences, then (with ``replay_texts``) those with the KL on replayed texts."""
    data = task_data(task, held_out)
    kwargs = {"model": reference.model, "tokenizer": reference.tokenizer}
    kwargs |= {"model_name": reference.name, "progress": progress}
    kwargs |= {"reference_logits": reference.logits}
    runs = run_sweep(plan.configs(task), data, results_dir, **kwargs)
    if replay_texts and task in plan.replay_tasks and plan.replay_betas:
        replay = plan.replay_configs()
        runs += run_sweep(replay, data.with_replay(replay_texts), results_dir, **kwargs)
    return runs
