"""Benchmark the notebook-06 engine against an article-style loop, side by side, in one run.

Article style = what the article's code does: every batch padded to 128 tokens, the frozen
reference run on every step (for the KL runs), and torch's default AdamW (the for-loop
implementation on CPU). Engine = kl_helpers.engine.training defaults: dynamic padding, reference
logits computed once per text, the fastest AdamW for the device (fused on CPU and GPU).

Both protocols are the article's 11 runs (SFT; forward KL and reverse KL for β in
0.1, 0.3, 0.5, 0.7, 0.9), same model, same data, same machine; the model is loaded once,
before the clock starts, for both. ``--baseline-epochs N`` (< --epochs) runs the article-style
protocol for N epochs only and extrapolates its training time per epoch; the output says so.

    KL_THREADS=2 python benchmarks/bench_engine.py                  # full, both 11 x 100 epochs
    KL_THREADS=2 python benchmarks/bench_engine.py --baseline-epochs 10   # quicker, extrapolated
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import torch

from kl_helpers.data.article import article_data
from kl_helpers.encoding import encode, pad_batch
from kl_helpers.engine.config import ExperimentConfig, protocol_configs
from kl_helpers.engine.experiment import run_sweep
from kl_helpers.engine.training import make_optimizer, train_step
from kl_helpers.models import load_classifier, load_tokenizer, resolve_model
from kl_helpers.notebook.setup import setup_notebook
from kl_helpers.reference import frozen_reference, predict_logits

ARTICLE_STYLE = {"padding": "max_length", "cache_reference": False, "optimizer": "for_loop"}
TARGET_RATIO = 5.5  # full protocol, engine vs article style
TARGET_RUN_S = 15.0  # one β run, 100 epochs, bundled MiniLM, 2-core CPU


def load_average() -> str:
    """1-minute load average (other processes compete for the cores if it exceeds the threads)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_times(model, tokenizer, data, device, repeats: int) -> dict[str, float]:
    """Median seconds per training step (one forward-KL batch) for each engine ingredient."""
    enc = encode(tokenizer, data.train_texts, data.train_labels, 128)
    labels = enc.labels.to(device)
    variants = {
        "article style (pad 128, reference each step, for-loop AdamW)": (128, False, "for_loop"),
        "+ cached reference logits, dynamic padding": (None, True, "for_loop"),
        "+ foreach AdamW": (None, True, "foreach"),
        "+ fused AdamW (engine default on CPU)": (None, True, "fused"),
    }
    out = {}
    for name, (pad_to, cached, impl) in variants.items():
        student = copy.deepcopy(model).to(device).train()
        reference = frozen_reference(student, ExperimentConfig())
        config = ExperimentConfig(method="forward", beta=0.5, optimizer=impl)
        optimizer = make_optimizer(student.parameters(), config, device)
        ids, mask = pad_batch(list(enc.ids), enc.pad_id, pad_to)
        ids, mask = ids.to(device), mask.to(device)
        ref_logits = predict_logits(reference, enc) if cached else None
        live = None if cached else reference

        def step(
            student=student, optimizer=optimizer, ids=ids, mask=mask, ref=ref_logits, live=live
        ) -> None:
            train_step(student, optimizer, ids, mask, labels, "forward", 0.5, ref, live)

        out[name] = median_time(step, repeats)
    return out


def protocol_time(configs, data, model, tokenizer, name) -> tuple[float, list[float]]:
    """Wall seconds for the whole sweep (fresh results folder) and each run's own time."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        results = run_sweep(
            configs, data, folder, model=model, tokenizer=tokenizer, model_name=name, progress=False
        )
        total = time.perf_counter() - start
    return total, [r.wall_time_s for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="resolve_model choice (default: bundled)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run (article: 100)")
    parser.add_argument(
        "--baseline-epochs",
        type=int,
        default=None,
        help="epochs for the article-style runs; fewer than --epochs extrapolates",
    )
    parser.add_argument("--step-repeats", type=int, default=10, help="repeats per step timing")
    args = parser.parse_args()
    baseline_epochs = args.baseline_epochs or args.epochs

    runtime = setup_notebook(seed=0)
    choice = resolve_model(args.model)
    print(f"{runtime.summary()} | load average (1 min) at start {load_average()}")
    print(f"model: {choice}")
    data = article_data()
    tokenizer = load_tokenizer(choice)
    model = load_classifier(choice, data.num_labels, seed=0)
    device = runtime.device

    print("\nseconds per training step (7 sentences, forward KL, median):")
    for name, seconds in step_times(model, tokenizer, data, device, args.step_repeats).items():
        print(f"  {seconds:7.3f}  {name}")

    base = ExperimentConfig(model=choice.name, epochs=args.epochs)
    engine_total, engine_runs = protocol_time(
        protocol_configs(base), data, model, tokenizer, choice.name
    )
    print(
        f"\nengine, 11 runs x {args.epochs} epochs: {engine_total:.1f} s "
        f"(per run: mean {statistics.mean(engine_runs):.1f} s, max {max(engine_runs):.1f} s)"
    )

    slow = base.replace(epochs=baseline_epochs, **ARTICLE_STYLE)
    slow_total, slow_runs = protocol_time(
        protocol_configs(slow), data, model, tokenizer, choice.name
    )
    if baseline_epochs == args.epochs:
        print(f"article style, 11 runs x {args.epochs} epochs: {slow_total:.1f} s (measured)")
    else:
        # Per-run time = fixed part (copies, evaluation) + epochs x per-epoch part. A 1-epoch
        # article-style sweep gives the fixed part; the rest is scaled to the full epochs.
        one_total, _ = protocol_time(
            protocol_configs(slow.replace(epochs=1)), data, model, tokenizer, choice.name
        )
        per_epoch = (slow_total - one_total) / (baseline_epochs - 1)
        measured = slow_total
        slow_total = one_total + per_epoch * (args.epochs - 1)
        print(
            f"article style, 11 runs x {args.epochs} epochs: {slow_total:.1f} s "
            f"(EXTRAPOLATED from a measured {baseline_epochs}-epoch sweep of {measured:.1f} s "
            f"and a 1-epoch sweep of {one_total:.1f} s)"
        )
    ratio = slow_total / engine_total
    print(
        f"\nspeed-up, full protocol: {ratio:.2f}x (target >= {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    if args.epochs == 100:
        print(
            f"slowest engine run: {max(engine_runs):.1f} s (target <= {TARGET_RUN_S:g} s: "
            f"{'met' if max(engine_runs) <= TARGET_RUN_S else 'NOT met'})"
        )
    print(f"load average (1 min) at end {load_average()}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
