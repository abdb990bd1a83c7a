"""Cached RLHF runs: one folder per run like the engine's (``kl_helpers.engine.results``), so
a sweep resumes where it stopped. A folder holds ``history.csv`` (per-step means: reward,
KL(π‖π_ref) in nats, response length), ``adapter.safetensors`` (the LoRA weights) and ``run.json``
(config, key, model, wall time, last responses, held-out evaluations), written last. Introduced in
notebook 10; notebook 11 reloads the same runs and pool (same configs, same keys).
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kl_helpers.engine.results import (
    FORMAT_VERSION,
    atomic_folder,
    code_fingerprint,
    default_results_dir,
    is_finished,
    run_dir,
)
from kl_helpers.rl.evaluation import heldout_metrics, is_reference
from kl_helpers.rl.loop import (
    HISTORY_FIELDS,
    EvalFn,
    RewardFn,
    RLHistory,
    add_lora,
    rollout,
    train_policy,
)
from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.plan import RLHFPlan
from kl_helpers.rl.reward import RewardModel
from kl_helpers.runtime import progress_bar


@dataclass(frozen=True)
class RLRun:
    """A finished (or cached) run: config, cache key, history, LoRA weights, model, wall time."""

    config: RLConfig
    key: str
    history: RLHistory
    adapter: dict[str, torch.Tensor] = field(repr=False)
    model_name: str
    wall_time_s: float


def save_rl_run(run: RLRun, results_dir: Path | str) -> Path:
    """Write ``run`` atomically (history.csv, adapter.safetensors, run.json last)."""
    final = run_dir(results_dir, run.config, run.key)
    with atomic_folder(final) as tmp:
        _write_rl_files(tmp, run)
    return final


def _write_rl_files(tmp: Path, run: RLRun) -> None:
    """history.csv, adapter.safetensors, then run.json (the marker of a finished run)."""
    from safetensors.torch import save_file

    with open(tmp / "history.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("step", *HISTORY_FIELDS))
        for i in range(len(run.history)):
            writer.writerow((i, *(repr(getattr(run.history, f)[i]) for f in HISTORY_FIELDS)))
    save_file({k: v.contiguous() for k, v in run.adapter.items()}, str(tmp / "adapter.safetensors"))
    meta = {
        "format_version": FORMAT_VERSION,
        "key": run.key,
        "config": run.config.to_dict(),
        "model_name": run.model_name,
        "wall_time_s": run.wall_time_s,
        "samples": run.history.samples,
        "evals": run.history.evals,
    }
    (tmp / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_rl_run(results_dir: Path | str, config: RLConfig, key: str) -> RLRun:
    """Read a finished run back (FileNotFoundError if it is not finished)."""
    from safetensors.torch import load_file

    if not is_finished(results_dir, config, key):
        raise FileNotFoundError(f"no finished run {config.label}-{key} in {results_dir}")
    folder = run_dir(results_dir, config, key)
    meta = json.loads((folder / "run.json").read_text())
    history = RLHistory(samples=list(meta["samples"]), evals=list(meta.get("evals", [])))
    with open(folder / "history.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            history.append({k: float(row[k]) for k in HISTORY_FIELDS})
    adapter = load_file(str(folder / "adapter.safetensors"))
    return RLRun(config, key, history, adapter, meta["model_name"], float(meta["wall_time_s"]))


def run_rl(
    config: RLConfig,
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    *,
    model_name: str,
    reward_name: str,
    results_dir: Path | str | None = None,
    progress: bool | None = None,
    evaluate: EvalFn | None = None,
    eval_every: int = 0,
    eval_name: str = "",
) -> RLRun:
    """Train (or load from the cache) one run on a LoRA copy of ``model`` (left untouched), on
    ``model``'s device; the run's history holds floats and its adapter weights are on the CPU.

    The cache key covers the config, ``model_name``, ``reward_name``, the prompts and, when
    ``evaluate`` is given (see :func:`~kl_helpers.rl.loop.train_policy`), ``eval_every`` and
    ``eval_name`` (name what ``evaluate`` computes: its prompts, reward models, seed); its results
    are cached in ``history.evals``.
    """
    from peft import get_peft_model_state_dict

    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    evals = (f"eval:{eval_every}:{eval_name}",) if evaluate is not None else ()
    key = config.key(model_name, reward_name, *prompts, *evals)
    if is_finished(results_dir, config, key):
        return load_rl_run(results_dir, config, key)
    start = time.perf_counter()
    policy = add_lora(copy.deepcopy(model), config)
    history = train_policy(
        policy, tokenizer, prompts, reward_fn, config, progress,
        evaluate=evaluate, eval_every=eval_every,
    )  # fmt: skip
    # LoRA on the attention only: no embedding layer to save (peft's "auto" looks for the base
    # model's config to decide, and warns with local paths when the GGUF folder has none)
    state = get_peft_model_state_dict(policy, save_embedding_layers=False)
    adapter = {k: v.detach().cpu().clone() for k, v in state.items()}
    run = RLRun(config, key, history, adapter, model_name, time.perf_counter() - start)
    save_rl_run(run, results_dir)
    return run


def policy_from_run(model: torch.nn.Module, run: RLRun) -> torch.nn.Module:
    """A LoRA copy of ``model`` carrying ``run``'s trained adapter weights (eval mode), on
    ``model``'s device."""
    from peft import set_peft_model_state_dict

    policy = add_lora(copy.deepcopy(model), run.config)
    set_peft_model_state_dict(policy, run.adapter)
    return policy.eval()


