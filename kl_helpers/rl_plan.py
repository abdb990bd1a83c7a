"""Notebook 10's experiment: its config (full, or quick for CI via ``beta_sweep.quick_mode``), the
training and held-out prompts, and the held-out evaluation every run and Best-of-N share.
Introduced in notebook 10.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kl_helpers.beta_sweep import quick_mode
from kl_helpers.rl import RLConfig, distinct_n
from kl_helpers.rl_loop import evaluate_policy

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
    """Notebook 10's settings; each field says why it has its value."""

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
    betas: tuple[float, ...] = (0.1, 0.3, 1.0)  # per-response KL weights (reward nats per nat)
    compare_beta: float = 0.3  # the β at which k1-in-reward meets k3-in-loss
    eval_every: int = 5  # held-out evaluation every this many updates
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
        from kl_helpers.edits import check_betas, check_seed
        from kl_helpers.reward import RECIPES, REWARD_KINDS

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
        if not short or short[0] != 1 or short != sorted(set(short)):
            raise ValueError(f"short_ns must be increasing integers from 1, got {self.short_ns}")
        if not 0 < self.short_top_p <= 1:
            raise ValueError(f"short_top_p must be in (0, 1], got {self.short_top_p}")
        if not self.optimum_betas or min(self.optimum_betas) <= 0:
            raise ValueError(f"optimum_betas must be > 0, got {self.optimum_betas}")
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
        ``hack_steps`` (the long trace), every other run ``sweep_steps``."""
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


def heldout_metrics(
    policy, tokenizer, prompts: Sequence[str], proxy, gold, config: RLConfig, seed: int = 0,
    keep_texts: int = 4,
) -> dict:  # fmt: skip
    """Means over held-out responses: proxy and gold reward, KL(π‖π_ref) per response (nats),
    the reference's per-token NLL (nats/token), length (tokens), distinct-2, as Python floats
    (no tensors, whatever the policy's device); plus a few texts."""
    out = evaluate_policy(policy, tokenizer, prompts, proxy, config, seed)
    texts = out["texts"]
    values = {
        "reward": out["reward"], "gold": torch.as_tensor(gold(texts)).reshape(-1),
        "kl": out["kl"], "ref_nll": out["ref_nll"], "length": out["length"],
    }  # fmt: skip
    metrics = {}
    for name, v in values.items():
        mean, se = mean_and_se(v)
        metrics[name] = mean
        if name in SE_METRICS:
            metrics[f"{name}_se"] = se
    return {**metrics, "n": len(texts), "distinct2": distinct_n(texts, 2),
            "texts": list(texts[:keep_texts])}  # fmt: skip


SE_METRICS = ("reward", "gold", "kl", "ref_nll")  # heldout_metrics reports "<name>_se" for these


def mean_and_se(values) -> tuple[float, float]:
    """Mean and standard error (sample std / √n; 0 for n = 1) of a 1-D sequence, as floats."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        raise ValueError("need at least one value")
    se = float(v.std() / v.numel() ** 0.5) if v.numel() > 1 else 0.0
    return float(v.mean()), se


def seed_mean(evals: Sequence[dict], keys: Sequence[str]) -> dict[str, float]:
    """Per key, the mean over seeds of per-seed evaluations (one dict per seed) and, as
    ``"<key>_se"``, its standard error over the seeds (std/√n; 0 for one seed): the band of a
    point that other seeds would move. Also ``"n_seeds"``. ValueError if ``evals`` is empty."""
    if not evals:
        raise ValueError("need the evaluation of at least one seed")
    out: dict[str, float] = {"n_seeds": len(evals)}
    for key in keys:
        out[key], out[f"{key}_se"] = mean_and_se([e[key] for e in evals])
    return out


def seed_difference(a: Sequence[dict], b: Sequence[dict], key: str) -> tuple[float, float]:
    """Mean over seeds of ``a[i][key] − b[i][key]`` for runs paired by seed (same LoRA start,
    prompt order and sampling seeds; the i-th of each list is the same seed) and its standard
    error over the seeds. ValueError if the lists differ in length or are empty."""
    if len(a) != len(b):
        raise ValueError(f"paired by seed: got {len(a)} and {len(b)} evaluations")
    return mean_and_se([x[key] - y[key] for x, y in zip(a, b, strict=True)])


def pool_baseline(pool: Sequence[dict]) -> dict[str, float]:
    """π_ref's mean proxy ``reward`` and ``gold`` over every pool sample, with standard errors
    (``reward_se``, ``gold_se``) and the sample count ``n``: the step-0 baseline."""
    out: dict[str, float] = {}
    for key in ("reward", "gold"):
        out[key], out[f"{key}_se"] = mean_and_se([x for e in pool for x in e[key]])
    out["n"] = sum(len(e["texts"]) for e in pool)
    return out


def is_reference(policy) -> bool:
    """True when every LoRA B matrix of ``policy`` is zero (π = π_ref, e.g. before the first
    update): an evaluation of it can be shared by every run."""
    found = False
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            found = True
            if bool(p.detach().abs().max() > 0):
                return False
    return found


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

    from tqdm.auto import tqdm

    from kl_helpers.experiment import show_progress
    from kl_helpers.results import code_fingerprint, default_results_dir
    from kl_helpers.rl_loop import rollout

    if size < 1 or chunk < 1:
        raise ValueError(f"size and chunk must be >= 1, got {size} and {chunk}")
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    names = [model_name, proxy.label, gold.label, str(size), str(chunk), code_fingerprint()]
    key = config.key(*names, *prompts)
    folder = results_dir / f"bon-pool-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    bar = tqdm(total=len(prompts) * size, desc="π_ref pool", disable=not show_progress(progress))
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
            texts += rollout(model, tokenizer, [prompt], cfg, seed)[4][: size - start]
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


def best_of_n_table(pool: Sequence[dict], ns: Sequence[int]):
    """Per N, means over prompts: Best-of-N's KL to the pool (exact, nats), the bound
    log N − (N−1)/N, the KL a pool of M distinct samples gives whatever the rewards
    (``best_of_n.uniform_pool_kl``), and the expected proxy and gold rewards (exact over the
    pool)."""
    import pandas as pd

    from kl_helpers.best_of_n import best_of_n_kl_bound, uniform_pool_kl
    from kl_helpers.rl import best_of_n_pool

    rows = []
    for n in ns:
        kls, proxy, gold, ties, uniform = [], [], [], [], []
        for entry in pool:
            dist = best_of_n_pool(torch.tensor(entry["reward"]), entry["texts"], n)
            p = dist["p"]
            kls.append(dist["kl"])
            proxy.append(float((p * dist["reward"]).sum()))
            g = torch.tensor(entry["gold"], dtype=torch.float64)[dist["index"]]
            gold.append(float((p * g).sum()))
            ties.append(1 - len(p) / len(entry["texts"]))
            uniform.append(uniform_pool_kl(len(entry["texts"]), n))
        rows.append({
            "N": n, "kl": sum(kls) / len(kls), "bound": best_of_n_kl_bound(n),
            "M distinct (M, N only)": sum(uniform) / len(uniform),
            "reward": sum(proxy) / len(proxy), "gold": sum(gold) / len(gold),
            "duplicate share": sum(ties) / len(ties),
        })  # fmt: skip
    return pd.DataFrame(rows)


def reward_config(recipe: str, epochs: int | None):
    """The engine config of a reward ``recipe`` (``reward.RECIPES``), with ``epochs`` if given."""
    from kl_helpers.reward import RECIPES

    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    config = RECIPES[recipe]
    return config if epochs is None else config.replace(epochs=epochs)
