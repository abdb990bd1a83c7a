"""The one sampler: responses drawn exactly from π = softmax(logits / T), with a KV cache.

``model.generate`` merges every field that the checkpoint's ``generation_config`` sets
(``repetition_penalty``, ``min_p``, ``suppress_tokens``, ``top_k``, ``do_sample=False``...) into
the sampling, so its samples are not from the π whose log-probs the KL estimators and the policy
gradient use. :func:`sample_tokens` applies nothing it was not asked for: per step, the last
position's logits in float32, EOS set to −inf before ``min_new_tokens``, division by T (only when
T ≠ 1), softmax, then one draw per row by :func:`draw_tokens` (inverse CDF in float64: exact, and
about 25× cheaper on a CPU than ``torch.multinomial``'s exponential race over a 49152-token
vocabulary). Everything up to the draw is ``generate``'s op order, so ``generate`` with its
``torch.multinomial`` replaced by :func:`draw_tokens` gives the same tokens for the same seed
(tests/llm/test_sampling.py). Used by ``rl.loop.sample_responses`` and ``llm.model.sample``.
Introduced in notebook 09.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch

from kl_helpers._validate import integer, is_any, token_ids
from kl_helpers.reference import evaluated


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (where the sampler's outputs live); ValueError
    for a module without parameters."""
    for parameter in model.parameters():
        return parameter.device
    raise ValueError(f"{type(model).__name__} has no parameters: its device is unknown")


def forward_parameters(model: torch.nn.Module) -> set[str]:
    """Names of the arguments ``model``'s (or, for a peft model, its base model's) forward takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def cache_argument(model: torch.nn.Module) -> str:
    """The forward's KV-cache argument: ``cache`` (transformers 5.2x; ``past_key_values`` is
    deprecated there) or ``past_key_values`` (earlier versions, e.g. Colab's 5.15, which would
    silently swallow an unknown ``cache=`` keyword and sample without the prompt)."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"


def _returned_cache(out) -> object:
    """The KV cache a forward returned, under either name; RuntimeError if there is none."""
    for name in ("cache", "past_key_values"):
        cache = getattr(out, name, None)
        if cache is not None:
            return cache
    raise RuntimeError("the model returned no KV cache: sample with use_cache=False")


def shared_prefill(model, input_ids, attention_mask, num_generations: int = 1, **kwargs):
    """Run each left-padded prompt (P, L) ONCE and repeat its state for its ``num_generations``
    (G) responses: returns (logits at each prompt's last position, (P·G, V), in the model's
    dtype; the KV cache repeated G times along the batch, prompt-major; the mask (P·G, L)).

    ``kwargs`` go to the forward (``logits_to_keep``...). Runs under whatever grad mode the
    caller set: with gradient, the cache's keys and values stay in the graph (``repeat_interleave``
    is differentiable), so LoRA weights that change them get their gradient through the
    responses' attention to the prompt. Position ids are counted over real tokens (0 on padding).
    RuntimeError if the model returns no cache; ValueError unless ``num_generations`` is an
    int >= 1.
    """
    num_generations = integer(num_generations, "num_generations")
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
    )
    cache = _returned_cache(out)
    if num_generations > 1:
        cache.batch_repeat_interleave(num_generations)
    last = out.logits[:, -1].repeat_interleave(num_generations, dim=0)
    return last, cache, mask.repeat_interleave(num_generations, dim=0)


