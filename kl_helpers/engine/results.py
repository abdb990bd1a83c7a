"""Typed run results and the on-disk results cache (one folder per run, JSON + CSV).

A run's folder is ``<results_dir>/<label>-<key>/`` with ``history.csv`` (per training step: task
loss, forward KL(p_ref‖p_new) and reverse KL(p_new‖p_ref), in nats), ``probabilities.csv``
(class probabilities of the reference, the start model and the final model for every train and
test text) and ``run.json`` (config, model name, device, wall time). ``run.json`` is written
last, inside a temporary folder renamed into place, so a folder that has it is a finished run.
Introduced in notebook 06.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kl_helpers.divergences import entropy, kl_divergence
from kl_helpers.engine.config import ExperimentConfig

RESULTS_ENV = "KL_RESULTS"  # override the results folder
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # kl_helpers/: the source the fingerprint hashes
NOT_FINGERPRINTED = ("plotting", "notebook")  # draw or check numbers, never change them
FORMAT_VERSION = 1  # bump when the on-disk layout changes; older folders are then rerun
PROB_KINDS: tuple[str, ...] = ("reference", "start", "final")


@dataclass(frozen=True)
class LossHistory:
    """Per-step training losses in nats (dropout on, as the optimizer saw them)."""

    epoch: list[int]
    task: list[float]  # cross-entropy −log p_new(y), batch mean
    kl_forward: list[float]  # KL(p_ref‖p_new), batch mean; in the loss only for "forward"
    kl_reverse: list[float]  # KL(p_new‖p_ref), batch mean; in the loss only for "reverse"
    beta: float
    method: str
    kl_js: list[float] | None = None  # JS_π(p_ref‖p_new), batch mean; in the loss for "js"

    @property
    def kl(self) -> list[float]:
        """The run's divergence term (forward KL for "sft", a monitor not in its loss)."""
        if self.method == "js" and self.kl_js is not None:
            return self.kl_js
        return self.kl_reverse if self.method == "reverse" else self.kl_forward

    @property
    def total(self) -> list[float]:
        """The optimised loss per step: task + β·KL (just the task loss for SFT)."""
        if self.method == "sft":  # no KL term; its monitor may be NaN (no reference ran)
            return list(self.task)
        return [t + self.beta * k for t, k in zip(self.task, self.kl, strict=True)]

    def __len__(self) -> int:
        return len(self.task)