def reference_pool(
    model, tokenizer, prompts: Sequence[str], proxy, gold, config: RLConfig, size: int, *,
    model_name: str, results_dir=None, chunk: int = 16, progress: bool | None = None,
) -> list[dict]:  # fmt: skip
    """``size`` responses from π_ref (``model``, no adapter) per prompt with their proxy and gold
    rewards, sampled ``chunk`` at a time; cached as JSON in ``results_dir`` (resumable per prompt).

    Returns one dict per prompt: ``texts``, ``reward`` (proxy) and ``gold`` lists (Python values,
    no tensors; ``model`` samples on its own device).
    """
    import json
    from pathlib import Path

    if size < 1 or chunk < 1:
        raise ValueError(f"size and chunk must be >= 1, got {size} and {chunk}")
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    names = [model_name, proxy.label, gold.label, str(size), str(chunk), code_fingerprint()]
    key = config.key(*names, *prompts)
    folder = results_dir / f"bon-pool-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    bar = progress_bar(total=len(prompts) * size, desc="π_ref pool", progress=progress)
    for i, prompt in enumerate(prompts):
        path = folder / f"prompt-{i}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
            bar.update(size)
            continue
        texts: list[str] = []
        for start in range(0, size, chunk):
            cfg = config.replace(num_generations=max(2, min(chunk, size - start)))
            seed = config.seed * 100_003 + 50_000 + i * 1_000 + start
            # rollout samples at least 2 (num_generations >= 2): keep this chunk's share
            texts += rollout(model, tokenizer, [prompt], cfg, seed)[4][: min(chunk, size - start)]
            bar.update(min(chunk, size - start))
        entry = {
            "prompt": prompt,
            "texts": texts,
            "reward": [float(r) for r in proxy(texts)],
            "gold": [float(r) for r in gold(texts)],
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)
        out.append(entry)
    bar.close()
    return out


@dataclass
class PlanRuns:
    """The runs of one :class:`~kl_helpers.rl.plan.RLHFPlan`, trained or loaded from the cache, all
    evaluated the same way, so notebooks 10 and 11 read the same cached runs (same cache keys).

    ``model`` is π_ref (each run trains a LoRA copy; ``model`` is left untouched); ``proxy`` is the
    reward the runs maximise, ``gold`` the one they are judged by; ``model_name`` names ``model``
    in the cache keys. π_ref's own evaluation (step 0 of every run) is computed once and reused.
    Runs and pool are on ``model``'s device; their numbers are Python floats.
    """

    plan: RLHFPlan
    model: torch.nn.Module
    tokenizer: object
    proxy: RewardModel
    gold: RewardModel
    model_name: str
    results_dir: Path | str | None = None  # None: the series' results folder
    _reference_eval: dict = field(default_factory=dict, repr=False)

    @property
    def eval_config(self) -> RLConfig:
        """The sampling settings of every held-out evaluation and of π_ref's pool."""
        return self.plan.eval_config()

    @property
    def eval_name(self) -> str:
        """What :meth:`evaluate` computes (prompts, rewards, sample count, seed), for cache keys."""
        p = self.plan
        return (f"{p.heldout_prompts}|{self.proxy.label}|{self.gold.label}|"
                f"{p.eval_generations}|seed{p.seed}|all texts")  # fmt: skip

    def evaluate(self, policy: torch.nn.Module) -> dict:
        """:func:`~kl_helpers.rl.evaluation.heldout_metrics` of ``policy`` on the plan's held-out
        prompts (``eval_generations`` responses each, every text kept), as Python floats."""
        if is_reference(policy) and self._reference_eval:
            return dict(self._reference_eval)
        p = self.plan
        out = heldout_metrics(
            policy, self.tokenizer, p.heldout_prompts, self.proxy, self.gold, self.eval_config,
            seed=p.seed + 123, keep_texts=len(p.heldout_prompts) * p.eval_generations,
        )  # fmt: skip
        if is_reference(policy):
            self._reference_eval.update(out)
        return dict(out)

    def train(
        self, beta: float, kl_estimator: str = "k1_reward", *, seed: int | None = None,
        eval_every: int | None = None, progress: bool | None = None,
    ) -> RLRun:  # fmt: skip
        """One run of the plan at ``beta`` (reward nats per nat of KL) with ``kl_estimator``
        (see :class:`~kl_helpers.rl.loss.RLConfig`) and ``seed`` (None: the plan's), evaluated
        every ``eval_every`` updates (None: once, at the end) and after update 0; trained, or
        loaded when the cache has it. ValueError (from the plan) for a negative β or bad seed."""
        config = self.plan.run_config(beta, kl_estimator, seed)
        return run_rl(
            config, self.model, self.tokenizer, self.plan.train_prompts, self.proxy,
            model_name=self.model_name, reward_name=self.proxy.label, progress=progress,
            results_dir=self.results_dir, evaluate=self.evaluate,
            eval_every=eval_every or config.steps, eval_name=self.eval_name,
        )  # fmt: skip

    def reference_pool(self, progress: bool | None = None) -> list[dict]:
        """π_ref's pool: ``plan.bon_pool`` scored responses per held-out prompt."""
        p = self.plan
        return reference_pool(
            self.model, self.tokenizer, p.heldout_prompts, self.proxy, self.gold,
            self.eval_config, p.bon_pool, model_name=self.model_name, progress=progress,
            results_dir=self.results_dir,
        )  # fmt: skip
