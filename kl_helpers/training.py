"""A fast, seeded engine for SFT with an optional forward- or reverse-KL penalty to a reference.

Layers: ``kl_regularised_loss`` (pure, on logits) → ``train_step`` (one batch; the reference,
when it has to run, runs under ``torch.no_grad()``) → ``train_loop`` (epochs; returns a
``LossHistory``, draws nothing) → ``run_experiment`` (one config) → ``run_sweep`` (many configs,
cached on disk, progress bar). Speed: texts are tokenised once and padded per batch to the
longest sequence; the frozen reference's logits are computed once per text and reused; AdamW
uses the fastest implementation for the device; bf16 autocast on a bf16-capable GPU.
Works on generic texts/labels (``TextData``), not only the article's nine sentences.
Introduced in notebook 06.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kl_helpers.config import ExperimentConfig
from kl_helpers.losses import calculate_cross_entropy_loss, calculate_fkl_loss, calculate_rkl_loss
from kl_helpers.results import (
    LossHistory,
    RunResult,
    default_results_dir,
    is_finished,
    load_run,
    save_run,
)
from kl_helpers.runtime import pick_device, seed_everything

NO_PROGRESS_ENVS = ("CI", "KL_NO_PROGRESS")  # any of these set (non-empty) hides progress bars
# KL term of each method: (new_logits, ref_logits) -> batch-mean KL in nats. SFT has none.
KL_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "fkl": calculate_fkl_loss,  # KL(p_ref‖p_new): expectation under the reference
    "rkl": calculate_rkl_loss,  # KL(p_new‖p_ref): expectation under the model being trained
}
# AdamW implementation per device type for optimizer="auto". Measured on a 2-core CPU with the
# bundled MiniLM (22.7 M parameters): fused 0.010 s/step, foreach 0.068 s, for-loop 0.084 s
# (benchmarks/bench_engine.py prints these for the current machine).
FASTEST_ADAMW: dict[str, str] = {"cuda": "fused", "cpu": "fused", "mps": "foreach"}


@dataclass(frozen=True)
class TextData:
    """Train and test texts with integer labels ``0..len(label_names)-1``."""

    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[int, ...]
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.train_texts) == 0:
            raise ValueError("TextData needs at least one training text")
        for split in ("train", "test"):
            texts, labels = getattr(self, f"{split}_texts"), getattr(self, f"{split}_labels")
            if len(texts) != len(labels):
                raise ValueError(f"{split}: {len(texts)} texts but {len(labels)} labels")
            bad = [y for y in labels if not 0 <= y < len(self.label_names)]
            if bad:
                raise ValueError(f"{split} labels must be in [0, {len(self.label_names)}): {bad}")

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    def fingerprint(self) -> str:
        """Stable hash of texts, labels and label names (part of the results-cache key)."""
        payload = json.dumps(
            [
                self.train_texts,
                self.train_labels,
                self.test_texts,
                self.test_labels,
                self.label_names,
            ]
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @classmethod
    def from_split(
        cls, split, label_names: Sequence[str], text: str = "text", label: str = "label"
    ) -> TextData:
        """From a ``datasets.DatasetDict`` with "train" and "test" splits."""
        return cls(
            tuple(split["train"][text]),
            tuple(int(y) for y in split["train"][label]),
            tuple(split["test"][text]),
            tuple(int(y) for y in split["test"][label]),
            tuple(label_names),
        )


def article_data(split_seed: int = 42) -> TextData:
    """The article's nine sentences, split 7 train / 2 test with ``split_seed``."""
    from kl_helpers.data import LABEL_NAMES, article_split

    return TextData.from_split(article_split(seed=split_seed), LABEL_NAMES)


@dataclass(frozen=True)
class Encoded:
    """Texts tokenised once, unpadded: one 1-D id tensor per text, plus labels ``(N,)``."""

    ids: tuple[torch.Tensor, ...]
    labels: torch.Tensor
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int) -> Encoded:
    """Tokenise ``texts`` once (truncated to ``max_length`` tokens, no padding)."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        tuple(torch.tensor(x, dtype=torch.long) for x in ids),
        torch.tensor(list(labels), dtype=torch.long),
        int(pad_id),
    )


def pad_batch(
    ids: Sequence[torch.Tensor], pad_id: int, pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence (or to ``pad_to``): ``input_ids, attention_mask``."""
    length = max(len(x) for x in ids) if pad_to is None else pad_to
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return input_ids, mask


