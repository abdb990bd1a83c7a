"""kl_helpers.engine.config at its edges (issue 30): one key per run whatever the spelling of its
numbers (1 and 1.0, NumPy ints and floats), β at 0 and ∞ per method, NaN/∞/negative/fractional
values for every numeric field, bools where numbers go and numbers where bools go, from_dict and
replace round trips, protocol_configs with its keyword; check_method on every method, the old names
(fkl, rkl: the new name said), other case, blanks, None and numbers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from kl_helpers.engine.config import (
    ARTICLE_BETAS,
    BOOL_FIELDS,
    FLOAT_FIELDS,
    INT_FIELDS,
    METHODS,
    ExperimentConfig,
    check_method,
    protocol_configs,
)


def test_one_key_per_run_whatever_the_spelling():
    """beta=1 and beta=1.0 were two keys (two cache entries for one run), as were
    epochs=np.int64(3) and 3."""
    base = ExperimentConfig(method="forward", beta=1.0, epochs=3)
    for spelled in (
        ExperimentConfig(method="forward", beta=1, epochs=3),
        ExperimentConfig(method="forward", beta=np.float64(1.0), epochs=np.int64(3)),
        ExperimentConfig(method="forward", beta=np.float32(1.0), epochs=np.int32(3)),
    ):
        assert spelled == base and spelled.key() == base.key()
        assert type(spelled.beta) is float and type(spelled.epochs) is int
    assert ExperimentConfig(shuffle=np.bool_(False)).key() == ExperimentConfig(shuffle=False).key()
    assert base.key("data") != base.key() and base.key("a") == base.key("a")


def test_fields_are_canonical_types():
    config = ExperimentConfig()
    for name in FLOAT_FIELDS:
        assert type(getattr(config, name)) is float
    for name in INT_FIELDS:
        assert type(getattr(config, name)) is int
    for name in BOOL_FIELDS:
        assert type(getattr(config, name)) is bool
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    assert set(FLOAT_FIELDS + INT_FIELDS + BOOL_FIELDS) <= names


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"method": "forward", "beta": math.inf}, "beta must be finite"),
        ({"method": "forward", "beta": math.nan}, "beta must be finite"),
        ({"method": "forward", "beta": True}, "beta must be one real number"),
        ({"method": "forward", "beta": "0.3"}, "beta must be one real number"),
        ({"method": "forward", "beta": 0.0}, "needs beta > 0"),
        ({"method": "forward", "beta": -0.1}, "needs beta > 0"),
        ({"beta": 1e-300}, "beta must be 0"),
        ({"lr": math.inf}, "lr must be finite"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"weight_decay": -0.01}, "weight_decay must be >= 0"),
        ({"epochs": 2.5}, "epochs must be an int"),
        ({"epochs": math.nan}, "epochs must be an int"),
        ({"epochs": True}, "epochs must be an int"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 8.0}, "batch_size must be an int"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"reference_seed": 1.5}, "reference_seed must be an int"),
        ({"shuffle": 1}, "shuffle must be True or False"),
        ({"cache_reference": "yes"}, "cache_reference must be True or False"),
        ({"method": "js", "beta": 0.5, "js_weight": 1.5}, "js_weight"),
        ({"method": "kl"}, "method"),
        ({"padding": "longest"}, "padding must be one of"),
    ],
)
def test_values_outside_a_field(changes, match):
    """β = ∞, lr = ∞, epochs = 2.5 or NaN, weight_decay = -0.01 and seed = -1 were accepted (and
    failed, or trained on nonsense, later); β = True ran as 1."""
    with pytest.raises(ValueError, match=match):
        ExperimentConfig(**changes)


def test_beta_limits_per_method():
    assert ExperimentConfig(method="forward", beta=5e-324).beta == 5e-324
    assert ExperimentConfig(method="reverse", beta=1e300).label == "reverse_b1e+300"
    assert ExperimentConfig(beta=0).beta == 0.0
    assert ExperimentConfig(method="js", beta=0.5, kl_inputs="replay").label == "js_b0.5_replay"


def test_round_trips():
    config = ExperimentConfig(method="reverse", beta=np.float64(0.3), epochs=np.int64(2))
    again = ExperimentConfig.from_dict(config.to_dict())
    assert again == config and again.key() == config.key()
    assert config.replace(beta=0.3) == config
    with pytest.raises(ValueError, match="unknown ExperimentConfig fields"):
        ExperimentConfig.from_dict({**config.to_dict(), "betta": 1})
    with pytest.raises(ValueError, match="needs beta > 0"):
        config.replace(beta=0)


def test_protocol_configs():
    runs = protocol_configs()
    assert len(runs) == 1 + 2 * len(ARTICLE_BETAS)
    assert [r.label for r in runs[:3]] == ["sft", "forward_b0.1", "forward_b0.3"]
    mine = protocol_configs(ExperimentConfig(epochs=3), betas=(np.float32(0.5), 2))
    assert [r.label for r in mine] == ["sft", "forward_b0.5", "forward_b2", "reverse_b0.5",
                                       "reverse_b2"]  # fmt: skip
    assert all(r.epochs == 3 for r in mine)
    assert protocol_configs(betas=()) == [ExperimentConfig()]


# ----------------------------------------------------------------------------- check_method


@pytest.mark.parametrize("method", ["sft", "forward", "reverse", "js"])
def test_check_method_returns_every_method_unchanged(method):
    assert METHODS == ("sft", "forward", "reverse", "js")
    assert check_method(method) is method


@pytest.mark.parametrize(("old", "new"), [("fkl", "forward"), ("rkl", "reverse")])
def test_check_method_names_the_new_name_of_an_old_one(old, new):
    with pytest.raises(ValueError, match=f"'{old}' is now called '{new}'"):
        check_method(old)


@pytest.mark.parametrize("bad", ["SFT", " sft", "", "kl", None, 0, ("sft",), ["sft"], {}])
def test_check_method_refuses_everything_else(bad):
    # a list or dict raised TypeError (unhashable) from the old-name lookup before the fix
    with pytest.raises(ValueError, match="method must be one of"):
        check_method(bad)
