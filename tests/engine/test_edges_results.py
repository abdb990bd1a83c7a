"""kl_helpers.engine.results at its edges (issue 30): LossHistory.kl/total for every method at
β = 0, 5e-324 and 1e300 against exact fractions, NaN monitors of SFT, "js" without kl_js;
RunResult's probabilities, KL and accuracy against float64 loops (zero probabilities on either
side, an empty test split); save_run/load_run round trips bit for bit with texts holding commas,
quotes, CR, LF, CRLF, tabs, "", "=1+1" and non-ASCII, probabilities 0, 5e-324 and 1 - 2**-53,
NaN/inf/-0.0 losses, float32 tables, kl_js present or absent; is_finished on a missing, corrupt,
non-UTF-8, non-object or directory run.json and on a wrong key or format; atomic_folder on
success, an exception, KeyboardInterrupt, a stale temporary folder and a missing parent;
code_fingerprint against sha256 of the files (str/Path roots, excluded folders, non-.py files,
library versions); run_key; default_results_dir with $KL_RESULTS set, empty, and without a
repository; summary_table against summary, and with no results."""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction

import pytest
import torch

from kl_helpers.engine import results
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.results import (
    FORMAT_VERSION,
    LossHistory,
    RunResult,
    atomic_folder,
    code_fingerprint,
    default_results_dir,
    is_finished,
    load_run,
    run_dir,
    run_key,
    save_run,
    summary_table,
)

NAMES = ("negative", "neutral", "positive")
TEXTS = ("a, b", 'say "hi"', "line\nbreak", "cr\rlf\r\n", "tab\there", "", "=1+1", "naïve 😀")


def history(
    method="forward", beta=0.5, js=None, task=(1.0, 0.5), fwd=(0.25, 0.125), rev=(2.0, 1.0)
):
    return LossHistory([0, 1], list(task), list(fwd), list(rev), beta, method, js)


@pytest.mark.parametrize("beta", [0.0, 5e-324, 0.3, 1e300])
@pytest.mark.parametrize("method", ["forward", "reverse", "js", "sft"])
def test_loss_history_kl_and_total_against_fractions(method, beta):
    js = [0.75, 0.375] if method == "js" else None
    h = history(method, beta, js)
    kl = {"forward": h.kl_forward, "reverse": h.kl_reverse, "js": js, "sft": h.kl_forward}[method]
    assert h.kl == kl and len(h) == 2
    if method == "sft":
        assert h.total == h.task
    else:
        exact = [
            Fraction(t) + Fraction(beta) * Fraction(k) for t, k in zip(h.task, kl, strict=True)
        ]
        assert h.total == [float(x) for x in exact]


def test_loss_history_sft_nan_monitor_and_js_without_its_column():
    sft = history("sft", 0.0, fwd=(math.nan, math.nan))
    assert sft.total == [1.0, 0.5]
    assert history("js", 1.0).kl == [0.25, 0.125]  # no kl_js recorded: the forward monitor
    assert history(rev=(math.inf, 0.0), method="reverse", beta=0.0).total[0] != 1.0  # 0·inf = NaN


