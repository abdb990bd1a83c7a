"""kl_helpers.models at its edges (issue 30), all offline: ModelChoice's text and ``choice`` for
the bundled MiniLM, a folder and a Hub id; bert_in_local_cache against a Hugging Face cache laid
out in tmp_path (config with safetensors, with .bin, alone, marked missing, another repo);
hub_reachable for every $HF_HUB_OFFLINE value huggingface_hub's own parser reads (1, ON, yes,
TRUE, 0, off, no, FALSE, ""), a Hub answering 200, 404, an exception or nothing before the
deadline, an endpoint with a trailing slash; resolve_model for every alias in any case, "" and
None, $KL_MODEL, ~ folders, ids that are paths or have two slashes, cached, reachable and
unreachable ids, and the default rule's three outcomes; load_classifier with num_labels 1/0."""

from __future__ import annotations

import time

import pytest
from huggingface_hub import constants

from kl_helpers import models
from kl_helpers.models import (
    BERT_BASE,
    MINILM,
    ModelChoice,
    bert_in_local_cache,
    bundled_minilm_path,
    hub_reachable,
    load_classifier,
    resolve_model,
)


def test_model_choice_text_and_choice():
    minilm = ModelChoice(MINILM, "/site/gt/model", True, "chosen by argument")
    assert str(minilm) == f"{MINILM} (chosen by argument)" and minilm.choice == MINILM
    folder = ModelChoice("mine", "/data/mine", True, "local folder")
    assert folder.choice == "/data/mine"
    assert ModelChoice(BERT_BASE, BERT_BASE, False, "hub").choice == BERT_BASE


def fake_cache(root, repo, files, missing=()):
    """A Hugging Face cache with one snapshot of ``repo`` holding ``files``."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snap = folder / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for name in files:
        (snap / name).write_text("{}")
    if missing:
        (folder / ".no_exist" / "abc123").mkdir(parents=True)
        for name in missing:
            (folder / ".no_exist" / "abc123" / name).write_text("")


@pytest.mark.parametrize(
    ("files", "missing", "expected"),
    [
        (("config.json", "model.safetensors"), (), True),
        (("config.json", "pytorch_model.bin"), (), True),
        (("config.json",), (), False),
        (("config.json",), ("model.safetensors", "pytorch_model.bin"), False),
        (("model.safetensors",), ("config.json",), False),
        ((), (), False),
    ],
)
def test_bert_in_local_cache(tmp_path, monkeypatch, files, missing, expected):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    fake_cache(tmp_path, BERT_BASE, files, missing)
    assert bert_in_local_cache() is expected
    assert bert_in_local_cache(BERT_BASE) is expected
    assert bert_in_local_cache("owner/other-model") is False


class Answer:
    def __init__(self, status):
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("value", ["1", "ON", "yes", "TRUE", "true", "0", "off", "no", "FALSE", ""])
def test_hub_reachable_reads_offline_as_huggingface_hub_does(monkeypatch, value):
    # failed before the fix for "off", "no" and "FALSE": huggingface_hub reads them as online,
    # hub_reachable read every value but "0", "", "false" and "False" as offline
    asked = []
    monkeypatch.setattr(
        models.urllib.request, "urlopen", lambda r, timeout: asked.append(r) or Answer(200)
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    offline = constants._is_true(value)
    assert hub_reachable(1.0) is (not offline)
    assert len(asked) == (0 if offline else 1)


@pytest.mark.parametrize(("status", "expected"), [(200, True), (302, True), (404, False)])
def test_hub_reachable_answers(monkeypatch, status, expected):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.example/")
    seen = []

    def urlopen(request, timeout):
        seen.append((request.full_url, request.get_method(), timeout))
        return Answer(status)

    monkeypatch.setattr(models.urllib.request, "urlopen", urlopen)
    assert hub_reachable(0.5, "owner/name") is expected
    assert seen == [("https://hub.example/api/models/owner/name", "HEAD", 0.5)]


def test_hub_reachable_failures_and_deadline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def broken(request, timeout):
        raise OSError("no route")

    monkeypatch.setattr(models.urllib.request, "urlopen", broken)
    assert hub_reachable(0.5) is False

    def hangs(request, timeout):
        time.sleep(1.0)
        return Answer(200)

    monkeypatch.setattr(models.urllib.request, "urlopen", hangs)
    start = time.perf_counter()
    assert hub_reachable(0.05) is False
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "alias", ["minilm", "MiniLM", "BUNDLED", MINILM, "sentence-transformers/all-MiniLM-L6-v2"]
)
def test_resolve_model_aliases(monkeypatch, alias):
    monkeypatch.delenv("KL_MODEL", raising=False)
    choice = resolve_model(alias)
    assert choice == ModelChoice(MINILM, str(bundled_minilm_path()), True, "chosen by argument")
    monkeypatch.setenv("KL_MODEL", alias)
    assert resolve_model().reason == "chosen by $KL_MODEL"
    assert resolve_model("").reason == "chosen by $KL_MODEL"  # "" is no choice


def test_resolve_model_folders_and_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("KL_MODEL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my-bert").mkdir()
    for given in (str(tmp_path / "my-bert"), "~/my-bert"):
        assert resolve_model(given) == ModelChoice(
            "my-bert", str(tmp_path / "my-bert"), True, "local folder chosen by argument"
        )
    calls = []
    monkeypatch.setattr(models, "hub_reachable", lambda t, r: calls.append(r) or r == "up/model")
    monkeypatch.setattr(models, "bert_in_local_cache", lambda r=BERT_BASE: r == "cached/model")
    for path in ("./missing", "~/missing", "/no/such", "a/b/c", "a\\b", "bad name!"):
        with pytest.raises(ValueError, match="neither a folder nor a known model"):
            resolve_model(path)
    assert calls == []  # none of these reached the Hub probe
    assert resolve_model("cached/model") == ModelChoice(
        "cached/model", "cached/model", True, "chosen by argument, in the local cache"
    )
    assert resolve_model("up/model", hub_timeout=0.25).local_files_only is False
    with pytest.raises(ValueError, match=r"did not confirm it within 0.25 s"):
        resolve_model("down/model", hub_timeout=0.25)
    assert calls == ["up/model", "down/model"]


@pytest.mark.parametrize(
    ("cached", "up", "name"),
    [(True, False, BERT_BASE), (False, True, BERT_BASE), (False, False, MINILM)],
)
def test_resolve_model_default_rule(monkeypatch, cached, up, name):
    monkeypatch.delenv("KL_MODEL", raising=False)
    monkeypatch.setattr(models, "bert_in_local_cache", lambda r=BERT_BASE: cached)
    monkeypatch.setattr(models, "hub_reachable", lambda t, r=BERT_BASE: up)
    choice = resolve_model(None, hub_timeout=0.5)
    assert choice.name == name and choice.local_files_only is (not up or cached)
    if name == MINILM:
        assert "limit 0.5 s" in choice.reason and choice.source == str(bundled_minilm_path())


@pytest.mark.parametrize("num_labels", [1, 0, -1])
def test_load_classifier_refuses_fewer_than_two_labels(num_labels):
    with pytest.raises(ValueError, match="num_labels must be >= 2"):
        load_classifier(ModelChoice("x", "/nowhere", True, "test"), num_labels)
