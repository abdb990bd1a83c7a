"""Offline-first model resolution: explicit choice wins, cache/Hub rules, bounded Hub probe."""

import time

import pytest
import torch

from kl_helpers import models
from kl_helpers.models import BERT_BASE, MINILM, hub_reachable, resolve_model


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("KL_MODEL", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_bundled_minilm_has_model_files():
    path = models.bundled_minilm_path()
    assert (path / "model.safetensors").is_file() and (path / "vocab.txt").is_file()


@pytest.mark.parametrize("alias", ["minilm", "bundled", "all-MiniLM-L6-v2"])
def test_explicit_minilm(alias):
    choice = resolve_model(alias)
    assert choice.name == MINILM and choice.local_files_only and "argument" in choice.reason


def test_env_var_choice(monkeypatch):
    monkeypatch.setenv("KL_MODEL", "minilm")
    assert "$KL_MODEL" in resolve_model().reason


def test_falls_back_when_hub_unreachable(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=BERT_BASE: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0, repo_id=BERT_BASE: False)
    choice = resolve_model()
    assert choice.name == MINILM and "offline fallback" in choice.reason


def test_prefers_cached_bert(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=BERT_BASE: True)
    choice = resolve_model()
    assert choice.name == BERT_BASE and choice.local_files_only


def test_uses_hub_when_it_answers(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=BERT_BASE: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0, repo_id=BERT_BASE: True)
    choice = resolve_model()
    assert choice.name == BERT_BASE and not choice.local_files_only


def test_hub_probe_is_bounded_even_if_the_network_hangs(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(models.urllib.request, "urlopen", hang)
    start = time.perf_counter()
    assert hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 2.0


def test_hub_probe_respects_offline_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models.urllib.request, "urlopen", lambda *a, **k: pytest.fail("probed"))
    assert hub_reachable() is False


def test_load_classifier_is_seeded_and_validates():
    choice = resolve_model("minilm")
    a = models.load_classifier(choice, num_labels=3, seed=5).classifier.weight
    b = models.load_classifier(choice, num_labels=3, seed=5).classifier.weight
    assert a.shape == (3, 384) and torch.equal(a, b)
    with pytest.raises(ValueError, match="num_labels"):
        models.load_classifier(choice, num_labels=1)


def test_tokenizer_is_uncased_bert_vocabulary():
    tok = models.load_tokenizer(resolve_model("minilm"))
    assert tok.vocab_size == 30522
    assert tok("Hello")["input_ids"] == tok("hello")["input_ids"]


def test_a_missing_folder_says_so_and_lists_the_known_names(monkeypatch):
    monkeypatch.setattr(models.urllib.request, "urlopen", lambda *a, **k: pytest.fail("probed"))
    with pytest.raises(ValueError, match="neither a folder nor a known model") as err:
        resolve_model("/no/such/folder")
    assert "'/no/such/folder'" in str(err.value)
    assert all(name in str(err.value) for name in ("minilm", MINILM, BERT_BASE))


def test_an_unknown_hub_name_offline_says_so(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=BERT_BASE: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0, repo_id=BERT_BASE: False)
    monkeypatch.setenv("KL_MODEL", "minilmm")  # a typo
    with pytest.raises(ValueError, match=r"'minilmm' \(chosen by \$KL_MODEL\) is neither"):
        resolve_model()


def test_an_explicit_hub_name_is_accepted_when_cached_or_reachable(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=BERT_BASE: True)
    assert resolve_model(BERT_BASE).local_files_only
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=BERT_BASE: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0, repo_id=BERT_BASE: True)
    assert not resolve_model(BERT_BASE).local_files_only
    assert resolve_model(str(tmp_path)).source == str(tmp_path)  # an existing folder


def test_choice_resolves_back_to_the_same_model(monkeypatch, tmp_path):
    # A config built from a choice must load that model again: a local folder's *name* would not
    # (notebook 06 on KL_MODEL=<folder> once failed this way).
    folder = tmp_path / "my-bert"
    folder.mkdir()
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: False)
    for spec in ("minilm", str(folder)):
        first = models.resolve_model(spec)
        again = models.resolve_model(first.choice)
        assert (again.name, again.source) == (first.name, first.source)
    monkeypatch.setattr(models, "bert_in_local_cache", lambda *a, **k: True)
    hub = models.resolve_model("bert-base-uncased")
    assert models.resolve_model(hub.choice).source == "bert-base-uncased"