def probs_table(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def result(config=None, train=TEXTS[:5], test=TEXTS[5:], dtype=torch.float64, hist=None, key="abc"):
    config = config or ExperimentConfig(method="forward", beta=0.3)
    n, m = len(train), len(test)
    tiny, top = 5e-324, 1 - 2**-53
    base = [[tiny, 0.0, top], [0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]]
    rows = [base[i % 4] for i in range(n + m)]
    shifted = [base[(i + 1) % 4] for i in range(n + m)]
    probs = {}
    for kind, table in (("reference", rows), ("start", rows), ("final", shifted)):
        probs[f"{kind}/train"] = probs_table(table[:n], dtype).reshape(n, 3)
        probs[f"{kind}/test"] = probs_table(table[n:], dtype).reshape(m, 3)
    return RunResult(
        config=config,
        key=key,
        model_name="tiny",
        device="cpu",
        wall_time_s=0.1 + 0.2,
        label_names=NAMES,
        train_texts=tuple(train),
        train_labels=tuple(i % 3 for i in range(n)),
        test_texts=tuple(test),
        test_labels=tuple((i + 1) % 3 for i in range(m)),
        history=hist or history(config.method, config.beta),
        probs=probs,
        cpu_threads=3,
    )


def kl64(p, q):
    """KL(p‖q) per row, float64 loop: 0·log 0 = 0, p > 0 = q gives inf."""
    out = []
    for pr, qr in zip(p.tolist(), q.tolist(), strict=True):
        total = 0.0
        for a, b in zip(pr, qr, strict=True):
            if a > 0:
                total += math.inf if b == 0 else a * (math.log(a) - math.log(b))
        out.append(total)
    return out


def test_probabilities_kl_and_accuracy_against_loops():
    r = result()
    assert torch.equal(
        r.all_probs("final"), torch.cat([r.prob("final", "train"), r.prob("final", "test")])
    )
    ref, fin = r.all_probs("reference"), r.all_probs("final")
    got = r.kl_to_reference().tolist()
    for g, e in zip(got, kl64(ref, fin), strict=True):
        assert g == e or math.isclose(g, e, rel_tol=1e-12, abs_tol=1e-300)
    assert r.kl_to_reference("final", "test").tolist() == got[5:]
    assert r.kl_at_start() == 0.0
    for split, labels in (("train", r.train_labels), ("test", r.test_labels)):
        table = r.prob("final", split).tolist()
        hits = [
            max(range(3), key=row.__getitem__) == y for row, y in zip(table, labels, strict=True)
        ]
        assert r.accuracy(split) == sum(hits) / len(hits)


def test_empty_test_split_gives_nan_accuracy():
    r = result(train=TEXTS, test=())
    assert r.prob("final", "test").shape == (0, 3) and math.isnan(r.accuracy("test"))
    assert r.kl_to_reference(split="test").shape == (0,)


def same_floats(a, b):
    return [x.hex() if not math.isnan(x) else "nan" for x in a] == [
        x.hex() if not math.isnan(x) else "nan" for x in b
    ]


@pytest.mark.parametrize("js", [None, [0.1, -0.0]])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_save_load_round_trip_is_bit_exact(tmp_path, js, dtype):
    config = ExperimentConfig(method="js", beta=0.7) if js else ExperimentConfig()
    losses = [math.nan, 1e-310], [math.inf, -0.0], [0.1 + 0.2, 1e300]
    hist = LossHistory([0, 3], *losses, config.beta, config.method, js)
    r = result(config, train=TEXTS[:6], test=TEXTS[6:], dtype=dtype, hist=hist)
    folder = save_run(r, tmp_path)
    assert folder == tmp_path / f"{config.label}-abc"
    back = load_run(str(tmp_path), config, "abc")
    assert back.train_texts == TEXTS[:6] and back.test_texts == TEXTS[6:]
    assert back.train_labels == r.train_labels and back.test_labels == r.test_labels
    assert back.label_names == NAMES and back.config == config and back.cpu_threads == 3
    assert back.wall_time_s == 0.1 + 0.2 and back.model_name == "tiny" and back.device == "cpu"
    assert back.history.epoch == [0, 3]
    for name in ("task", "kl_forward", "kl_reverse", "total"):
        assert same_floats(getattr(back.history, name), getattr(hist, name)), name
    assert (back.history.kl_js is None) == (js is None)
    if js:
        assert same_floats(back.history.kl_js, js)
    for name, table in r.probs.items():
        assert back.probs[name].dtype == torch.float64
        assert torch.equal(back.probs[name], table.double()), name


def test_round_trip_with_no_test_texts(tmp_path):
    r = result(train=TEXTS, test=())
    back = load_run(tmp_path, r.config, save_run(r, tmp_path).name.rsplit("-", 1)[1])
    assert back.test_texts == () and back.prob("final", "test").shape == (0, 3)


def test_load_run_refuses_an_unfinished_run(tmp_path):
    config = ExperimentConfig()
    with pytest.raises(FileNotFoundError, match="no finished run sft-k"):
        load_run(tmp_path, config, "k")


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"key": "k", "format_version": 1', b"\xff\xfe{}", b"[1, 2]", b'"k"', b"null"],
)
def test_is_finished_is_false_for_a_corrupt_run_json(tmp_path, content):
    # failed before the fix for non-UTF-8 bytes (UnicodeDecodeError) and JSON that is not an
    # object (AttributeError: 'list' object has no attribute 'get')
    config = ExperimentConfig()
    folder = run_dir(tmp_path, config, "k")
    folder.mkdir(parents=True)
    (folder / "run.json").write_bytes(content)
    assert is_finished(tmp_path, config, "k") is False


