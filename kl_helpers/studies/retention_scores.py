"""Notebook 08's scores: did a run keep what the reference knew? Tables and the "keeps" rule.

Held-out NLL, accuracy and macro-F1 of each run with paired standard errors against the
reference (``compared_to_reference``), one row per run (``retention_table``), the rule
``keeps_within`` (kept within a stated margin, shown by one-sided intervals) and the older
``keeps`` (not significantly worse), and the curves of fit vs retention. The runs come from
``studies.retention``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kl_helpers.engine.results import RunResult
from kl_helpers.studies import heldout, metrics

KEEP_SE = 2.0  # ``keeps``: no more than this many paired SEs worse than the reference
KEEP_Z = 1.645  # ``keeps_within``: one-sided 95% intervals (a two-one-sided-tests' 90% interval)
# ``keeps_within``'s margins. NLL: 0.1 nats per held-out text, i.e. the true label keeps at least
# e^-0.1 ≈ 90% of the probability the reference gave it (geometric mean over the texts).
# Macro-F1: 0.05 (in notebook 08, well under half of the reference's lead over the majority class).
NLL_MARGIN = 0.1
F1_MARGIN = 0.05


def macro_f1(probs: torch.Tensor, labels: Sequence[int], n_classes: int) -> float:
    """Unweighted mean over classes of F1 of the arg-max predictions (0 for a class never hit)."""
    pred = torch.as_tensor(probs).argmax(-1)
    return heldout.macro_f1_of(pred, torch.as_tensor(list(labels)), n_classes).item()


def held_out_scores(probs: torch.Tensor, labels: Sequence[int], ref: torch.Tensor) -> dict:
    """Accuracy, macro-F1, NLL (nats) and mean KL(p_ref‖p) (nats) on held-out texts."""
    return {
        "accuracy": metrics.accuracy(probs, list(labels)).item(),
        "macro_f1": macro_f1(probs, labels, probs.shape[-1]),
        "nll": metrics.negative_log_likelihood(probs, list(labels)).item(),
        "kl_to_ref": metrics.mean_forward_kl_to_reference(probs, ref).item(),
    }


def compared_to_reference(
    probs: torch.Tensor, labels: Sequence[int], ref: torch.Tensor, prior: torch.Tensor
) -> dict:
    """What a constant cannot fake, with paired SEs over the held-out texts: the run minus the
    reference in NLL (``d_nll``, nats) and macro-F1 (``d_macro_f1``), the mean KL(p_ref‖p)
    (``kl_to_ref_se``), and the run's NLL minus the class prior's (``nll_vs_prior``, nats)."""
    d = heldout.paired_difference(probs, ref, list(labels))
    vs_prior = heldout.paired_difference(probs, heldout.constant_probs(prior, len(labels)), labels)
    return {
        "d_nll": d["d_nll"],
        "d_nll_se": d["d_nll_se"],
        "d_macro_f1": d["d_macro_f1"],
        "d_macro_f1_se": d["d_macro_f1_se"],
        "kl_to_ref_se": d["kl_se"],
        "nll_vs_prior": vs_prior["d_nll"],
        "nll_vs_prior_se": vs_prior["d_nll_se"],
    }


def run_row(task: str, run: RunResult, prior: torch.Tensor) -> dict:
    """One table row: how the run was regularised, its fit on the task, and what it kept of the
    reference on the held-out texts (``prior``: the reference's training-label frequencies)."""
    c = run.config
    fit = metrics.negative_log_likelihood(run.prob("final", "train"), list(run.train_labels))
    probs, ref = run.prob("final", "test"), run.prob("reference", "test")
    return (
        {
            "task": task,
            "kl_on": "none" if c.method == "sft" else c.kl_inputs,
            "method": c.method,
            "beta": c.beta,
            "seed": c.seed,
            "fit_nll": fit.item(),
            "fit_acc": run.accuracy("train"),
        }
        | held_out_scores(probs, run.test_labels, ref)
        | compared_to_reference(probs, run.test_labels, ref, prior)
    )


def retention_table(runs: dict[str, Sequence[RunResult]], prior: torch.Tensor) -> pd.DataFrame:
    """One row per step-2 run (``{task: runs}``), see ``run_row``, with the interval ends of
    ``keep_bounds`` and ``keeps`` (``keeps_within`` at its default margins) added. ValueError
    when there is no run at all."""
    table = pd.DataFrame([run_row(task, r, prior) for task, rs in runs.items() for r in rs])
    if table.empty:
        raise ValueError(f"no runs to tabulate: every task's list is empty ({list(runs)})")
    table = pd.concat([table, keep_bounds(table)], axis=1)
    return table.assign(keeps=keeps_within(table))


def keep_bounds(table: pd.DataFrame, z: float = KEEP_Z) -> pd.DataFrame:
    """Per row, the ends of the one-sided intervals that ``keeps_within`` judges, from the paired
    SEs over the held-out texts: ``nll_bound`` = d_nll + z·SE (nats: the most the run's NLL may
    be above the reference's), ``f1_bound`` = d_macro_f1 − z·SE (the least its macro-F1 may be
    above the reference's; negative: below), ``prior_bound`` = nll_vs_prior + z·SE (nats; below
    0: better than the class prior). Needs the columns of ``compared_to_reference``."""
    if not z > 0:
        raise ValueError(f"z must be > 0, got {z}")
    return pd.DataFrame(
        {
            "nll_bound": table["d_nll"] + z * table["d_nll_se"],
            "f1_bound": table["d_macro_f1"] - z * table["d_macro_f1_se"],
            "prior_bound": table["nll_vs_prior"] + z * table["nll_vs_prior_se"],
        },
        index=table.index,
    )


def keeps_within(
    table: pd.DataFrame,
    nll_margin: float = NLL_MARGIN,
    f1_margin: float = F1_MARGIN,
    z: float = KEEP_Z,
) -> pd.Series:
    """Per row: did the run keep what the reference knew, within a margin, as the data show?

    True when all three one-sided intervals of ``keep_bounds`` (95% at the default ``z``) clear
    their bar: the NLL at most ``nll_margin`` nats above the reference's (``nll_bound <
    nll_margin``), the macro-F1 at most ``f1_margin`` below it (``f1_bound > −f1_margin``), and
    the NLL below the class prior's (``prior_bound < 0``), which no constant can do. Better than
    the reference passes. Unlike ``keeps``, a noisier run does not pass more easily: its wider
    interval has to fit inside the margin too.
    """
    if not (nll_margin > 0 and f1_margin > 0):
        raise ValueError(f"margins must be > 0, got {nll_margin}, {f1_margin}")
    b = keep_bounds(table, z)
    return (b["nll_bound"] < nll_margin) & (b["f1_bound"] > -f1_margin) & (b["prior_bound"] < 0)


def keeps(table: pd.DataFrame, k: float = KEEP_SE) -> pd.Series:
    """Per row: is the run not significantly worse than the reference on the held-out texts?

    (The older rule, kept for comparison: a noisier run passes it more easily; notebook 08 uses
    ``keeps_within``.) True when all three hold, each with paired SEs over the held-out texts:
    its NLL is at most ``k`` SE above the reference's (``d_nll <= k·d_nll_se``), its macro-F1 at
    most ``k`` SE below (``d_macro_f1 >= −k·d_macro_f1_se``), and its NLL more than ``k`` SE
    below the class prior's (``nll_vs_prior < −k·nll_vs_prior_se``), which no constant can do.
    Needs the columns of ``compared_to_reference``. ValueError unless ``k`` > 0 (NaN too).
    """
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k}")
    return (
        (table["d_nll"] <= k * table["d_nll_se"])
        & (table["d_macro_f1"] >= -k * table["d_macro_f1_se"])
        & (table["nll_vs_prior"] < -k * table["nll_vs_prior_se"])
    )