def kl_regularised_loss(
    logits: torch.Tensor, labels: torch.Tensor, ref_logits: torch.Tensor, method: str, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, task, kl_forward, kl_reverse)`` in nats; total = task + β·KL of ``method``.

    ``kl_forward`` is KL(p_ref‖p_new), ``kl_reverse`` KL(p_new‖p_ref), batch means; both are
    returned for monitoring, only ``method``'s enters ``total`` (none for "sft").
    """
    logits = logits.float()
    ref_logits = ref_logits.float()
    task = calculate_cross_entropy_loss(logits, labels)
    kl_forward = calculate_fkl_loss(logits, ref_logits)
    kl_reverse = calculate_rkl_loss(logits, ref_logits)
    if method == "sft":
        total = task
    elif method in KL_TERMS:
        total = task + beta * (kl_forward if method == "fkl" else kl_reverse)
    else:
        raise ValueError(f"method must be 'sft' or one of {tuple(KL_TERMS)}, got {method!r}")
    return total, task, kl_forward, kl_reverse


def forward_logits(model: torch.nn.Module, input_ids, attention_mask) -> torch.Tensor:
    """Classifier logits ``(B, C)`` of a Hugging Face sequence-classification model."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    beta: float,
    ref_logits: torch.Tensor | None = None,
    reference: torch.nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """One optimizer step on one batch; returns detached ``(task, kl_forward, kl_reverse)``.

    Pass cached ``ref_logits`` (fast) or a frozen ``reference`` to run under ``no_grad``; plain
    SFT may pass neither (as the article does), then both KL monitors are NaN.
    """
    if ref_logits is None and reference is not None:
        with torch.no_grad(), _autocast(input_ids.device, amp_dtype):
            ref_logits = forward_logits(reference, input_ids, attention_mask)
    if ref_logits is None and method != "sft":
        raise ValueError("train_step needs ref_logits or a reference model")
    optimizer.zero_grad(set_to_none=True)
    with _autocast(input_ids.device, amp_dtype):
        logits = forward_logits(model, input_ids, attention_mask)
    if ref_logits is None:  # plain SFT without any reference: nothing to monitor (NaN)
        task = calculate_cross_entropy_loss(logits.float(), labels)
        total = task
        kl_fwd = kl_rev = torch.full_like(task, torch.nan)
    else:
        total, task, kl_fwd, kl_rev = kl_regularised_loss(logits, labels, ref_logits, method, beta)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return torch.stack([task, kl_fwd, kl_rev]).detach()


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches of one epoch, shuffled with ``generator`` (in order if None)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Encoded,
    config: ExperimentConfig,
    ref_logits: torch.Tensor | None = None,
    reference: torch.nn.Module | None = None,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> LossHistory:
    """Train ``config.epochs`` epochs (model in train mode); per-step losses as a LossHistory.

    ``ref_logits`` ``(N, C)`` holds the reference's logits for every text of ``data`` (cached);
    else ``reference`` is run on every batch. Shuffling is seeded by ``config.seed``.
    """
    device = device or next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed) if config.shuffle else None
    pad_to = config.max_length if config.padding == "max_length" else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    labels_all = data.labels.to(device)
    model.train()
    steps, epochs = [], []
    for epoch in range(config.epochs):
        for idx in batches(len(data), config.batch_size, generator):
            input_ids, mask = pad_batch([data.ids[i] for i in idx], data.pad_id, pad_to)
            input_ids, mask = input_ids.to(device), mask.to(device)
            idx_dev = idx.to(device)
            cached = ref_logits[idx_dev] if ref_logits is not None else None
            steps.append(
                train_step(
                    model,
                    optimizer,
                    input_ids,
                    mask,
                    labels_all[idx_dev],
                    config.method,
                    config.beta,
                    cached,
                    reference,
                    amp_dtype,
                    scaler,
                )
            )
            epochs.append(epoch)
    values = torch.stack(steps).double().cpu() if steps else torch.zeros(0, 3)
    return LossHistory(
        epoch=epochs,
        task=values[:, 0].tolist(),
        kl_forward=values[:, 1].tolist(),
        kl_reverse=values[:, 2].tolist(),
        beta=config.beta,
        method=config.method,
    )


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    data: Encoded,
    batch_size: int = 64,
    pad_to: int | None = None,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Eval-mode logits ``(N, C)`` (float32, on the model's device); restores the model's mode.

    Texts are grouped by length to pad little; padding changes logits by < 1e-5.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    out: list[torch.Tensor] = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, mask = pad_batch([data.ids[i] for i in chunk], data.pad_id, pad_to)
        with _autocast(device, amp_dtype):
            out.append(forward_logits(model, input_ids.to(device), mask.to(device)).float())
    model.train(was_training)
    if not out:
        return torch.zeros(0, model.config.num_labels, device=device)
    logits = torch.cat(out)
    unsort = torch.empty(len(order), dtype=torch.long)
    unsort[torch.tensor(order)] = torch.arange(len(order))
    return logits[unsort.to(device)]


def resolve_device(config: ExperimentConfig) -> torch.device:
    """``config.device`` if set, else cuda → mps → cpu (``kl_helpers.runtime.pick_device``)."""
    return pick_device(config.device)


def autocast_dtype(config: ExperimentConfig, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for ``device`` (None = fp32): bf16 on a bf16-capable GPU for "auto"."""
    if config.precision == "fp32" or (config.precision == "auto" and device.type != "cuda"):
        return None
    if config.precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if config.precision == "bf16" else torch.float16


def make_optimizer(params, config: ExperimentConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW(lr, weight_decay) in the implementation ``config.optimizer`` names (auto: fastest)."""
    impl = config.optimizer
    if impl == "auto":
        impl = FASTEST_ADAMW.get(device.type, "foreach")
    flags = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "for_loop": {"foreach": False, "fused": False},
    }[impl]
    if impl == "fused" and config.optimizer == "auto" and not _fused_adamw_available(device):
        flags = {"foreach": True}  # no fused AdamW here (CPU before torch 2.4): next fastest
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **flags)


