"""Where an RL step's forward time goes, and what sharing the prompt across responses would save.

An RL step scores P prompts x G responses. ``rl_loop.response_logits`` runs every row's whole
sequence (prompt + response), so each prompt is computed G times; with the chat template's default
system prompt a one-sentence request is ~41 tokens against 24 response tokens. This script times,
on the same sampled batch, the current reference forward against a prototype that runs each prompt
once, repeats its KV cache G times and then runs only the response tokens, and checks that the
logits agree. Not used by the package yet (follow-up to issue 15).

    KL_THREADS=2 python benchmarks/bench_rl_prefix.py
"""

from __future__ import annotations

import time

import torch

from kl_helpers import llm
from kl_helpers.rl import RLConfig
from kl_helpers.rl_loop import response_logits, rollout
from kl_helpers.runtime import setup_notebook

PROMPTS = (
    "Write a one-sentence review of your allergy tablets.",
    "Write a one-sentence review of your acne treatment.",
)


def shared_prompt_logits(model, ids, attn, responses, resp_mask, generations: int):
    """Logits (B, T, V) of ``response_logits`` with each prompt computed once (rows
    prompt-major, ``generations`` per prompt)."""
    p_ids, p_attn = ids[::generations], attn[::generations]
    out = model(
        input_ids=p_ids, attention_mask=p_attn, position_ids=(p_attn.cumsum(1) - 1).clamp(min=0)
    )
    cache = out.past_key_values
    cache.batch_repeat_interleave(generations)
    first = out.logits[:, -1:].repeat_interleave(generations, 0)
    full_attn = torch.cat([attn, resp_mask.long()], 1)
    positions = (full_attn.cumsum(1) - 1).clamp(min=0)[:, ids.shape[1] :]
    rest = model(
        input_ids=responses, attention_mask=full_attn, position_ids=positions,
        past_key_values=cache,
    )  # fmt: skip
    return torch.cat([first, rest.logits[:, :-1]], 1)


def main(repeats: int = 3) -> None:
    info = setup_notebook(plot_style=False)
    choice = llm.resolve_llm()
    tokenizer = llm.load_tokenizer(choice)
    model = llm.load_causal_lm(choice, info.device).eval()
    config = RLConfig(num_generations=4, prompts_per_step=2, max_new_tokens=24)
    ids, attn, responses, mask, _ = rollout(model, tokenizer, list(PROMPTS), config, 0,
                                            fixed_length=True)  # fmt: skip
    print(f"batch: {tuple(ids.shape)} prompt tokens + {tuple(responses.shape)} response tokens; "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            now, _ = response_logits(model, ids, attn, responses, mask)
            mid = time.perf_counter()
            shared = shared_prompt_logits(model, ids, attn, responses, mask, 4)
            end = time.perf_counter()
            print(f"reference forward: current {mid - start:.2f} s, prompt shared "
                  f"{end - mid:.2f} s; max |Δ logit| {(now - shared).abs().max():.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