def summarise(table: pd.DataFrame, columns: Sequence[str] = ("fit_nll", "accuracy")):
    """Mean, min and max over seeds of ``columns`` per (task, kl_on, method, β)."""
    g = table.groupby(["task", "kl_on", "method", "beta"])[list(columns)]
    out = g.mean()
    return out.join(g.min(), rsuffix="_min").join(g.max(), rsuffix="_max")


def curve(table: pd.DataFrame, task: str, method: str, kl_on: str, x: str, y: str) -> pd.DataFrame:
    """Seed-mean (``x``, ``y``) per β for one regulariser, SFT included as β = 0, sorted by β."""
    rows = table[(table["task"] == task) & (table["method"].isin(["sft", method]))]
    rows = rows[rows["kl_on"].isin(["none", kl_on])]
    g = rows.groupby("beta")[[x, y]]
    means = g.mean()
    return means.join(g.min(), rsuffix="_min").join(g.max(), rsuffix="_max").reset_index()


def value_at_fit(points: pd.DataFrame, fit: float, x: str = "fit_nll", y: str = "accuracy"):
    """``y`` linearly interpolated at task fit ``x = fit`` along a curve (NaN outside its range,
    and for a curve with no points)."""
    pts = points.sort_values(x)
    xs, ys = pts[x].to_numpy(float), pts[y].to_numpy(float)
    if len(xs) == 0 or not xs[0] <= fit <= xs[-1]:
        return float("nan")
    return float(np.interp(fit, xs, ys))