@dataclass(frozen=True)
class RunResult:
    """One finished run: config, losses per step, class probabilities, model, device, time."""

    config: ExperimentConfig
    key: str  # results-cache key (run_key): resolved config + data + code fingerprint
    model_name: str
    device: str
    wall_time_s: float  # training + evaluation, excluding model loading
    label_names: tuple[str, ...]
    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[int, ...]
    history: LossHistory
    probs: dict[str, torch.Tensor] = field(repr=False)  # "<kind>/<split>" -> (N, C) float64
    cpu_threads: int | None = None  # torch's intra-op threads when it ran (None: not recorded)

    def prob(self, kind: str, split: str) -> torch.Tensor:
        """Class probabilities ``(N, C)`` of ``kind`` (reference|start|final) on ``split``."""
        return self.probs[f"{kind}/{split}"]

    def all_probs(self, kind: str) -> torch.Tensor:
        """Probabilities of ``kind`` on train then test texts, ``(N_train + N_test, C)``."""
        return torch.cat([self.prob(kind, "train"), self.prob(kind, "test")])

    def kl_to_reference(self, kind: str = "final", split: str | None = None) -> torch.Tensor:
        """Forward KL(p_ref‖p_kind) per text in nats (eval mode); ``split=None`` -> all texts."""
        ref = self.all_probs("reference") if split is None else self.prob("reference", split)
        new = self.all_probs(kind) if split is None else self.prob(kind, split)
        return kl_divergence(ref, new)

    def kl_at_start(self) -> float:
        """Largest KL(p_ref‖p_start) over all texts, eval mode: 0 for a same-start reference."""
        return float(self.kl_to_reference("start").max())

    def accuracy(self, split: str, kind: str = "final") -> float:
        """Share of ``split`` texts whose most probable class is the label."""
        labels = torch.tensor(self.train_labels if split == "train" else self.test_labels)
        if len(labels) == 0:
            return float("nan")
        return float((self.prob(kind, split).argmax(-1) == labels).double().mean())

    def summary(self, split: str = "test") -> dict[str, float | str]:
        """One table row: final task loss, KL to the reference, entropy, max prob, accuracy."""
        p = self.prob("final", split)
        train = self.prob("final", "train")
        labels = torch.tensor(self.train_labels)
        task = -torch.log(train[torch.arange(len(labels)), labels]).mean()
        return {
            "run": self.config.label,
            "method": self.config.method,
            "beta": self.config.beta,
            "task_loss_train": float(task),
            "kl_fwd_to_ref": float(self.kl_to_reference().mean()),
            f"entropy_{split}": float(entropy(p).mean()),
            f"max_prob_{split}": float(p.max(-1).values.mean()),
            "train_acc": self.accuracy("train"),
            "test_acc": self.accuracy("test"),
        }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that compute a run's numbers (torch, transformers)."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def code_fingerprint(root: Path | str | None = None) -> str:
    """Stable 12-hex-digit hash of the package source that decides a run's numbers.

    Every ``*.py`` under ``root`` (default: this package) except ``NOT_FINGERPRINTED``, in sorted
    path order, plus ``library_versions()``: editing a loss or upgrading torch reruns the runs.
    """
    root = Path(root) if root is not None else PACKAGE_ROOT
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in NOT_FINGERPRINTED:
            continue
        digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(library_versions(), sort_keys=True).encode())
    return digest.hexdigest()[:12]


def run_key(config: ExperimentConfig, data_fingerprint: str) -> str:
    """Results-cache key of one run: its config, its data and the code that computes it."""
    return config.key(data_fingerprint, code_fingerprint())


