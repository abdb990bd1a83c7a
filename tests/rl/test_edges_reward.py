"""kl_helpers.rl.reward at its edges (issue 30): RewardModel's log_probs and both reward kinds
against float64 math on a classifier with fixed logits: equal logits, margins of 2.6 (the
notebooks' range), 40, 100 and 1e4 nats for and against "positive", two and three classes, the
positive class at another index; texts as a list, a tuple, "" (still scored), one string and none
refused; the model's train mode kept; with_kind and label; a bad kind; recipe_data and
train_reward_model for an unknown recipe, and train_reward_model's name, kind and max_length with
the cached reference replaced."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from kl_helpers.rl import reward
from kl_helpers.rl.reward import POSITIVE, RECIPES, RewardModel, recipe_data, train_reward_model

ROWS = [
    [0.0, 0.0, 0.0],
    [0.3, -1.1, 1.5],  # log-odds of "positive" about 0.9 nats
    [-1.0, 0.0, 2.6],
    [0.0, 0.0, 40.0],
    [0.0, 0.0, 100.0],
    [0.0, -5.0, 1e4],
    [0.0, 0.0, -40.0],
    [3.0, 0.0, -1e4],
    [40.0, 0.0, 0.0],
    [1e4, -5.0, 0.0],
    [100.0, 100.0, 0.0],  # two classes tie far above the third
]


class Table(torch.nn.Module):
    """A classifier whose logits for text "i" are ``rows[i]``."""

    def __init__(self, rows):
        super().__init__()
        self.rows = torch.tensor(rows, dtype=torch.float32)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen_training = []

    def forward(self, input_ids, attention_mask):
        self.seen_training.append(self.training)
        return SimpleNamespace(logits=self.rows[input_ids[:, 1]] + 0 * self.anchor)


class Tokens:
    pad_token_id = 0

    def __call__(self, texts, truncation, max_length):
        return {"input_ids": [[101, int(t or 0)][:max_length] for t in texts]}


def expected(row, positive):
    """float64 log p and log-odds of ``positive`` from the logits, by hand."""
    z = [float(torch.tensor(v, dtype=torch.float32)) for v in row]
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    rest = [v for i, v in enumerate(z) if i != positive]
    rest_top = max(rest)
    lse_rest = rest_top + math.log(sum(math.exp(v - rest_top) for v in rest))
    return [v - lse for v in z], z[positive] - lse_rest


@pytest.mark.parametrize("positive", [0, 1, 2])
def test_rewards_against_float64_math(positive):
    # failed before the fix: margins of 40 nats and more gave +inf log-odds (1 - p rounded to 0)
    texts = [str(i) for i in range(len(ROWS))]
    model = RewardModel(Table(ROWS), Tokens(), "fixed", "logit", positive, max_length=8)
    log_probs = model.log_probs(tuple(texts))
    assert log_probs.dtype == torch.float64 and log_probs.device.type == "cpu"
    logit, prob = model(texts), model.with_kind("prob")(texts)
    assert logit.dtype == prob.dtype == torch.float32 and logit.shape == (len(ROWS),)
    for i, row in enumerate(ROWS):
        lp, odds = expected(row, positive)
        assert log_probs[i].tolist() == pytest.approx(lp, rel=1e-12, abs=1e-12)
        assert math.isfinite(logit[i]) and float(logit[i]) == pytest.approx(odds, rel=1e-6)
        assert float(prob[i]) == pytest.approx(math.exp(lp[positive]), rel=1e-6, abs=1e-45)


def test_notebook_range_rewards_are_unchanged():
    """Below ~13 nats the log-odds are log p - log(-expm1(log p)), bit for bit, as before."""
    texts = ["0", "1", "2"]
    assert POSITIVE == 0  # the article's label order: positive first
    model = RewardModel(Table(ROWS[:3]), Tokens(), "fixed", "logit")
    log_p = model.log_probs(texts)[:, POSITIVE]
    assert torch.equal(model(texts), (log_p - torch.log(-torch.expm1(log_p))).float())


def test_two_classes_and_empty_text():
    model = RewardModel(Table([[0.5, -0.5], [-30.0, 30.0]]), Tokens(), "two", "logit", 1)
    got = model(["", "1"])  # "" is scored as a text (here row 0)
    assert got.tolist() == pytest.approx([-1.0, 60.0], rel=1e-6)


def test_refusals_label_and_modes():
    table = Table(ROWS).train()
    model = RewardModel(table, Tokens(), "fixed")
    for bad in ("0", "", [], ()):
        with pytest.raises(ValueError, match="non-empty sequence of strings"):
            model(bad)
    model(["0"])
    assert table.training and table.seen_training == [False]  # eval inside, train mode kept
    assert model.label == "fixed/prob" and model.with_kind("logit").label == "fixed/logit"
    with pytest.raises(ValueError, match="kind must be one of"):
        model.with_kind("logits")
    with pytest.raises(ValueError, match="kind must be one of"):
        RewardModel(table, Tokens(), "x", "Prob")


def test_recipes_refuse_unknown_names():
    with pytest.raises(ValueError, match="recipe must be one of"):
        recipe_data("Sentiment")
    with pytest.raises(ValueError, match="recipe must be one of"):
        train_reward_model("imdb")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_train_reward_model_wraps_the_cached_reference(monkeypatch, recipe, tmp_path):
    seen = []
    monkeypatch.setattr(reward, "recipe_data", lambda r: seen.append(r) or "DATA")

    def trained(config, data, results_dir):
        seen.append((config, data, results_dir))
        return SimpleNamespace(model="M", tokenizer="T", name="ref-abc")

    monkeypatch.setattr(reward, "trained_reference", trained)
    default = train_reward_model(recipe, results_dir=tmp_path, kind="logit")
    assert default == RewardModel(
        "M", "T", f"reward-{recipe}:ref-abc", "logit", POSITIVE, RECIPES[recipe].max_length
    )
    config = RECIPES[recipe].replace(max_length=17, epochs=1)
    assert train_reward_model(recipe, config).max_length == 17
    assert seen == [recipe, (RECIPES[recipe], "DATA", tmp_path), recipe, (config, "DATA", None)]