def frozen_reference(start_model: torch.nn.Module, config: ExperimentConfig) -> torch.nn.Module:
    """A frozen, eval-mode reference: an exact copy of ``start_model``, or (the article's
    variant, ``reference="independent_head"``) the same encoder with a head redrawn from
    ``config.reference_seed``."""
    reference = copy.deepcopy(start_model)
    if config.reference == "independent_head":
        redraw_classifier_head(reference, config.reference_seed)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def redraw_classifier_head(model: torch.nn.Module, seed: int) -> None:
    """Re-initialise a BERT classifier head in place as ``from_pretrained`` does (N(0, 0.02²),
    zero bias), seeded: what loading the checkpoint again gives in the article."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise ValueError("redraw_classifier_head expects a model with a Linear `.classifier`")
    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
        if head.bias is not None:
            head.bias.zero_()


def resolved(config: ExperimentConfig, model_name: str, device: torch.device) -> ExperimentConfig:
    """``config`` with model name, device type, AdamW implementation and precision filled in
    (what the cache key sees: results from another implementation are not reused)."""
    optimizer = config.optimizer
    if optimizer == "auto":
        optimizer = FASTEST_ADAMW.get(device.type, "foreach")
    if optimizer == "fused" and not _fused_adamw_available(device):
        optimizer = "foreach"
    amp = autocast_dtype(config, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    return config.replace(
        model=model_name, device=device.type, optimizer=optimizer, precision=precision
    )


def _fused_adamw_available(device: torch.device) -> bool:
    """True if torch has a fused AdamW for ``device`` (CPU: torch >= 2.4)."""
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError):
        return False
    return True


def run_experiment(
    config: ExperimentConfig,
    data: TextData,
    *,
    model: torch.nn.Module | None = None,
    tokenizer=None,
    model_name: str | None = None,
    on_trained: Callable[[torch.nn.Module], None] | None = None,
) -> RunResult:
    """Train one run and evaluate it; ``model`` is the untouched start model (copied, not changed).

    ``on_trained`` is called with the trained model before it is discarded (e.g. to keep its
    weights: ``kl_helpers.retention.trained_reference`` does).

    Without ``model``/``tokenizer`` they are loaded via ``kl_helpers.models`` from
    ``config.model`` with head seed ``config.seed``. With ``model`` given, pass the tokenizer and
    a ``model_name``; the caller is responsible for it having been built with ``config.seed``.
    """
    from kl_helpers import models

    if model is None or tokenizer is None:
        choice = models.resolve_model(config.model)
        tokenizer = tokenizer or models.load_tokenizer(choice)
        model = model or models.load_classifier(choice, data.num_labels, seed=config.seed)
        model_name = model_name or choice.name
    device = resolve_device(config)
    config = resolved(config, model_name or "custom", device)
    amp_dtype = autocast_dtype(config, device)
    pad_to = config.max_length if config.padding == "max_length" else None

    train = encode(tokenizer, data.train_texts, data.train_labels, config.max_length)
    test = encode(tokenizer, data.test_texts, data.test_labels, config.max_length)

    start = time.perf_counter()
    seed_everything(config.seed)
    student = copy.deepcopy(model).to(device)
    reference = frozen_reference(student, config)

    def logits(net: torch.nn.Module, enc: Encoded) -> torch.Tensor:
        return predict_logits(net, enc, config.eval_batch_size, pad_to, amp_dtype)

    def probs(net_logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net_logits.double(), dim=-1).cpu()

    ref_train_logits = logits(reference, train)  # once per text: reused at every step
    ref_test_logits = logits(reference, test)
    if config.reference == "same_start":  # an exact copy: the start model predicts the same
        start_train_logits, start_test_logits = ref_train_logits, ref_test_logits
    else:
        start_train_logits, start_test_logits = logits(student, train), logits(student, test)
    table = {
        "reference/train": probs(ref_train_logits),
        "reference/test": probs(ref_test_logits),
        "start/train": probs(start_train_logits),
        "start/test": probs(start_test_logits),
    }
    ref_logits = ref_train_logits if config.cache_reference else None
    # Without the cache the reference runs on every batch, as in the article (which skips it for
    # plain SFT; so do we, and that run's KL monitors are then NaN).
    live = not config.cache_reference and config.method != "sft"
    optimizer = make_optimizer(student.parameters(), config, device)
    seed_everything(config.seed)  # dropout masks do not depend on what ran before
    history = train_loop(
        student,
        optimizer,
        train,
        config,
        ref_logits,
        reference if live else None,
        device,
        amp_dtype,
    )
    table["final/train"] = probs(logits(student, train))
    table["final/test"] = probs(logits(student, test))
    if on_trained is not None:
        on_trained(student)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return RunResult(
        config=config,
        key=config.key(data.fingerprint()),
        model_name=config.model or "custom",
        device=str(device),
        wall_time_s=wall,
        label_names=data.label_names,
        train_texts=data.train_texts,
        train_labels=data.train_labels,
        test_texts=data.test_texts,
        test_labels=data.test_labels,
        history=history,
        probs=table,
        cpu_threads=torch.get_num_threads(),
    )


def show_progress(progress: bool | None) -> bool:
    """Progress bars on unless ``progress`` is False or $CI / $KL_NO_PROGRESS is set."""
    if progress is not None:
        return progress
    return not any(os.environ.get(name) for name in NO_PROGRESS_ENVS)


def run_sweep(
    configs: Sequence[ExperimentConfig],
    data: TextData,
    results_dir: Path | str | None = None,
    *,
    model: torch.nn.Module | None = None,
    tokenizer=None,
    model_name: str | None = None,
    progress: bool | None = None,
    force: bool = False,
) -> list[RunResult]:
    """Run every config (or load it from ``results_dir`` if finished there); results in order.

    A run is cached under a key of its config (model and device resolved) and the data's
    fingerprint, so a changed config or data set reruns; ``force`` reruns everything. Models
    are loaded once per (model, seed) and copied per run. ``model`` (with ``tokenizer`` and
    ``model_name``) overrides loading, e.g. a tiny BERT in tests.
    """
    from tqdm.auto import tqdm

    from kl_helpers import models

    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    choices: dict[str | None, models.ModelChoice] = {}
    tokenizers: dict[str, object] = {}
    start_models: dict[tuple[str, int, int], torch.nn.Module] = {}
    out: list[RunResult] = []
    bar = tqdm(configs, desc="runs", disable=not show_progress(progress), leave=False)
    for config in bar:
        bar.set_postfix_str(config.label)
        device = resolve_device(config)
        if model is not None:
            name = model_name or "custom"
        else:
            if config.model not in choices:
                choices[config.model] = models.resolve_model(config.model)
            name = choices[config.model].name
        full = resolved(config, name, device)
        key = full.key(data.fingerprint())
        if not force and is_finished(results_dir, full, key):
            out.append(load_run(results_dir, full, key))
            continue
        if model is not None:
            start_model, tok = model, tokenizer
        else:
            choice = choices[config.model]
            if choice.source not in tokenizers:
                tokenizers[choice.source] = models.load_tokenizer(choice)
            tok = tokenizers[choice.source]
            slot = (choice.source, config.seed, data.num_labels)
            if slot not in start_models:
                start_models[slot] = models.load_classifier(choice, data.num_labels, config.seed)
            start_model = start_models[slot]
        result = run_experiment(full, data, model=start_model, tokenizer=tok, model_name=name)
        save_run(result, results_dir)
        out.append(result)
    bar.close()
    return out


@contextlib.contextmanager
def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
