"""Notebook 07's β sweep on the engine: the plan (quick or full, decided here only), the data
adapter, held-out evaluation tables, comparisons paired by seed with Student-t intervals, the
trade-off frontier, and theory-vs-trained tables.

Quick mode is on when $KL_QUICK is truthy or $CI is (CI sets CI=true); ``KL_QUICK=0`` forces the
full sweep even under CI. Runs go through ``kl_helpers.engine.experiment.run_sweep``, so finished
runs are read back from the results cache and an interrupted sweep resumes. Introduced in notebook
07.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import stats

from kl_helpers.data.article import LABEL_NAMES
from kl_helpers.data.sentiment import SentimentConfig, make_sentiment_splits
from kl_helpers.edits import check_betas, check_seeds, same_betas
from kl_helpers.encoding import TextData
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.results import RunResult
from kl_helpers.runtime import quick_mode
from kl_helpers.studies import metrics
from kl_helpers.theory import optima


@dataclass(frozen=True)
class SweepPlan:
    """What the sweep runs: data, β grid (0 = SFT), seeds, and the shared run settings."""

    mode: str  # "quick" or "full"
    data: SentimentConfig
    betas: tuple[float, ...]  # positive β values; β = 0 is the SFT run of each seed
    seeds: tuple[int, ...]  # classification-head init, shuffling and dropout per run
    base: ExperimentConfig = field(default_factory=ExperimentConfig)

    def __post_init__(self) -> None:
        """ValueError unless ``mode`` is "quick" or "full", ``betas`` distinct finite βs > 0
        (stored ascending, as floats) and ``seeds`` distinct ints ≥ 0 (stored as Python ints)."""
        if self.mode not in ("quick", "full"):
            raise ValueError(f"mode must be 'quick' or 'full', got {self.mode!r}")
        object.__setattr__(self, "betas", check_betas(self.betas, "betas"))
        object.__setattr__(self, "seeds", check_seeds(self.seeds, "seeds"))

    def configs(self) -> list[ExperimentConfig]:
        """Per seed: SFT, then forward KL and reverse KL at every β."""
        out = []
        for seed in self.seeds:
            base = self.base.replace(seed=seed)
            out.append(base.replace(method="sft", beta=0.0))
            out += [
                base.replace(method=m, beta=float(b)) for m in optima.METHODS for b in self.betas
            ]
        return out

    def describe(self) -> str:
        """One line: mode, data size, grid and run count."""
        n = self.data.n_per_class * len(LABEL_NAMES)
        return (
            f"{self.mode} sweep: {n} sentences (train/validation/test "
            f"{'/'.join(f'{x:.2f}' for x in self.data.fractions)}), "
            f"β ∈ {{0, {', '.join(f'{b:g}' for b in self.betas)}}} × {{forward, reverse}} × "
            f"seeds {list(self.seeds)} = {len(self.configs())} runs of {self.base.epochs} epochs"
        )


# Both modes share the data's construction, the learning rate and the batch size; the quick one
# trains on fewer sentences for fewer steps with fewer β values and seeds.
_BASE = ExperimentConfig(lr=1e-4, batch_size=32, max_length=32, epochs=12)
PLANS: dict[str, SweepPlan] = {
    "full": SweepPlan(
        mode="full",
        data=SentimentConfig(n_per_class=150, fractions=(1 / 3, 1 / 3, 1 / 3)),
        betas=(0.1, 0.3, 1.0, 3.0, 10.0),
        seeds=(0, 1, 2),
        base=_BASE,
    ),
    "quick": SweepPlan(
        mode="quick",
        data=SentimentConfig(n_per_class=60, fractions=(1 / 3, 1 / 3, 1 / 3)),
        betas=(0.3, 3.0),
        seeds=(0, 1),
        base=_BASE.replace(epochs=10),
    ),
}


def sweep_plan(quick: bool | None = None) -> SweepPlan:
    """The quick plan if ``quick`` (default: ``quick_mode()``), else the full one."""
    return PLANS["quick" if (quick_mode() if quick is None else quick) else "full"]


def edited_plan(
    plan: SweepPlan, betas: Sequence[float] | None = None, seeds: Sequence[int] | None = None
) -> SweepPlan:
    """``plan`` with a reader's β grid and seeds (None keeps the plan's); ValueError if invalid."""
    return dataclasses.replace(
        plan,
        betas=plan.betas if betas is None else check_betas(betas),
        seeds=plan.seeds if seeds is None else check_seeds(seeds),
    )


def is_default_plan(plan: SweepPlan) -> bool:
    """True if ``plan`` is its mode's plan unedited (the grid and seeds the prose describes)."""
    default = PLANS[plan.mode]
    return (
        same_betas(plan.betas, default.betas)
        and tuple(plan.seeds) == tuple(default.seeds)
        and plan.data == default.data
        and plan.base == default.base
    )


@dataclass(frozen=True)
class SweepData:
    """Engine input (validation and test texts concatenated as its "test") and the split sizes."""

    text_data: TextData
    n_validation: int
    n_test: int


