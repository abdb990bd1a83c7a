"""Tests for kl_helpers.engine.results and the cached sweep: round trip, resume, invalidation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import kl_helpers
from kl_helpers.divergences import entropy
from kl_helpers.engine import experiment, results
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.experiment import run_sweep
from kl_helpers.engine.results import (
    LossHistory,
    atomic_folder,
    code_fingerprint,
    default_results_dir,
    is_finished,
    load_run,
    run_dir,
    save_run,
    summary_table,
)

FAST = ExperimentConfig(epochs=2, device="cpu")


def sweep(configs, data, tiny, tokenizer, folder, **kw):
    return run_sweep(
        configs,
        data,
        folder,
        model=tiny,
        tokenizer=tokenizer,
        model_name="tiny",
        progress=False,
        **kw,
    )


class Counter:
    """Wraps experiment.run_experiment (run_sweep calls it); counts the runs really trained."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        real = experiment.run_experiment

        def counted(config, *args, **kwargs):
            self.calls.append(config.label)
            return real(config, *args, **kwargs)

        monkeypatch.setattr(experiment, "run_experiment", counted)


def test_save_load_round_trip_is_exact(tmp_path, data, tiny, tokenizer):
    (result,) = sweep([FAST.replace(method="forward", beta=0.3)], data, tiny, tokenizer, tmp_path)
    folder = run_dir(tmp_path, result.config, result.key)
    assert {p.name for p in folder.iterdir()} == {"run.json", "history.csv", "probabilities.csv"}
    meta = json.loads((folder / "run.json").read_text())
    assert meta["model_name"] == "tiny" and meta["config"]["beta"] == 0.3
    loaded = load_run(tmp_path, result.config, result.key)
    assert loaded.config == result.config and loaded.model_name == "tiny"
    assert loaded.history.task == result.history.task
    assert loaded.history.kl_forward == result.history.kl_forward
    assert loaded.history.total == result.history.total
    assert loaded.train_texts == result.train_texts and loaded.test_labels == result.test_labels
    for name, table in result.probs.items():
        assert torch.equal(loaded.probs[name], table), name
    assert loaded.wall_time_s == result.wall_time_s
    assert loaded.cpu_threads == result.cpu_threads == torch.get_num_threads()


def test_resume_skips_finished_runs(tmp_path, data, tiny, tokenizer, monkeypatch):
    configs = [FAST, FAST.replace(method="reverse", beta=0.5)]
    first = sweep(configs, data, tiny, tokenizer, tmp_path)
    counter = Counter(monkeypatch)
    again = sweep(configs, data, tiny, tokenizer, tmp_path)
    assert counter.calls == []
    assert [r.history.total for r in again] == [r.history.total for r in first]
    sweep(configs, data, tiny, tokenizer, tmp_path, force=True)
    assert counter.calls == ["sft", "reverse_b0.5"]


def test_a_changed_config_or_data_reruns(tmp_path, data, tiny, tokenizer, monkeypatch):
    sweep([FAST.replace(method="forward", beta=0.1)], data, tiny, tokenizer, tmp_path)
    counter = Counter(monkeypatch)
    sweep([FAST.replace(method="forward", beta=0.1, lr=2e-4)], data, tiny, tokenizer, tmp_path)
    assert counter.calls == ["forward_b0.1"]
    smaller = experiment.TextData(
        data.train_texts[:5],
        data.train_labels[:5],
        data.test_texts,
        data.test_labels,
        data.label_names,
    )
    sweep([FAST.replace(method="forward", beta=0.1)], smaller, tiny, tokenizer, tmp_path)
    assert counter.calls == ["forward_b0.1", "forward_b0.1"]
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("forward_b0.1-")]) == 3


def test_an_unfinished_folder_is_not_a_finished_run(tmp_path, data, tiny, tokenizer):
    (result,) = sweep([FAST], data, tiny, tokenizer, tmp_path)
    assert is_finished(tmp_path, result.config, result.key)
    (run_dir(tmp_path, result.config, result.key) / "run.json").write_text("{broken")
    assert not is_finished(tmp_path, result.config, result.key)
    with pytest.raises(FileNotFoundError, match="no finished run"):
        load_run(tmp_path, result.config, result.key)
    save_run(result, tmp_path)  # replaces the broken folder
    assert is_finished(tmp_path, result.config, result.key)


def test_summary_row_matches_naive_metrics(tmp_path, data, tiny, tokenizer):
    results = sweep(
        [FAST, FAST.replace(method="forward", beta=0.9)], data, tiny, tokenizer, tmp_path
    )
    row = results[1].summary("test")
    p = results[1].prob("final", "test")
    assert row["max_prob_test"] == pytest.approx(float(p.max(-1).values.mean()))
    assert row["entropy_test"] == pytest.approx(float(entropy(p).mean()))
    train = results[1].prob("final", "train")
    labels = torch.tensor(data.train_labels)
    naive = -sum(float(train[i, y].log()) for i, y in enumerate(labels)) / len(labels)
    assert row["task_loss_train"] == pytest.approx(naive)
    assert 0 <= row["train_acc"] <= 1 and row["test_acc"] in (0.0, 0.5, 1.0)
    table = summary_table(results)
    assert list(table.index) == ["sft", "forward_b0.9"]


