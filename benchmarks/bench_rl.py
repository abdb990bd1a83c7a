"""Benchmark one RLHF step on SmolLM2-135M-Instruct against a naive step, side by side, in one run.

Both steps do the same work on the same fixed batch (``--prompts`` prompts x ``--generations``
responses of exactly ``--tokens`` tokens: EOS is held back so every call samples the same length):
sample, score the responses with the reward classifier, reference log-probs, one AdamW update.

- RL step (``kl_helpers.rl.loop.rl_step``): LoRA adapters (r=8 on q/v) are the only trainable
  weights, the sampler (``kl_helpers.llm.sampling.sample_tokens``) reuses its KV cache, the
  reference is the same network with the adapters disabled, under ``no_grad``; each prompt is run
  once per phase and its cache shared by its responses (``kl_helpers.rl.forward``).
- Naive step: full fine-tuning (every weight in AdamW), a deep-copied frozen reference, and the
  sampler with ``use_cache=False``, which re-runs the whole prefix for every new token (as
  ``generate(use_cache=False)`` did before the sampler replaced ``generate``). Its two forwards
  share the prompts as the RL step's do.

The scorer is the bundled MiniLM classifier with an untrained head: scoring costs the same as with
the trained reward model, which this benchmark does not need. Steps alternate (RL, naive, RL, ...)
after one warm-up each, so a change in machine load hits both; the load average is printed.

    KL_THREADS=2 python benchmarks/bench_rl.py
    KL_THREADS=2 python benchmarks/bench_rl.py --repeats 3 --tokens 24
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from kl_helpers import models
from kl_helpers.llm import model as llm
from kl_helpers.notebook.setup import setup_notebook
from kl_helpers.reference import make_reference
from kl_helpers.rl.loop import add_lora, rl_step
from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.reward import RewardModel

TARGET_RATIO = 3.0  # RL step vs naive step, same batch and length
PROMPTS = (
    "Write a one-sentence review of the medicine you take for your headaches.",
    "In one sentence, how did this drug work for you?",
    "Describe your experience with your allergy tablets in a single sentence.",
    "Give a short review of the pill your doctor prescribed for sleep.",
)


def load_average() -> str:
    """1-minute load average (other processes compete for the cores if it exceeds the threads)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="responses per prompt")
    parser.add_argument("--tokens", type=int, default=24, help="sampled tokens per response")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps of each kind")
    args = parser.parse_args()
    if not 1 <= args.prompts <= len(PROMPTS):
        raise ValueError(f"--prompts must be in 1..{len(PROMPTS)}")

    info = setup_notebook(plot_style=False)
    choice = llm.resolve_llm()
    tokenizer = llm.load_tokenizer(choice)
    device = info.device
    scorer_choice = models.resolve_model("minilm")
    scorer = RewardModel(
        models.load_classifier(scorer_choice, 3).to(device).eval(),
        models.load_tokenizer(scorer_choice),
        "untrained",
    )
    config = RLConfig(
        num_generations=args.generations,
        prompts_per_step=args.prompts,
        max_new_tokens=args.tokens,
        lr=1e-5,
    )
    prompts = list(PROMPTS[: args.prompts])

    policy = add_lora(llm.load_causal_lm(choice, device), config)
    lora_opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.lr)
    full = llm.load_causal_lm(choice, device).requires_grad_(True)
    reference = make_reference(full)  # a deep copy: eval mode, no grad, dropout off
    full_opt = torch.optim.AdamW(full.parameters(), lr=config.lr)
    n_lora = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    n_full = sum(p.numel() for p in full.parameters())

    def fast(step: int) -> float:
        start = time.perf_counter()
        rl_step(policy, lora_opt, tokenizer, prompts, scorer, config, step, fixed_length=True)
        return time.perf_counter() - start

    def naive(step: int) -> float:
        start = time.perf_counter()
        rl_step(
            full, full_opt, tokenizer, prompts, scorer, config, step,
            ref_model=reference, use_cache=False, fixed_length=True,
        )  # fmt: skip
        return time.perf_counter() - start

    print(f"model: {choice.describe()}")
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, load avg {load_average()}")
    print(
        f"batch: {args.prompts} prompts x {args.generations} responses x {args.tokens} tokens; "
        f"trainable weights: LoRA {n_lora:,} vs full {n_full:,}"
    )
    fast(0), naive(0)  # warm-up (allocator, first-call overheads)
    fast_times, naive_times = [], []
    for step in range(1, args.repeats + 1):
        fast_times.append(fast(step))
        naive_times.append(naive(step))
        print(
            f"  step {step}: RL {fast_times[-1]:.1f} s, naive {naive_times[-1]:.1f} s", flush=True
        )
    f, n = statistics.median(fast_times), statistics.median(naive_times)
    print(f"median RL step    {f:8.2f} s  (LoRA, KV cache, adapter-disabled reference)")
    print(f"median naive step {n:8.2f} s  (full fine-tuning, no KV cache, deep-copied reference)")
    print(
        f"ratio naive / RL: {n / f:.1f}x (target >= {TARGET_RATIO:g}x); load avg {load_average()}"
    )


if __name__ == "__main__":
    main()
