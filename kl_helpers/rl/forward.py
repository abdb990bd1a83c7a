"""The RL step's forwards: log-probs of sampled responses under π and π_ref, each prompt run once.

Rows are prompt-major: P prompts, each followed by its G = ``num_generations`` responses
(``repeat_interleave``), so B = P·G. With G > 1 each prompt is run ONCE
(``sampling.shared_prefill``), its KV cache is repeated G times, and only the response tokens run
after it; with gradient (the policy forward) the prompt's keys and values stay in the graph, so
LoRA on q/v gets the gradient that reaches it through the responses' attention to the prompt.
With G = 1 the whole sequence runs in one forward. Both give the same numbers (tests in
``tests/rl/test_forward.py``). Used by ``rl.loop`` (notebook 10).
"""

from __future__ import annotations

import math
import operator

import torch

from kl_helpers._validate import check_same_shape
from kl_helpers.llm.sampling import (
    cache_argument,
    forward_parameters,
    ids_in_vocabulary,
    shared_prefill,
)
from kl_helpers.llm.token_kl import token_log_probs
from kl_helpers.reference import reference_view
from kl_helpers.regularizer import masked_sum, per_token_divergence


def _tensors(*values):
    """Each of ``values`` as a tensor (lists, tuples and NumPy arrays read by ``as_tensor``)."""
    return tuple(v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for v in values)


def check_pairs(prompt_ids, prompt_mask, responses, resp_mask, num_generations: int = 1) -> None:
    """Raise ValueError naming the shapes unless ids and masks match and prompts (P ≥ 1, L) and
    responses (P·G, T) fit (G = ``num_generations``, an int ≥ 1). Lists, tuples and NumPy arrays
    are read as tensors."""
    prompt_ids, prompt_mask, responses, resp_mask = _tensors(
        prompt_ids, prompt_mask, responses, resp_mask
    )
    check_same_shape(prompt_ids, prompt_mask, ("prompt_ids", "prompt_mask"))
    check_same_shape(responses, resp_mask, ("responses", "resp_mask"))
    try:
        if isinstance(num_generations, bool):
            raise TypeError
        num_generations = operator.index(num_generations)
    except TypeError:
        raise ValueError(f"num_generations must be an int, got {num_generations!r}") from None
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    if (
        prompt_ids.ndim != 2
        or responses.ndim != 2
        or prompt_ids.shape[0] * num_generations != responses.shape[0]
    ):
        raise ValueError(
            f"prompt_ids {tuple(prompt_ids.shape)} and responses {tuple(responses.shape)} must be "
            f"(P, L) and (P·G, T) with G = num_generations = {num_generations}"
        )
    if prompt_ids.shape[0] == 0:
        raise ValueError(f"need at least one prompt, got prompt_ids {tuple(prompt_ids.shape)}")


def _full_logits(model, prompt_ids, prompt_mask, responses, resp_mask):
    """Logits (B, T, V) predicting each response token: one forward over prompt + response."""
    length = responses.shape[1]
    ids = torch.cat([prompt_ids, responses], dim=1)
    attn = torch.cat([prompt_mask.long(), resp_mask.long()], dim=1)
    positions = (attn.cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=ids, attention_mask=attn, position_ids=positions, logits_to_keep=length + 1,
        use_cache=False,
    )  # fmt: skip
    return out.logits[:, :-1]


def _shared_logits(model, prompt_ids, prompt_mask, responses, resp_mask, generations: int):
    """Logits (P·G, T, V) predicting each response token, each prompt run once: the prompt's last
    position predicts token 0; response tokens 0..T−2, after the repeated cache, predict 1..T−1."""
    extra = {"logits_to_keep": 1} if "logits_to_keep" in forward_parameters(model) else {}
    first, cache, mask = shared_prefill(model, prompt_ids, prompt_mask, generations, **extra)
    if responses.shape[1] == 1:
        return first[:, None]
    attn = torch.cat([mask, resp_mask[:, :-1].long()], dim=1)
    positions = (attn.cumsum(dim=1) - 1).clamp(min=0)[:, prompt_ids.shape[1] :]
    rest = model(
        input_ids=responses[:, :-1], attention_mask=attn, position_ids=positions,
        use_cache=True, **{cache_argument(model): cache},
    )  # fmt: skip
    return torch.cat([first[:, None], rest.logits], dim=1)


