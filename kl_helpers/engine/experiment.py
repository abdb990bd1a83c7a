"""One run (``run_experiment``) and many cached runs (``run_sweep``) of the notebook-06 engine.

Introduced in notebook 06.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from kl_helpers import models
from kl_helpers.encoding import Encoded, TextData, encode
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.results import (
    RunResult,
    default_results_dir,
    is_finished,
    load_run,
    run_key,
    save_run,
)
from kl_helpers.engine.training import Replay, make_optimizer, train_loop
from kl_helpers.precision import adamw_implementation, autocast_dtype, fused_adamw_available
from kl_helpers.reference import ReferenceLogits, frozen_reference, predict_logits
from kl_helpers.runtime import pick_device, progress_bar, seed_everything


def resolve_device(config: ExperimentConfig) -> torch.device:
    """``config.device`` if set, else cuda → mps → cpu (``kl_helpers.runtime.pick_device``)."""
    return pick_device(config.device)


def resolved(config: ExperimentConfig, model_name: str, device: torch.device) -> ExperimentConfig:
    """``config`` with model name, device type, AdamW implementation and precision filled in
    (what the cache key sees: results from another implementation are not reused)."""
    optimizer = adamw_implementation(config.optimizer, device)
    if optimizer == "fused" and not fused_adamw_available(device):
        optimizer = "foreach"
    amp = autocast_dtype(config.precision, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    return config.replace(
        model=model_name, device=device.type, optimizer=optimizer, precision=precision
    )


def run_experiment(
    config: ExperimentConfig,
    data: TextData,
    *,
    model: torch.nn.Module | None = None,
    tokenizer=None,
    model_name: str | None = None,
    on_trained: Callable[[torch.nn.Module], None] | None = None,
    reference_logits: ReferenceLogits | None = None,
) -> RunResult:
    """Train one run and evaluate it; ``model`` is the untouched start model (copied, not changed).

    The copy trains on ``resolve_device(config)``; the result holds no tensor on that device:
    probabilities are float64 on the CPU, histories Python floats.

    ``on_trained`` is called with the trained model before it is discarded (e.g. to keep its
    weights, as ``kl_helpers.studies.retention.trained_reference`` does). ``reference_logits`` (as
    ``run_sweep`` passes) reuses the reference's logits on texts an earlier run already scored.

    Without ``model``/``tokenizer`` they are loaded via ``kl_helpers.models`` from
    ``config.model`` with head seed ``config.seed``. With ``model`` given, pass the tokenizer and
    a ``model_name``; the caller is responsible for it having been built with ``config.seed``.
    """

    if config.kl_inputs != "task" and not data.replay_texts:
        raise ValueError(f"kl_inputs={config.kl_inputs!r} needs TextData.replay_texts")
    if model is None or tokenizer is None:
        choice = models.resolve_model(config.model)
        tokenizer = tokenizer or models.load_tokenizer(choice)
        model = model or models.load_classifier(choice, data.num_labels, seed=config.seed)
        model_name = model_name or choice.name
    device = resolve_device(config)
    config = resolved(config, model_name or "custom", device)
    amp_dtype = autocast_dtype(config.precision, device)
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

    independent = config.reference == "independent_head"
    settings = (config.reference, config.reference_seed if independent else None)
    settings += (config.eval_batch_size, pad_to, str(amp_dtype), device.type)

    def reference_logits_of(enc: Encoded) -> torch.Tensor:
        if reference_logits is None:
            return logits(reference, enc)
        return reference_logits.get(model, enc, settings, lambda: logits(reference, enc))

    ref_train_logits = reference_logits_of(train)  # once per text: reused at every step
    ref_test_logits = reference_logits_of(test)
    replay = None
    if config.kl_inputs != "task":  # replay texts: their reference logits also once
        replay_enc = encode(tokenizer, data.replay_texts, None, config.max_length)
        replay = Replay(replay_enc, reference_logits_of(replay_enc), config.replay_batch_size)
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
        replay,
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
        key=run_key(config, data.fingerprint()),
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
    reference_logits: ReferenceLogits | None = None,
) -> list[RunResult]:
    """Run every config (or load it from ``results_dir`` if finished there); results in order.

    A run is cached under a key of its config (model and device resolved) and the data's
    fingerprint, so a changed config or data set reruns; ``force`` reruns everything. Models
    are loaded once per (model, seed) and copied per run. ``model`` (with ``tokenizer`` and
    ``model_name``) overrides loading, e.g. a tiny BERT in tests. The reference's logits on the
    same texts are computed once for all runs from one start model (``reference_logits``: pass
    one to share them between sweeps, e.g. task and replay runs on the same held-out texts).
    """
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    choices: dict[str | None, models.ModelChoice] = {}
    tokenizers: dict[str, object] = {}
    start_models: dict[tuple[str, int, int], torch.nn.Module] = {}
    out: list[RunResult] = []
    reference_logits = reference_logits if reference_logits is not None else ReferenceLogits()
    bar = progress_bar(configs, desc="runs", progress=progress)
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
        key = run_key(full, data.fingerprint())
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
        result = run_experiment(
            full,
            data,
            model=start_model,
            tokenizer=tok,
            model_name=name,
            reference_logits=reference_logits,
        )
        save_run(result, results_dir)
        out.append(result)
    bar.close()
    return out