def sweep_data(config: SentimentConfig) -> SweepData:
    """Generate the sentences; train on "train", evaluate on validation + test in one pass."""
    splits = make_sentiment_splits(config)
    val, test = splits["validation"], splits["test"]
    data = TextData(
        train_texts=tuple(splits["train"]["text"]),
        train_labels=tuple(int(y) for y in splits["train"]["label"]),
        test_texts=tuple(val["text"]) + tuple(test["text"]),
        test_labels=tuple(int(y) for y in val["label"]) + tuple(int(y) for y in test["label"]),
        label_names=LABEL_NAMES,
    )
    return SweepData(data, len(val), len(test))


def split_probs(
    result: RunResult, kind: str, n_validation: int
) -> dict[str, tuple[torch.Tensor, list[int]]]:
    """``{"train"|"validation"|"test": (probabilities (N, C), labels)}`` of one model ``kind``.

    The first ``n_validation`` held-out texts are the validation split; ValueError unless it is
    an integer in [0, number of held-out texts]."""
    n_held = len(result.test_labels)
    if isinstance(n_validation, bool) or not isinstance(n_validation, numbers.Integral):
        raise ValueError(f"n_validation must be an integer in [0, {n_held}], got {n_validation!r}")
    if not 0 <= n_validation <= n_held:
        raise ValueError(f"n_validation must be an integer in [0, {n_held}], got {n_validation}")
    held = result.prob(kind, "test")
    labels = list(result.test_labels)
    return {
        "train": (result.prob(kind, "train"), list(result.train_labels)),
        "validation": (held[:n_validation], labels[:n_validation]),
        "test": (held[n_validation:], labels[n_validation:]),
    }


def evaluation_table(results: Sequence[RunResult], n_validation: int) -> pd.DataFrame:
    """One row per run and split: method, β, seed, and every metric in ``metrics.METRICS``.

    The reference's own metrics are added once per seed and split as method "reference".
    """
    rows = []
    seen_reference: set[int] = set()
    for r in results:
        c = r.config
        final = split_probs(r, "final", n_validation)
        ref = split_probs(r, "reference", n_validation)
        for split, (p, y) in final.items():
            rows.append(
                {"method": c.method, "beta": c.beta, "seed": c.seed, "split": split}
                | metrics.evaluate(p, y, ref[split][0])
            )
        if c.seed not in seen_reference:
            seen_reference.add(c.seed)
            for split, (p, y) in ref.items():
                rows.append(
                    {"method": "reference", "beta": float("inf"), "seed": c.seed, "split": split}
                    | metrics.evaluate(p, y, p)
                )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, split: str, columns: Sequence[str]) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds of ``columns`` for one split."""
    rows = table[(table["split"] == split) & (table["method"] != "reference")]
    g = rows.groupby(["method", "beta"])[list(columns)]
    out = g.mean().join(g.std(ddof=1), rsuffix="_sd")
    return out.sort_index(level=["method", "beta"], key=_method_order)


def _method_order(index: pd.Index) -> pd.Index:
    order = {"sft": 0, "forward": 1, "reverse": 2}
    return index.map(lambda v: order.get(v, 3)) if index.name == "method" else index


def best_beta(
    table: pd.DataFrame, method: str, metric: str = "nll", split: str = "validation"
) -> float:
    """β (0 = SFT) with the lowest mean ``metric`` over seeds on ``split`` for ``method``."""
    rows = table[(table["split"] == split) & table["method"].isin(["sft", method])]
    if rows.empty:
        raise ValueError(f"no rows for method {method!r} on split {split!r}")
    means = rows.groupby("beta")[metric].mean()
    return float(means.idxmin())


def pareto_frontier(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Boolean mask of points not dominated when both coordinates are to be minimised.

    A point is dominated if another is ≤ in both coordinates and < in at least one.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        better_eq = (x <= x[i]) & (y <= y[i])
        strictly = (x < x[i]) | (y < y[i])
        keep[i] = not np.any(better_eq & strictly)
    return keep


def tradeoff_points(
    table: pd.DataFrame, x: str, y: str, split: str = "test", x_split: str | None = None
) -> pd.DataFrame:
    """Mean (over seeds) of metric ``x`` and ``y`` per (method, β), with a ``frontier`` column.

    SFT appears once per method at β = 0 (shared); ``x_split`` takes ``x`` from another split.
    """

    def means(metric: str, which: str) -> pd.Series:
        rows = table[(table["split"] == which) & (table["method"] != "reference")]
        return rows.groupby(["method", "beta"])[metric].mean()

    pts = pd.DataFrame({"x": means(x, x_split or split), "y": means(y, split)}).reset_index()
    sft = pts[pts["method"] == "sft"]
    pts = pd.concat(
        [pts[pts["method"] != "sft"]] + [sft.assign(method=m) for m in optima.METHODS],
        ignore_index=True,
    )
    unique = pts.drop_duplicates(subset=["beta", "x", "y"])
    front = pareto_frontier(unique["x"], unique["y"])
    on_front = set(zip(unique["beta"][front], unique["x"][front], unique["y"][front], strict=True))
    pts["frontier"] = [
        (b, a, c) in on_front for b, a, c in zip(pts["beta"], pts["x"], pts["y"], strict=True)
    ]
    return pts.sort_values(["method", "beta"], ignore_index=True)


def theory_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Per KL-regularised run and train sentence: r_y, closed-form π*_y, trained p(y), gap.

    The trained probability is the final model's in eval mode; r_y is the frozen reference's.
    """
    rows = []
    for r in results:
        c = r.config
        if c.method not in optima.METHODS:
            continue
        ref, fin = r.prob("reference", "train"), r.prob("final", "train")
        for i, y in enumerate(r.train_labels):
            r_y = float(ref[i, y])
            pred = optima.label_probability(c.method, r_y, c.beta).item()
            trained = float(fin[i, y])
            rows.append(
                {
                    "method": c.method,
                    "beta": c.beta,
                    "seed": c.seed,
                    "sentence": i,
                    "r_y": r_y,
                    "predicted": pred,
                    "trained": trained,
                    "gap": trained - pred,
                }
            )
    return pd.DataFrame(rows)