def response_logits(
    model, prompt_ids, prompt_mask, responses, resp_mask, temperature=1.0, num_generations=1
):
    """Logits (B, T, V) / ``temperature`` that predicted each response token, and their log-probs
    (B, T), 0 off ``resp_mask``, both on the model's device (inputs are moved there), float32 for
    a float16/bfloat16 model, else in the model's dtype.

    ``prompt_ids`` (P, L) are left-padded prompts, each followed by ``num_generations`` = G of the
    B = P·G ``responses`` (prompt-major rows); with G > 1 each prompt runs once and its KV cache
    serves its G responses (same numbers as repeating the prompts with G = 1). Left padding is
    handled by position ids from the attention mask; only response positions are projected onto
    the vocabulary (``logits_to_keep``). Runs under the caller's grad mode. Masked-out positions
    (padding, after EOS) may hold any id (−100, ids past the vocabulary); ids, masks may be lists
    or NumPy arrays. Raises ValueError naming the shapes if ids and masks, or prompts and
    responses, do not fit, or if there are no prompts; naming the id for an unmasked id outside
    the vocabulary; unless ``temperature`` is finite and > 0.
    """
    prompt_ids, prompt_mask, responses, resp_mask = _tensors(
        prompt_ids, prompt_mask, responses, resp_mask
    )
    check_pairs(prompt_ids, prompt_mask, responses, resp_mask, num_generations)
    if not (math.isfinite(float(temperature)) and float(temperature) > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    responses, resp_mask = responses.to(device), resp_mask.to(device)
    prompt_ids = ids_in_vocabulary(model, prompt_ids, prompt_mask, "prompt_ids")
    responses = ids_in_vocabulary(model, responses, resp_mask, "responses")
    if num_generations > 1 and responses.shape[1] == 0:  # nothing to share a cache with
        prompt_ids, prompt_mask = (
            t.repeat_interleave(num_generations, dim=0) for t in (prompt_ids, prompt_mask)
        )
        num_generations = 1
    if num_generations == 1:
        logits = _full_logits(model, prompt_ids, prompt_mask, responses, resp_mask)
    else:
        logits = _shared_logits(
            model, prompt_ids, prompt_mask, responses, resp_mask, num_generations
        )
    if logits.dtype in (torch.float16, torch.bfloat16):  # log-softmax in half precision loses KL
        logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits, token_log_probs(logits, responses, resp_mask)


def reference_logits(
    policy, prompt_ids, prompt_mask, responses, resp_mask, temperature=1.0, ref_model=None,
    num_generations=1,
):  # fmt: skip
    """:func:`response_logits` of π_ref, no gradient, on the device of the network that runs:
    ``ref_model`` if given, else the same network with its LoRA adapters disabled
    (``reference.reference_view``, eval mode)."""
    prompt_ids, prompt_mask, responses, resp_mask = _tensors(
        prompt_ids, prompt_mask, responses, resp_mask
    )
    check_pairs(prompt_ids, prompt_mask, responses, resp_mask, num_generations)
    with torch.no_grad(), reference_view(policy, ref_model) as ref:
        return response_logits(
            ref, prompt_ids, prompt_mask, responses, resp_mask, temperature, num_generations
        )


def response_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor):
    """The exact-KL monitor: KL(π‖π_ref) per response (B,), nats, summed over the tokens of
    ``mask`` (B, T) of the per-token KL over the whole vocabulary of logits (B, T, V) (float64
    inside, ≥ 0: ``regularizer.per_token_divergence``). Raises ValueError naming both shapes."""
    return masked_sum(per_token_divergence(logits, ref_logits, mask, "reverse"), mask)