def test_default_results_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KL_RESULTS", str(tmp_path / "elsewhere"))
    assert default_results_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("KL_RESULTS")
    assert default_results_dir().name == "results"


def test_js_run_round_trip_keeps_its_divergence_term(tmp_path, data, tiny, tokenizer):
    config = FAST.replace(method="js", beta=0.5, js_weight=0.3)
    (result,) = sweep([config], data, tiny, tokenizer, tmp_path)
    h = result.history
    assert result.config.label == "js_b0.5" and len(h.kl_js) == len(h.task)
    assert h.kl == h.kl_js and h.kl_js != h.kl_forward
    assert h.total == [t + 0.5 * k for t, k in zip(h.task, h.kl_js, strict=True)]
    loaded = load_run(tmp_path, result.config, result.key)
    assert loaded.history.kl_js == h.kl_js and loaded.history.total == h.total


def edited_package(tmp_path, relative: str, old: str, new: str):
    """A copy of the package source with one edit in ``relative`` (what a reader would do)."""
    copy = tmp_path / "kl_helpers_copy"
    shutil.copytree(results.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return copy


def test_code_fingerprint_is_stable_and_skips_plotting(tmp_path):
    assert code_fingerprint() == code_fingerprint() and len(code_fingerprint()) == 12
    assert results.PACKAGE_ROOT == Path(kl_helpers.__file__).resolve().parent
    same = edited_package(tmp_path, "engine/losses.py", "", "")
    assert code_fingerprint(same) == code_fingerprint()
    plot = edited_package(tmp_path / "b", "plotting/gaussians.py", '"density"', '"density (1/x)"')
    assert code_fingerprint(plot) == code_fingerprint()


@pytest.mark.parametrize(
    "relative",
    ["regularizer.py", "engine/losses.py", "rl/loss.py", "llm/sampling.py", "theory/optima.py"],
)
def test_an_edit_in_any_family_changes_the_fingerprint(tmp_path, relative):
    """Files in the family folders count as much as the shared core (only plotting/ is skipped)."""
    edited = edited_package(tmp_path, relative, '"""', '"""Edited. ')
    assert code_fingerprint(edited) != code_fingerprint()


def test_an_edited_loss_function_reruns(tmp_path, data, tiny, tokenizer, monkeypatch):
    folder = tmp_path / "results"
    config = FAST.replace(method="forward", beta=0.1)
    sweep([config], data, tiny, tokenizer, folder)
    counter = Counter(monkeypatch)
    sweep([config], data, tiny, tokenizer, folder)
    assert counter.calls == []  # unchanged code: read back from the cache
    edited = edited_package(
        tmp_path,
        "regularizer.py",
        "out = kl_divergence_logits(ref_logits, policy_logits, temperature)",
        "out = 2.0 * kl_divergence_logits(ref_logits, policy_logits, temperature)",
    )
    assert code_fingerprint(edited) != code_fingerprint()
    monkeypatch.setattr(results, "PACKAGE_ROOT", edited)
    (rerun,) = sweep([config], data, tiny, tokenizer, folder)
    assert counter.calls == ["forward_b0.1"]  # the edited loss reruns instead of loading
    assert is_finished(folder, rerun.config, rerun.key)
    assert len([p for p in folder.iterdir() if p.name.startswith("forward_b0.1-")]) == 2


def test_a_changed_library_version_reruns(tmp_path, data, tiny, tokenizer, monkeypatch):
    import transformers

    sweep([FAST], data, tiny, tokenizer, tmp_path)
    counter = Counter(monkeypatch)
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".edited")
    sweep([FAST], data, tiny, tokenizer, tmp_path)
    assert counter.calls == ["sft"]
    monkeypatch.setattr(transformers, "__version__", "0.0.1")
    sweep([FAST], data, tiny, tokenizer, tmp_path)
    assert counter.calls == ["sft", "sft"]


def test_sft_totals_are_the_task_loss_even_with_nan_kl_monitors():
    # SFT with cache_reference=False runs no reference: its KL monitors are NaN, its loss is not.
    nan = float("nan")
    h = LossHistory([0, 1], [1.1, 0.9], [nan, nan], [nan, nan], beta=0.0, method="sft")
    assert h.total == [1.1, 0.9]
    fkl = LossHistory([0], [1.0], [0.5], [0.25], beta=0.2, method="forward")
    rkl = LossHistory([0], [1.0], [0.5], [0.25], beta=0.2, method="reverse")
    assert fkl.total == [1.1] and rkl.total == [1.05]


def test_sft_without_reference_cache_records_finite_totals(tmp_path, data, tiny, tokenizer):
    (result,) = sweep([FAST.replace(cache_reference=False)], data, tiny, tokenizer, tmp_path)
    assert all(math.isnan(k) for k in result.history.kl_forward)
    assert all(math.isfinite(t) for t in result.history.total)
    assert result.history.total == result.history.task
    loaded = load_run(tmp_path, result.config, result.key)
    assert loaded.history.total == result.history.task


def test_atomic_folder_replaces_on_success_and_keeps_the_old_run_on_error(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "run.json").write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_folder(final) as tmp:
            (tmp / "run.json").write_text("half")
            raise RuntimeError("interrupted")
    assert (final / "run.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left behind
    with atomic_folder(final) as tmp:
        (tmp / "run.json").write_text("new")
    assert (final / "run.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