def draw_tokens(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of ``probs`` (B, V), drawn from that row's distribution: (B,) long, on
    ``probs``' device.

    Inverse CDF: one uniform u per row from torch's default generator on that device (seed with
    ``torch.manual_seed``), the first index whose float64 cumulative sum exceeds u × the row's
    total (on Apple's ``mps``, which has no float64, the draw runs on the CPU with the CPU's
    generator). Exact up to float64 rounding of the cumulative sum (≈ 1e-16 per token); a token of
    probability 0 is never drawn. Rows need not be normalised; ``probs`` may be a list or a NumPy
    array (read as a tensor on the CPU); B may be 0. ValueError unless ``probs`` is (B, V) with no
    negative entry and every row's total finite and > 0.
    """
    if not isinstance(probs, torch.Tensor):
        probs = torch.as_tensor(probs)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must be (B, V) with V >= 1, got {tuple(probs.shape)}")
    if probs.device.type == "mps":  # no float64 on Apple GPUs: draw on the CPU, return on mps
        return draw_tokens(probs.cpu()).to(probs.device)
    cdf = probs.to(torch.float64).cumsum(dim=-1)
    total = cdf[:, -1:]
    if (~torch.isfinite(total) | (total <= 0)).any() | (probs < 0).any():  # one sync on a GPU
        raise ValueError("every row of probs needs no negative entry and a finite, positive total")
    u = torch.rand(total.shape, dtype=torch.float64, device=probs.device)
    # u < 1, so u·total < total; the guard keeps rounding from reaching the end of the CDF
    point = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, point, right=True).squeeze(1)


def _check(input_ids, attention_mask, max_new_tokens, min_new_tokens, temperature, eos):
    if input_ids.ndim != 2 or input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be (B, L) with B, L >= 1, got {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has shape "
            f"{tuple(input_ids.shape)}"
        )
    if (attention_mask[:, -1] == 0).any():
        raise ValueError("prompts must be left-padded: every row's last position must be real")
    max_new_tokens = integer(max_new_tokens, "max_new_tokens")
    min_new_tokens = integer(min_new_tokens, "min_new_tokens")
    if max_new_tokens < 1 or not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(
            f"need max_new_tokens >= 1 and 0 <= min_new_tokens <= max_new_tokens, got "
            f"{max_new_tokens} and {min_new_tokens}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if eos is None and min_new_tokens:
        raise ValueError("min_new_tokens needs an eos_token_id to forbid")
    return max_new_tokens, min_new_tokens


def ids_in_vocabulary(
    model, ids: torch.Tensor, mask: torch.Tensor, name: str = "input_ids"
) -> torch.Tensor:
    """``ids`` with masked-out (mask 0) ids outside the vocabulary replaced by 0: nothing attends
    to them and their outputs are not used (ids inside it are left as they are). ValueError
    naming an unmasked id outside [0, V). One check (one sync on a GPU) on the usual path. Used
    by the sampler and by ``rl.forward``."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    size = getattr(embeddings, "num_embeddings", None)
    if size is None:
        return ids
    outside = (ids < 0) | (ids >= size)
    if not outside.any():
        return ids
    unmasked = outside & (mask != 0)
    if unmasked.any():
        raise ValueError(
            f"{name} holds id {ids[unmasked][0].item()} outside the vocabulary [0, {size}) at an "
            "unmasked position"
        )
    return ids.masked_fill(outside, 0)


def _full_forward(model, ids, mask, extra) -> torch.Tensor:
    """Last-position logits (B, V) of a forward over the whole of ``ids``, no cache."""
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                **extra)  # fmt: skip
    return out.logits[:, -1]


