"""Notebook 08's reference recipe, chosen by measurement: a few (tokens, side, epochs, lr, batch)
candidates trained by the engine on the 600 training reviews, scored on the 379 held-out ones.

    KL_THREADS=2 python benchmarks/bench_retention_reference.py [results_dir] [candidate ...]

Prints one line per candidate (wall time of training + evaluation) and a table with held-out NLL,
accuracy and macro-F1 ± SE (bootstrap over reviews), next to the class-prior and majority-class
baselines. Runs are cached in ``results_dir`` (default /tmp/kl-bench-retention).
"""

from __future__ import annotations

import sys
import time

import pandas as pd
import torch

from kl_helpers.data import reviews
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.notebook.setup import setup_notebook
from kl_helpers.studies import heldout, retention

# name: (max_length, truncation side, epochs, lr, batch)
CANDIDATES = {
    "last32-4ep-3e-4": (32, "left", 4, 3e-4, 16),  # the recipe of 2026-11-25
    "first128-3ep-5e-5": (128, "right", 3, 5e-5, 16),  # the independent run
    "last32-3ep-1e-4": (32, "left", 3, 1e-4, 16),
    "last32-3ep-5e-5": (32, "left", 3, 5e-5, 16),
    "last32-2ep-1e-4": (32, "left", 2, 1e-4, 16),
    "last64-3ep-1e-4": (64, "left", 3, 1e-4, 16),
    "last64-3ep-5e-5": (64, "left", 3, 5e-5, 16),
    "first64-3ep-5e-5": (64, "right", 3, 5e-5, 16),
}


def main(results_dir: str, names: list[str]) -> None:
    runtime = setup_notebook(seed=0)
    print(runtime.summary(), flush=True)
    data = reviews.review_data()
    rows = {}
    for name in names:
        length, side, epochs, lr, batch = CANDIDATES[name]
        config = ExperimentConfig(
            model="minilm", lr=lr, batch_size=batch, epochs=epochs, max_length=length, seed=0
        )
        start = time.perf_counter()
        ref = retention.trained_reference(config, data, results_dir, truncation_side=side)
        here = time.perf_counter() - start
        probs = ref.run.prob("final", "test")
        scores = heldout.scores_with_se(probs, data.test_labels)
        n = len(data.test_labels)
        prior = heldout.constant_probs(heldout.class_prior(data.train_labels, 3), n)
        vs_prior = heldout.paired_difference(probs, prior, data.test_labels)
        scores |= {"nll - prior": vs_prior["d_nll"], "(paired SE)": vs_prior["d_nll_se"]}
        scores |= {"macro_f1 - majority": vs_prior["d_macro_f1"]}
        scores |= {
            "(paired SE) ": vs_prior["d_macro_f1_se"],
            "train acc": ref.run.accuracy("train"),
        }
        rows[name] = {"train+eval s": ref.run.wall_time_s, "here s": here} | scores
        print(name, {k: round(v, 4) for k, v in rows[name].items()}, flush=True)
    base = heldout.baselines(data.train_labels, data.test_labels, 3)
    table = pd.concat([base, pd.DataFrame(rows).T])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4))


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    args = sys.argv[1:]
    where = args[0] if args and args[0] not in CANDIDATES else "/tmp/kl-bench-retention"
    chosen = [a for a in args if a in CANDIDATES] or list(CANDIDATES)
    main(where, chosen)