def confidence_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Per run and split ("train", "test"): method, β, seed, and the final model's (eval mode)
    mean maximum probability and mean probability of the label over that split's sentences.

    Notebook 06's Figure E in numbers; notebook 07 sets it beside the closed-form optima.
    """
    rows = []
    for r in results:
        for split, labels in (("train", r.train_labels), ("test", r.test_labels)):
            p = r.prob("final", split)
            y = torch.as_tensor(labels, dtype=torch.long)
            rows.append(
                {
                    "method": r.config.method,
                    "beta": r.config.beta,
                    "seed": r.config.seed,
                    "split": split,
                    "max_prob": p.max(-1).values.mean().item(),
                    "label_prob": p[torch.arange(len(y)), y].mean().item(),
                }
            )
    return pd.DataFrame(rows)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its two-sided ``level`` Student-t interval: ``(mean, low, high)``.

    The interval is mean ± t(n − 1) · sd / √n with the sample sd (ddof = 1); with one value it is
    (−inf, inf). Values up to float64's limit are fine (where their sum or squares would
    overflow, they are scaled first); a half-width beyond that limit is ±inf. ValueError for no
    values, a non-finite value or ``level`` outside (0, 1).
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"values must be finite, got {x.tolist()}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: handled below, no warning
        mean = float(x.mean())
        if len(x) == 1:
            return mean, -math.inf, math.inf
        sd = float(x.std(ddof=1))
    if not (math.isfinite(mean) and math.isfinite(sd)):  # sums or squares past float64's range
        top = math.frexp(float(np.abs(x).max()))[1] - 1  # max |x| / 2**top is in [1, 2)
        scale = math.ldexp(1.0, top)  # a power of 2: dividing by it is exact
        mean = float((x / scale).mean()) * scale
        sd = float((x / scale).std(ddof=1)) * scale
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return mean, mean - half, mean + half


Run = tuple[str, float]  # (method, β) of a sweep run; plain SFT is ("sft", 0.0)


def seed_comparisons(
    table: pd.DataFrame,
    split: str,
    metric: str,
    pairs: Sequence[tuple[Run, Run]],
    level: float = 0.95,
) -> pd.DataFrame:
    """For each ``(a, b)`` in ``pairs``: ``metric`` on ``split`` of run a minus run b, paired by
    seed (a seed fixes the head's initialisation, the data order and dropout of every run) over
    the seeds both ran, as the mean difference and its :func:`t_interval`.

    ``table`` is :func:`evaluation_table`'s. One row per pair, indexed by (a, b) named as
    :func:`run_name` names them, with columns ``mean``, ``low``, ``high``, ``n`` (seeds) and
    ``interval`` (text, e.g. ``-0.178 [-0.304, -0.051]``).
    ValueError for a pair with no seed in common.
    """
    rows = table[table["split"] == split]

    def per_seed(run: Run) -> pd.Series:
        method, beta = run
        chosen = rows[(rows["method"] == method) & (rows["beta"] == beta)]
        return chosen.groupby("seed")[metric].mean()

    out = []
    if not pairs:
        return pd.DataFrame(columns=["mean", "low", "high", "n", "interval"])
    for a, b in pairs:
        diff = (per_seed(a) - per_seed(b)).dropna()
        if diff.empty:
            raise ValueError(f"runs {a} and {b} share no seed with {metric!r} on split {split!r}")
        mean, low, high = t_interval(diff.to_numpy(), level)
        out.append(
            {
                "mean": mean,
                "low": low,
                "high": high,
                "n": len(diff),
                "interval": f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]",
            }
        )
    index = pd.MultiIndex.from_tuples(
        [(run_name(a), run_name(b)) for a, b in pairs], names=["a", "b"]
    )
    return pd.DataFrame(out, index=index)


def run_name(run: Run) -> str:
    """``"SFT"`` for β = 0, else e.g. ``"forward β=0.3"``."""
    method, beta = run
    return "SFT" if beta == 0 else f"{method} β={beta:g}"