def sample_tokens(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    min_new_tokens: int = 0,
    use_cache: bool = True,
    num_generations: int = 1,
) -> torch.Tensor:
    """New tokens (P·G, T ≤ ``max_new_tokens``) after left-padded prompts ``input_ids`` (P, L):
    ``num_generations`` = G responses per prompt, rows prompt-major (as ``repeat_interleave``).

    Each token is drawn from softmax(logits / ``temperature``) of ``model`` (seed with
    ``torch.manual_seed`` before the call); ``model.generation_config`` is ignored. A row ends at
    its first end token: ``eos_token_id`` is one id or several (``generate``'s convention, e.g.
    Llama 3's list). Positions after a row's end hold ``pad_token_id`` (default: the first EOS
    id, as in ``generate``; any int, −100 too: the model reads an id outside the vocabulary there
    as the first EOS id); sampling stops when every row has ended or after
    ``max_new_tokens``; no end token can be drawn in the first ``min_new_tokens`` steps.
    Position ids come from ``attention_mask`` (1 on real tokens; all ones if None); padded
    positions may hold any id (−100, ids past the vocabulary); ids and mask may be lists or NumPy
    arrays. ``temperature=math.inf`` (or any T that is infinite in float32) is the limit: uniform
    over the tokens allowed at that step.
    With the cache each prompt is run once and its KV cache repeated G times
    (:func:`shared_prefill`); ``use_cache=False`` repeats the prompts and re-runs the whole
    sequence at every step (the naive baseline; same distribution). No gradient
    (``no_grad``); every submodule of ``model`` is back in its own train/eval mode afterwards.
    The output is a long tensor on the model's device. Raises ValueError on shapes or settings
    that make no sense (names both shapes when the mask does not match the ids) and on end token
    ids outside the vocabulary, on counts that are not ints (``num_generations=2.0``), on no
    prompts, when every token is an end token and ``min_new_tokens`` > 0, on an unmasked prompt id
    outside the vocabulary, and when softmax(logits / T) is not a distribution (NaN logits, or a
    T so small that logits / T overflows float32).
    """
    if not isinstance(input_ids, torch.Tensor):
        input_ids = torch.as_tensor(input_ids)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    elif not isinstance(attention_mask, torch.Tensor):
        attention_mask = torch.as_tensor(attention_mask)
    eos = token_ids(eos_token_id)
    pad = (
        (eos[0] if eos else None) if pad_token_id is None else integer(pad_token_id, "pad_token_id")
    )
    max_new_tokens, min_new_tokens = _check(
        input_ids, attention_mask, max_new_tokens, min_new_tokens, temperature, eos
    )
    num_generations = integer(num_generations, "num_generations")
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    # logits are float32: a T that is inf there divides -inf (a banned end token) into NaN
    uniform = math.isinf(torch.tensor(float(temperature), dtype=torch.float32).item())
    device = model_device(model)
    mask = attention_mask.to(device=device, dtype=torch.long)
    ids = ids_in_vocabulary(model, input_ids.to(device), mask)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in forward_parameters(model) else {}
    cache_name = cache_argument(model)
    if not use_cache:
        ids, mask = (t.repeat_interleave(num_generations, dim=0) for t in (ids, mask))
    new: list[torch.Tensor] = []
    fed: list[torch.Tensor] = []  # what the model reads: a pad outside [0, V) is read as EOS
    with evaluated(model), torch.no_grad():
        if use_cache:
            last, cache, mask = shared_prefill(model, ids, mask, num_generations, **extra)
            extra[cache_name] = cache
        else:
            last = _full_forward(model, ids, mask, extra)
        # generate's position ids: counted over real tokens, 0 on left padding
        position = mask.sum(-1, keepdim=True) - 1
        unfinished = torch.ones(mask.shape[0], dtype=torch.bool, device=device)
        if eos is not None and max(eos) >= last.shape[-1]:
            raise ValueError(f"eos_token_id {eos} is outside the vocabulary ({last.shape[-1]})")
        if eos is not None and min_new_tokens and len(eos) >= last.shape[-1]:
            raise ValueError(f"min_new_tokens forbids every token: all are end tokens {eos}")
        pad_outside = eos is not None and not 0 <= pad < last.shape[-1]
        for step in range(max_new_tokens):
            logits = last.to(dtype=torch.float32, copy=True)
            if eos is not None and step < min_new_tokens:
                logits[:, list(eos)] = -torch.inf
            if uniform:  # the T -> inf limit of logits / T (NaN stays NaN)
                logits = logits.masked_fill(logits > -torch.inf, 0.0)
            elif temperature != 1.0:
                logits = logits / temperature
            probs = torch.softmax(logits, dim=-1)
            try:
                token = draw_tokens(probs)
            except ValueError:
                raise ValueError(
                    f"softmax(logits / temperature) is not a distribution at step {step} "
                    f"(temperature {temperature}): NaN logits, or logits / T overflowing float32"
                ) from None
            if eos is not None:
                token = torch.where(unfinished, token, torch.full_like(token, pad))
                unfinished = unfinished & ~is_any(token, eos)
            new.append(token)
            fed.append(token.masked_fill(token == pad, eos[0]) if pad_outside else token)
            if step + 1 == max_new_tokens or not unfinished.any():
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            position = position + 1
            if use_cache:
                out = model(
                    input_ids=fed[-1][:, None], attention_mask=mask, position_ids=position,
                    use_cache=True, **extra,
                )  # fmt: skip
                last = out.logits[:, -1]
            else:
                seq = torch.cat([ids, torch.stack(fed, dim=1)], dim=1)
                last = _full_forward(model, seq, mask, extra)
    return torch.stack(new, dim=1)