def default_results_dir() -> Path:
    """$KL_RESULTS, else ``results/`` in the repository (editable install), else in the cwd."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    repo = PACKAGE_ROOT.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "results"
    return Path.cwd() / "results"


def run_dir(results_dir: Path | str, config: ExperimentConfig, key: str) -> Path:
    """Folder of one run: ``<results_dir>/<label>-<key>``."""
    return Path(results_dir) / f"{config.label}-{key}"


def is_finished(results_dir: Path | str, config: ExperimentConfig, key: str) -> bool:
    """True if the run's folder holds a complete ``run.json`` with this key and format.

    False, not an error, when ``run.json`` is unreadable: not UTF-8, not JSON, not an object."""
    path = run_dir(results_dir, config, key) / "run.json"
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    if not isinstance(meta, dict):
        return False
    return meta.get("key") == key and meta.get("format_version") == FORMAT_VERSION


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``final`` that replaces ``final`` when the block succeeds
    (and is removed if it raises): readers never see a half-written run."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def save_run(result: RunResult, results_dir: Path | str) -> Path:
    """Write ``result`` atomically to its folder (replacing a stale one); return the folder."""
    final = run_dir(results_dir, result.config, result.key)
    with atomic_folder(final) as tmp:
        _write_run_files(tmp, result)
    return final


def _write_run_files(tmp: Path, result: RunResult) -> None:
    """history.csv, probabilities.csv, then run.json (the marker of a finished run)."""
    _write_history(tmp / "history.csv", result.history)
    _write_probs(tmp / "probabilities.csv", result)
    meta = {
        "format_version": FORMAT_VERSION,
        "key": result.key,
        "config": result.config.to_dict(),
        "model_name": result.model_name,
        "device": result.device,
        "wall_time_s": result.wall_time_s,
        "cpu_threads": result.cpu_threads,
        "label_names": list(result.label_names),
        "steps": len(result.history),
    }
    (tmp / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_run(results_dir: Path | str, config: ExperimentConfig, key: str) -> RunResult:
    """Read a finished run back (raises FileNotFoundError if it is not finished)."""
    if not is_finished(results_dir, config, key):
        raise FileNotFoundError(f"no finished run {config.label}-{key} in {results_dir}")
    folder = run_dir(results_dir, config, key)
    meta = json.loads((folder / "run.json").read_text())
    history = _read_history(folder / "history.csv", config)
    texts, labels, probs = _read_probs(folder / "probabilities.csv")
    return RunResult(
        config=ExperimentConfig.from_dict(meta["config"]),
        key=meta["key"],
        model_name=meta["model_name"],
        device=meta["device"],
        wall_time_s=float(meta["wall_time_s"]),
        label_names=tuple(meta["label_names"]),
        train_texts=texts["train"],
        train_labels=labels["train"],
        test_texts=texts["test"],
        test_labels=labels["test"],
        history=history,
        probs=probs,
        cpu_threads=meta.get("cpu_threads"),
    )


def summary_table(results: Sequence[RunResult], split: str = "test"):
    """A pandas DataFrame with one ``RunResult.summary`` row per run (ValueError if none)."""
    import pandas as pd

    if not results:
        raise ValueError("summary_table needs at least one run, got no results")
    return pd.DataFrame([r.summary(split) for r in results]).set_index("run")


def _write_history(path: Path, history: LossHistory) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        header = ["step", "epoch", "task_loss", "kl_forward", "kl_reverse", "total_loss"]
        h = history
        columns = [h.epoch, h.task, h.kl_forward, h.kl_reverse, h.total]
        if h.kl_js is not None:
            header.append("kl_js")
            columns.append(h.kl_js)
        writer.writerow(header)
        for step, values in enumerate(zip(*columns, strict=True)):
            writer.writerow([step, values[0], *(repr(v) for v in values[1:])])


def _read_history(path: Path, config: ExperimentConfig) -> LossHistory:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return LossHistory(
        epoch=[int(r["epoch"]) for r in rows],
        task=[float(r["task_loss"]) for r in rows],
        kl_forward=[float(r["kl_forward"]) for r in rows],
        kl_reverse=[float(r["kl_reverse"]) for r in rows],
        beta=config.beta,
        method=config.method,
        kl_js=[float(r["kl_js"]) for r in rows] if rows and "kl_js" in rows[0] else None,
    )


def _write_probs(path: Path, result: RunResult) -> None:
    n_classes = len(result.label_names)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "split", "index", "label", "text"]
            + [f"p_{name}" for name in result.label_names]
        )
        for kind in PROB_KINDS:
            for split in ("train", "test"):
                texts = result.train_texts if split == "train" else result.test_texts
                labels = result.train_labels if split == "train" else result.test_labels
                table = result.prob(kind, split).tolist()
                for i, (text, label, row) in enumerate(zip(texts, labels, table, strict=True)):
                    assert len(row) == n_classes
                    writer.writerow([kind, split, i, label, text] + [repr(p) for p in row])


def _read_probs(path: Path):
    texts: dict[str, list[str]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    rows: dict[str, list[list[float]]] = {}
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        n_classes = len(header) - 5
        for kind, split, _, label, text, *values in reader:
            rows.setdefault(f"{kind}/{split}", []).append([float(v) for v in values])
            if kind == PROB_KINDS[0]:
                texts[split].append(text)
                labels[split].append(int(label))
    probs = {
        k: torch.tensor(v, dtype=torch.float64).reshape(-1, n_classes) for k, v in rows.items()
    }
    for kind in PROB_KINDS:
        for split in ("train", "test"):
            probs.setdefault(f"{kind}/{split}", torch.zeros(0, n_classes, dtype=torch.float64))
    return (
        {k: tuple(v) for k, v in texts.items()},
        {k: tuple(v) for k, v in labels.items()},
        probs,
    )
