"""Tests for kl_helpers.engine.config: defaults, validation, stable keys, overrides."""

from __future__ import annotations

import pytest

from kl_helpers.engine.config import (
    ARTICLE_BETAS,
    ARTICLE_EPOCHS,
    QUICK_EPOCHS,
    ExperimentConfig,
    article_protocol,
    protocol_configs,
)


def test_defaults_are_the_article_protocol():
    c = ExperimentConfig()
    assert (c.lr, c.epochs, c.batch_size, c.max_length) == (1e-4, 100, 8, 128)
    assert c.method == "sft" and c.beta == 0 and c.reference == "same_start"


def test_key_is_stable_and_sensitive_to_every_field():
    a, b = (
        ExperimentConfig(method="forward", beta=0.3),
        ExperimentConfig(method="forward", beta=0.3),
    )
    assert a.key() == b.key() and len(a.key()) == 12
    changed = {
        "beta": 0.5,
        "lr": 2e-4,
        "epochs": 99,
        "batch_size": 4,
        "max_length": 64,
        "seed": 1,
        "model": "minilm",
        "reference": "independent_head",
        "padding": "max_length",
        "cache_reference": False,
        "optimizer": "fused",
        "precision": "fp32",
        "shuffle": False,
    }
    keys = {a.replace(**{k: v}).key() for k, v in changed.items()}
    assert len(keys) == len(changed) and a.key() not in keys
    assert a.key("data-1") != a.key("data-2") != a.key()


def test_split_seed_is_not_a_config_field():
    # The split belongs to the data (its fingerprint is in the results key), not to the run.
    assert "split_seed" not in ExperimentConfig().to_dict()
    with pytest.raises(ValueError, match="split_seed"):
        ExperimentConfig.from_dict({"split_seed": 42})


def test_replace_and_dict_round_trip():
    c = ExperimentConfig().replace(method="reverse", beta=0.7, seed=3)
    assert (c.method, c.beta, c.seed) == ("reverse", 0.7, 3)
    assert ExperimentConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown ExperimentConfig fields"):
        ExperimentConfig.from_dict({**c.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "kl"}, "method must be one of"),
        ({"method": "sft", "beta": 0.1}, "beta must be 0"),
        ({"method": "forward", "beta": 0.0}, "needs beta > 0"),
        ({"method": "reverse", "beta": -1.0}, "needs beta > 0"),
        ({"reference": "other"}, "reference must be one of"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
    ],
)
def test_bad_values_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(**changes)


def test_protocol_configs_are_the_articles_eleven_runs():
    runs = protocol_configs(ExperimentConfig(epochs=5))
    assert [r.label for r in runs] == ["sft"] + [f"forward_b{b:g}" for b in ARTICLE_BETAS] + [
        f"reverse_b{b:g}" for b in ARTICLE_BETAS
    ]
    assert all(r.epochs == 5 for r in runs)
    assert len({r.key() for r in runs}) == 11


def test_article_protocol_full_and_quick(monkeypatch):
    full, quick = article_protocol(False), article_protocol(True, model="minilm", seed=3)
    assert full == ExperimentConfig() and full.epochs == ARTICLE_EPOCHS == 100
    assert quick == ExperimentConfig(epochs=QUICK_EPOCHS, model="minilm", seed=3)
    assert QUICK_EPOCHS < ARTICLE_EPOCHS
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("KL_QUICK", "1")
    assert article_protocol().epochs == QUICK_EPOCHS  # the mode follows $KL_QUICK by default
    monkeypatch.setenv("KL_QUICK", "0")
    assert article_protocol().epochs == ARTICLE_EPOCHS


@pytest.mark.parametrize(
    ("args", "changes", "message"),
    [
        (("yes",), {}, "quick must be True, False or None, got 'yes'"),
        ((1,), {}, "quick must be True, False or None, got 1"),
        ((True,), {"epochs": 5}, "decides epochs"),
        ((True,), {"beta": -1.0}, "beta"),
    ],
)
def test_article_protocol_bad_input(args, changes, message):
    with pytest.raises(ValueError, match=message):
        article_protocol(*args, **changes)
