"""kl_helpers.llm.config at its edges (issue 30): TokenKLConfig's defaults against the values its
comments explain (the truncated tree enumerating k^length sequences, gradient sample sizes in
ascending order, two contexts), frozen and hashable, replace changing only what it is given and
refusing unknown fields; QUICK differing from the full config only in the fields that shrink the
work; token_kl_config with quick True/False/0/1 and, with quick None, $KL_QUICK and $CI as
runtime.quick_mode reads them."""

from __future__ import annotations

import dataclasses

import pytest

from kl_helpers.llm.config import PIRATE, QUICK, TokenKLConfig, token_kl_config

SHRUNK = {"mode", "questions", "n_samples", "max_new_tokens", "tree_k", "tree_length",
          "grad_sample_sizes", "grad_repeats", "grid"}  # fmt: skip


def test_defaults_are_what_the_comments_say():
    full = TokenKLConfig()
    assert full.mode == "full" and full.llm is None and full.ref_system is None
    assert full.policy_system == PIRATE and "pirate" in PIRATE
    assert full.tree_k**full.tree_length == 64  # sequences in the enumerated tree
    assert QUICK.tree_k**QUICK.tree_length == 9
    for config in (full, QUICK):
        sizes = config.grad_sample_sizes
        assert list(sizes) == sorted(set(sizes)) and sizes[0] >= 1
        assert len(config.contexts) == 2 and config.contexts[0] != config.contexts[1]
        assert config.grid % 2 == 1  # an odd grid has its centre on a point
        assert all(isinstance(q, str) and q for q in config.questions)


def test_quick_shrinks_only_the_work():
    full = TokenKLConfig()
    changed = {f.name for f in dataclasses.fields(TokenKLConfig)
               if getattr(full, f.name) != getattr(QUICK, f.name)}  # fmt: skip
    assert changed == SHRUNK
    for name in SHRUNK - {"mode", "questions", "grad_sample_sizes"}:
        assert getattr(QUICK, name) < getattr(full, name), name
    assert set(QUICK.questions) < set(full.questions)
    assert set(QUICK.grad_sample_sizes) < set(full.grad_sample_sizes)


def test_frozen_hashable_and_replace():
    full = TokenKLConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.n_samples = 1
    assert hash(full) == hash(TokenKLConfig()) and full == TokenKLConfig()
    edited = full.replace(n_samples=3, seed=7)
    assert (edited.n_samples, edited.seed) == (3, 7) and full.n_samples == 24
    assert dataclasses.replace(edited, n_samples=24, seed=0) == full
    assert full.replace() == full and full.replace() is not full
    with pytest.raises(TypeError):
        full.replace(n_sample=3)


@pytest.mark.parametrize(("quick", "want"), [(True, QUICK), (1, QUICK), (False, None), (0, None)])
def test_token_kl_config_explicit(quick, want, monkeypatch):
    monkeypatch.setenv("KL_QUICK", "0" if want is QUICK else "1")  # ignored when quick is given
    got = token_kl_config(quick)
    assert got is QUICK if want is QUICK else got == TokenKLConfig()


@pytest.mark.parametrize(
    ("env", "quick"),
    [({"KL_QUICK": "1"}, True), ({"KL_QUICK": " Yes "}, True), ({"KL_QUICK": "0", "CI": "true"},
     False), ({"CI": "true"}, True), ({"CI": "0"}, False), ({}, False)],
)  # fmt: skip
def test_token_kl_config_reads_the_environment(env, quick, monkeypatch):
    for name in ("KL_QUICK", "CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    got = token_kl_config()
    assert (got is QUICK) == quick and got.mode == ("quick" if quick else "full")