def test_is_finished_checks_key_format_and_file(tmp_path):
    config = ExperimentConfig()
    assert not is_finished(tmp_path / "absent", config, "k")
    folder = run_dir(tmp_path, config, "k")
    (folder / "run.json").mkdir(parents=True)  # a folder named run.json
    assert not is_finished(tmp_path, config, "k")
    (folder / "run.json").rmdir()
    for meta, expected in [
        ({"key": "k", "format_version": FORMAT_VERSION}, True),
        ({"key": "other", "format_version": FORMAT_VERSION}, False),
        ({"key": "k", "format_version": FORMAT_VERSION + 1}, False),
        ({"key": "k"}, False),
    ]:
        (folder / "run.json").write_text(json.dumps(meta))
        assert is_finished(str(tmp_path), config, "k") is expected


def test_atomic_folder_replaces_only_on_success(tmp_path):
    final = tmp_path / "deep" / "run"
    with atomic_folder(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".run.tmp-")
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    for error in (KeyError, KeyboardInterrupt):
        with pytest.raises(error), atomic_folder(final) as tmp:
            (tmp / "b").write_text("2")
            raise error("inside")
        assert sorted(p.name for p in final.iterdir()) == ["a"]
        assert [p.name for p in final.parent.iterdir()] == ["run"]
    stale = final.with_name(tmp.name)
    stale.mkdir()
    (stale / "leftover").write_text("x")
    with atomic_folder(final) as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["c"]
    assert [p.name for p in final.parent.iterdir()] == ["run"]


def test_code_fingerprint_against_sha256_of_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "library_versions", lambda: {"torch": "1", "transformers": "2"})
    files = {"b.py": b"x = 1\n", "a/c.py": b"\xff", "plotting/p.py": b"p", "notebook/n.py": b"n"}
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    (tmp_path / "data.csv").write_text("ignored")
    digest = hashlib.sha256()
    for name in ("a/c.py", "b.py"):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    digest.update(json.dumps({"torch": "1", "transformers": "2"}, sort_keys=True).encode())
    expected = digest.hexdigest()[:12]
    assert code_fingerprint(tmp_path) == code_fingerprint(str(tmp_path)) == expected
    (tmp_path / "plotting/p.py").write_bytes(b"changed")
    (tmp_path / "data.csv").write_text("changed")
    assert code_fingerprint(tmp_path) == expected
    (tmp_path / "b.py").write_bytes(b"x = 2\n")
    assert code_fingerprint(tmp_path) != expected
    monkeypatch.setattr(results, "library_versions", lambda: {"torch": "9", "transformers": "2"})
    assert code_fingerprint(tmp_path) != expected
    assert set(results.library_versions()) == {"torch", "transformers"}


def test_run_key_is_the_config_key_of_data_and_code(monkeypatch):
    monkeypatch.setattr(results, "code_fingerprint", lambda: "c0de")
    config = ExperimentConfig(method="reverse", beta=1e-300)
    assert run_key(config, "data") == config.key("data", "c0de")
    assert run_key(config, "data") != run_key(config, "dat")
    assert run_key(config, "data") != run_key(config.replace(beta=2e-300), "data")


def test_default_results_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KL_RESULTS", str(tmp_path / "x"))
    assert default_results_dir() == tmp_path / "x"
    monkeypatch.setenv("KL_RESULTS", "")
    assert default_results_dir() == results.PACKAGE_ROOT.parent / "results"
    monkeypatch.setattr(results, "PACKAGE_ROOT", tmp_path / "site" / "kl_helpers")
    monkeypatch.chdir(tmp_path)
    assert default_results_dir() == tmp_path / "results"


def test_summary_table_rows_are_summaries():
    runs = [result(), result(ExperimentConfig(method="reverse", beta=2.0))]
    table = summary_table(runs, split="train")
    assert list(table.index) == ["forward_b0.3", "reverse_b2"]
    for r in runs:
        row = r.summary("train")
        got = table.loc[row.pop("run")].to_dict()
        assert got.keys() == row.keys()
        for k, v in row.items():
            assert got[k] == v or (isinstance(v, float) and math.isnan(v) and math.isnan(got[k]))
    # failed before the fix: pandas' KeyError 'run'
    with pytest.raises(ValueError, match="no results"):
        summary_table([])
