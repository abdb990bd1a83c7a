"""Our RLHF step (``kl_helpers.rl.loop.rl_step``) against TRL's ``RLOOTrainer`` on the same update,
side by side in one process: which is faster, and where our step's time goes.

Both sides: SmolLM2-135M-Instruct from the bundled GGUF (``kl_helpers.llm.model``), fp32, LoRA
r = 8 on q_proj/v_proj (α 16, no dropout), 2 prompts x 4 responses of exactly ``--tokens`` tokens
(EOS held back), β = 0.05 on the k1 KL in the reward (RLOO), lr 1e-5, gradient clipping 1.0, the
reference = the same network with its adapters disabled, the reward = the bundled MiniLM classifier
with an untrained head (scoring costs the same as with a trained one). TRL's steps run inside
``trainer.train()``; a callback times each of them (``on_step_begin`` -> ``on_step_end``: batch
preparation with generation, forwards, backward, clipping, optimiser step) and runs one of our
steps between two of TRL's, so the two alternate and a change in machine load hits both. The first
step of each is a warm-up. TRL is an optional extra (``pip install -e .[bench]``; ``make
bench-trl``), never a dependency of the package.

    KL_THREADS=2 python benchmarks/bench_trl.py               # 6 timed steps each
    KL_THREADS=2 python benchmarks/bench_trl.py --gradient-checkpointing   # TRL's default
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager

import torch

from kl_helpers import models
from kl_helpers.llm import model as llm
from kl_helpers.notebook.setup import setup_notebook
from kl_helpers.rl import loop as rl_loop
from kl_helpers.rl.loss import RLConfig
from kl_helpers.rl.reward import RewardModel

TARGET_RATIO = 2.0  # TRL's step time / ours
PROMPTS = (
    "Write a one-sentence review of the medicine you take for your headaches.",
    "In one sentence, how did this drug work for you?",
)
PHASES = {  # our phase -> the function whose calls it times
    "generation": (rl_loop, "rollout"),
    "reference forward": (rl_loop, "reference_logits"),
    "policy forward": (rl_loop, "response_logits"),
    "exact-KL monitor": (rl_loop, "response_kl"),
}
DIFFERENCES = """\
How the two steps differ (same model, LoRA, batch, β, lr, clipping, reference and reward):
- sampling: ours draws from softmax(logits / T) with its own loop (sampling.sample_tokens), each
  prompt prefilled once and its KV cache repeated for its 4 responses; TRL calls model.generate
  on the prompts repeated 4 times with its GenerationConfig (top_k 0, top_p 1, T 1; min_new_tokens
  = the length passed in generation_kwargs, which is how EOS is held back on TRL's side; ours
  passes min_new_tokens through fixed_length=True).
- forwards: ours runs the reference (adapters disabled) and the policy (with gradient) once each,
  every prompt once per forward; TRL runs the full prompt + completion for every row in three
  forwards: the policy without gradient ("old" log-probs, for its clipped ratio), the reference
  (adapters disabled), the policy with gradient, and it computes per-token entropies.
- loss: both RLOO with the k1 KL (Σ_t log π/π_ref over the response) subtracted from the reward
  with β; TRL multiplies the advantage by a clipped importance ratio (= 1 at the one update per
  batch here, so the same gradient), ours is plain REINFORCE. Ours also computes the exact KL over
  the vocabulary (float64) as a monitor; TRL logs only its sampled k1.
- gradient checkpointing: TRL's default is on (recomputes activations in backward); this run
  sets it to {gc} (--gradient-checkpointing turns it on). Ours has none.
- optimiser: both torch AdamW; TRL's weight decay 0 (TrainingArguments default), ours 0.01.
- framework: TRL runs inside transformers' Trainer (accelerate, data loader, logging, callbacks);
  ours is a function call. TRL's copy of the GGUF-loaded model has its quantisation markers
  cleared (hf_quantizer, is_quantized, config.quantization_config) so that the Trainer accepts
  it; its weights are plain fp32 as ours.
"""


def load_average() -> str:
    """1-minute load average (other processes compete for the cores if it exceeds the threads)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


@contextmanager
def phase_timer(totals: dict[str, float]):
    """Time every call of the functions in PHASES (added to ``totals``, seconds)."""
    originals = {}
    for phase, (module, name) in PHASES.items():
        original = getattr(module, name)
        originals[(module, name)] = original

        def timed(*args, _f=original, _p=phase, **kwargs):
            start = time.perf_counter()
            out = _f(*args, **kwargs)
            totals[_p] = totals.get(_p, 0.0) + time.perf_counter() - start
            return out

        setattr(module, name, timed)
    try:
        yield totals
    finally:
        for (module, name), original in originals.items():
            setattr(module, name, original)


def plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The GGUF-loaded model with its quantisation markers cleared (the weights are fp32 already):
    transformers' Trainer refuses to train a model it believes is quantised."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=24, help="sampled tokens per response")
    parser.add_argument("--repeats", type=int, default=6, help="timed steps of each")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="TRL's default")
    args = parser.parse_args()

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    info = setup_notebook(plot_style=False)
    choice = llm.resolve_llm()
    tokenizer = llm.load_tokenizer(choice)
    scorer_choice = models.resolve_model("minilm")
    scorer = RewardModel(
        models.load_classifier(scorer_choice, 3).eval(),
        models.load_tokenizer(scorer_choice),
        "untrained",
    )
    config = RLConfig(
        beta=0.05, num_generations=4, prompts_per_step=len(PROMPTS), max_new_tokens=args.tokens,
        lr=1e-5, max_grad_norm=1.0, lora_r=8, lora_alpha=16, temperature=1.0,
    )  # fmt: skip
    ours = rl_loop.add_lora(llm.load_causal_lm(choice, "cpu"), config)
    optimizer = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=config.lr)

    def reward(completions, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(r) for r in scorer(texts)]

    trl_args = RLOOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"), use_cpu=True, bf16=False,
        per_device_train_batch_size=config.batch_size, num_generations=config.num_generations,
        max_completion_length=args.tokens, generation_kwargs={"min_new_tokens": args.tokens},
        temperature=config.temperature, beta=config.beta, learning_rate=config.lr,
        max_grad_norm=config.max_grad_norm, gradient_checkpointing=args.gradient_checkpointing,
        max_steps=args.repeats + 1, logging_steps=10_000, save_strategy="no", report_to=[],
        lr_scheduler_type="constant", seed=0, disable_tqdm=True,
    )  # fmt: skip
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                      bias="none", task_type="CAUSAL_LM")  # fmt: skip
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    trainer = RLOOTrainer(
        model=plain_copy(llm.load_causal_lm(choice, "cpu")), reward_funcs=reward, args=trl_args,
        train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
    )  # fmt: skip

    trl_times: list[float] = []
    our_times: list[float] = []
    our_phases: list[dict[str, float]] = []

    def our_step(step: int) -> None:
        totals: dict[str, float] = {}
        start = time.perf_counter()
        with phase_timer(totals):
            rl_loop.rl_step(ours, optimizer, tokenizer, list(PROMPTS), timed_reward(totals),
                            config, step, fixed_length=True)  # fmt: skip
        totals["total"] = time.perf_counter() - start
        our_times.append(totals["total"])
        our_phases.append(totals)

    def timed_reward(totals):
        def score(texts):
            start = time.perf_counter()
            out = scorer(texts)
            totals["reward"] = totals.get("reward", 0.0) + time.perf_counter() - start
            return out

        return score

    class Alternate(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            trl_times.append(time.perf_counter() - self.start)
            our_step(state.global_step)
            phases = ", ".join(f"{k} {v:.2f}" for k, v in our_phases[-1].items() if k != "total")
            print(f"  step {state.global_step}: TRL {trl_times[-1]:.2f} s, ours "
                  f"{our_times[-1]:.2f} s ({phases}); load {load_average()}, "
                  f"threads {torch.get_num_threads()}",
                  flush=True)  # fmt: skip

    trainer.add_callback(Alternate())
    print(f"model: {choice.describe()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {info.device}; "
          f"load avg {load_average()}")  # fmt: skip
    print(f"batch: {len(PROMPTS)} prompts x {config.num_generations} responses x {args.tokens} "
          f"tokens; first step of each is a warm-up")  # fmt: skip
    trainer.train()
    trl_med = statistics.median(trl_times[1:])
    our_med = statistics.median(our_times[1:])
    print("\nour step, median per phase (s):")
    rows = ["generation", "policy forward", "reference forward", "exact-KL monitor", "reward"]
    for phase in rows:
        print(f"  {phase:28s} {statistics.median(p.get(phase, 0.0) for p in our_phases[1:]):6.2f}")
    rest = [p["total"] - sum(p.get(r, 0.0) for r in rows) for p in our_phases[1:]]
    print(f"  {'backward+clip+step, other':28s} {statistics.median(rest):6.2f}")
    print(f"  {'total':28s} {our_med:6.2f}")
    print(f"\nmedian TRL RLOOTrainer step {trl_med:7.2f} s "
          f"(gradient checkpointing {'on' if args.gradient_checkpointing else 'off'})")  # fmt: skip
    print(f"median our rl_step          {our_med:7.2f} s")
    print(f"ratio TRL / ours: {trl_med / our_med:.2f}x (target >= {TARGET_RATIO:g}x) over "
          f"{len(our_times) - 1} alternating steps each; load avg {load_average()}\n")  # fmt: skip
    print(DIFFERENCES.format(gc="on" if args.gradient_checkpointing else "off"))


if __name__ == "__main__":
    main()
