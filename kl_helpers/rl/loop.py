"""RLHF with a KL penalty, the model-facing parts: LoRA policy, sampling, log-probs, step, loop.

The policy is the causal LM with LoRA adapters (``peft``); the reference is the same network under
``disable_adapter()`` and ``torch.no_grad`` (``reference.reference_view``: no second copy).
Sampling is ``sampling.sample_tokens`` (KV cache, temperature only, whatever the checkpoint's
generation config sets), so that the samples come from the π whose log-probs the loss uses.
Each prompt is run once per step in each of sampling, the reference forward and the policy
forward; its KV cache serves its ``num_generations`` responses (``rl.forward``).
Prompts are left-padded; the response mask drops prompt, padding and everything after a
response's first EOS. Cached runs: ``kl_helpers.rl.runs``. Introduced in notebook 10.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from kl_helpers._validate import check_same_shape
from kl_helpers.llm.model import encode_prompts, end_token_ids
from kl_helpers.llm.sampling import sample_tokens
from kl_helpers.reference import evaluated
from kl_helpers.regularizer import masked_sum
from kl_helpers.rl.forward import reference_logits, response_kl, response_logits
from kl_helpers.rl.loss import RLConfig, response_mask, rl_loss
from kl_helpers.runtime import progress_bar, seed_everything

RewardFn = Callable[[list[str]], torch.Tensor]  # decoded responses -> (B,) rewards
EvalFn = Callable[[torch.nn.Module], dict]  # policy -> {metric: float, optional "texts": [str]}
HISTORY_FIELDS: tuple[str, ...] = ("reward", "kl", "kl_k1", "kl_k3", "length", "loss")


def add_lora(model: torch.nn.Module, config: RLConfig) -> torch.nn.Module:
    """``model`` wrapped with fresh LoRA adapters (seeded; B = 0 so the policy starts at π_ref),
    on the model's device."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=list(config.lora_targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def sample_responses(
    model, prompt_ids, prompt_mask, config: RLConfig, eos_id, pad_id, seed: int, *,
    use_cache: bool = True, fixed_length: bool = False,
):  # fmt: skip
    """``num_generations`` KV-cached samples per prompt (rows prompt-major), no gradient; each
    prompt is run once and its cache shared by its responses.

    Drawn from π = softmax(logits / ``temperature``) by
    :func:`kl_helpers.llm.sampling.sample_tokens`,
    whatever the checkpoint's ``generation_config`` says. Returns (responses, mask), each
    (P·G, T ≤ max_new_tokens), on the model's device; ``mask`` ends at the first EOS.
    ``fixed_length`` forbids EOS before ``max_new_tokens`` (benchmarks: same work every call);
    ``use_cache=False`` re-runs the whole prefix for every token (the naive baseline).
    """
    check_same_shape(prompt_ids, prompt_mask, ("prompt_ids", "prompt_mask"))
    torch.manual_seed(seed)
    responses = sample_tokens(
        model,
        prompt_ids,
        prompt_mask,
        num_generations=config.num_generations,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        min_new_tokens=config.max_new_tokens if fixed_length and eos_id is not None else 0,
        use_cache=use_cache,
    )
    return responses, response_mask(responses, eos_id)


def rollout(policy, tokenizer, prompts: Sequence[str], config: RLConfig, seed: int, **sample_kw):
    """Sample ``num_generations`` = G responses per prompt and decode them: (ids, attention mask)
    of the P prompts (P, L), (responses, response mask) (P·G, T), rows prompt-major, all on the
    policy's device, and the P·G texts. A response ends at the tokenizer's EOS or at any end token
    of the checkpoint's ``generation_config`` (``llm.model.end_token_ids``). Pass
    ``num_generations=G`` with them to the forwards."""
    device = next(policy.parameters()).device
    eos = end_token_ids(policy, tokenizer)  # the tokenizer's EOS and the checkpoint's end tokens
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or (None,))[0]
    ids, attn = (t.to(device) for t in encode_prompts(tokenizer, prompts))
    responses, mask = sample_responses(policy, ids, attn, config, eos, pad, seed, **sample_kw)
    texts = tokenizer.batch_decode(torch.where(mask, responses, pad), skip_special_tokens=True)
    return ids, attn, responses, mask, texts


def rl_step(
    policy, optimizer, tokenizer, prompts, reward_fn: RewardFn, config: RLConfig, step: int = 0,
    *, ref_model=None, **sample_kw,
):  # fmt: skip
    """One update: sample, score, reference log-probs, REINFORCE + KL loss, AdamW step.

    The reference is ``ref_model`` (TRL's name) if given, else ``policy`` with its adapters
    disabled. ``sample_kw`` go to :func:`sample_responses`. Returns per-step means (reward,
    exact KL(π‖π_ref) summed over response tokens via the core, k1 and k3 sums, response length in
    tokens, loss) as Python floats, and the decoded responses. ``reward_fn``'s rewards may come
    on any device; they are moved to the policy's.
    """
    device = next(policy.parameters()).device
    seed = config.seed * 100_003 + step
    ids, attn, responses, mask, texts = rollout(
        policy, tokenizer, prompts, config, seed, **sample_kw
    )
    rewards = torch.as_tensor(reward_fn(texts), dtype=torch.float32, device=device).reshape(-1)
    group = config.num_generations
    ref_logits, ref_logp = reference_logits(
        policy, ids, attn, responses, mask, config.temperature, ref_model, group
    )
    policy.train()
    logits, logp = response_logits(policy, ids, attn, responses, mask, config.temperature, group)
    out = rl_loss(
        logp, ref_logp, mask, rewards, config.beta, config.kl_estimator,
        config.num_generations, config.baseline,
    )  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    params = [p for p in policy.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        exact = response_kl(logits, ref_logits, mask)
    stats = {
        "reward": rewards.mean().item(),
        "kl": exact.mean().item(),
        "kl_k1": out.kl_k1.mean().item(),
        "kl_k3": out.kl_k3.mean().item(),
        "length": mask.sum(dim=1).float().mean().item(),
        "loss": out.loss.item(),
    }
    return stats, texts


@dataclass
class RLHistory:
    """Per-step means: reward, KL(π‖π_ref) per response in nats (exact per token, summed; and its
    k1/k3 sample estimates), response length in tokens, loss; plus the last step's responses."""

    reward: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    kl_k1: list[float] = field(default_factory=list)
    kl_k3: list[float] = field(default_factory=list)
    length: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)  # {"step": k, metric: value, ...} per eval

    def append(self, stats: dict[str, float]) -> None:
        """Add one step's stats (KeyError for a missing field; then nothing is added)."""
        values = [float(stats[name]) for name in HISTORY_FIELDS]
        for name, value in zip(HISTORY_FIELDS, values, strict=True):
            getattr(self, name).append(value)

    def __len__(self) -> int:
        return len(self.reward)


def train_policy(
    policy, tokenizer, prompts: Sequence[str], reward_fn: RewardFn, config: RLConfig, progress=None,
    *, evaluate: EvalFn | None = None, eval_every: int = 0,
):  # fmt: skip
    """``config.steps`` updates of a LoRA ``policy`` (from :func:`add_lora`) on ``prompts``, taken
    ``prompts_per_step`` at a time in a seeded shuffled order; returns the history.

    With ``evaluate`` and ``eval_every`` = k > 0, ``evaluate(policy)`` runs before the first update
    and after every k-th update and the last one; its dicts, with ``"step"`` (updates done) added,
    go to ``history.evals``. Its sampling does not disturb the training's (seeds are per step).
    The history holds Python floats and strings (nothing on a device).
    """
    if eval_every < 0 or (eval_every > 0) != (evaluate is not None):
        raise ValueError("pass evaluate and eval_every > 0 together (or neither)")
    if len(prompts) < config.prompts_per_step:
        raise ValueError(f"need >= {config.prompts_per_step} prompts, got {len(prompts)}")
    seed_everything(config.seed)
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters: wrap it with add_lora first")
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(config.seed))
    history = RLHistory()
    texts: list[str] = []

    def run_eval(done: int) -> None:
        with evaluated(policy):  # every submodule back in its own mode afterwards
            history.evals.append({"step": done, **evaluate(policy)})

    if eval_every:
        run_eval(0)
    bar = progress_bar(range(config.steps), desc=config.label, progress=progress)
    for step in bar:
        at = (step * config.prompts_per_step + torch.arange(config.prompts_per_step)) % len(order)
        batch = [prompts[int(i)] for i in order[at]]
        stats, texts = rl_step(policy, optimizer, tokenizer, batch, reward_fn, config, step)
        history.append(stats)
        bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.2f}")
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == config.steps):
            run_eval(step + 1)
    history.samples = list(texts)
    return history


def evaluate_policy(
    policy, tokenizer, prompts: Sequence[str], reward_fn: RewardFn, config: RLConfig, seed=0
) -> dict:
    """Held-out check, no update: ``num_generations`` samples per prompt; per-response reward,
    exact KL(π‖π_ref) summed over tokens (nats, via the core), length (tokens), the reference's
    mean per-token NLL of the response ("ref_nll", nats/token; 0 if empty), each (P·G,) on the
    CPU, and the texts. Every submodule of ``policy`` is left in the mode it was in."""
    ids, attn, responses, mask, texts = rollout(policy, tokenizer, prompts, config, seed)
    group, temperature = config.num_generations, config.temperature
    ref_logits, ref_logp = reference_logits(
        policy, ids, attn, responses, mask, temperature, num_generations=group
    )
    with evaluated(policy), torch.no_grad():
        logits, _ = response_logits(policy, ids, attn, responses, mask, temperature, group)
        kl = response_kl(logits, ref_logits, mask)
    rewards = torch.as_tensor(reward_fn(texts), dtype=torch.float32, device="cpu").reshape(-1)
    length = mask.sum(1)
    ref_nll = -masked_sum(ref_logp, mask) / length.clamp(min=1)
    return {
        "reward": rewards, "kl": kl.cpu(), "length": length.cpu(), "ref_nll": ref_nll.cpu(),
        "texts": texts,
    }  # fmt: skip
