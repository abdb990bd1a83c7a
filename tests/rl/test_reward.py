"""Tests of kl_helpers.rl.reward on a tiny BERT from a config with the bundled MiniLM tokenizer."""

from __future__ import annotations

import pytest
import torch

from kl_helpers import models
from kl_helpers.data.article import LABEL_NAMES
from kl_helpers.rl.reward import POSITIVE, RECIPES, RewardModel, recipe_data, train_reward_model

TEXTS = ["It worked great, no side effects.", "Terrible headaches.", "", "ok"]


@pytest.fixture(scope="module")
def reward():
    tokenizer = models.load_tokenizer(models.resolve_model("minilm"))
    return RewardModel(models.build_tiny_bert(num_labels=3, seed=0), tokenizer, "tiny")


def test_positive_is_the_label_named_positive():
    assert LABEL_NAMES[POSITIVE] == "positive"


def test_prob_reward_is_the_positive_class_probability(reward):
    log_p = reward.log_probs(TEXTS)
    assert log_p.shape == (4, 3)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(4, dtype=log_p.dtype))
    r = reward(TEXTS)
    assert r.shape == (4,) and r.dtype == torch.float32
    torch.testing.assert_close(r, log_p[:, POSITIVE].exp().float())


def test_logit_reward_is_the_log_odds_of_positive(reward):
    p = reward(TEXTS).double()
    logit = reward.with_kind("logit")(TEXTS)
    torch.testing.assert_close(logit, torch.log(p / (1 - p)).float(), atol=1e-5, rtol=1e-5)
    assert reward.label == "tiny/prob" and reward.with_kind("logit").label == "tiny/logit"


def test_a_text_scores_the_same_alone_and_in_a_batch(reward):
    batch = reward(TEXTS)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(reward([text])[0], batch[i], atol=1e-5, rtol=1e-5)


def test_bad_input_raises(reward):
    with pytest.raises(ValueError, match="non-empty"):
        reward([])
    with pytest.raises(ValueError, match="non-empty"):
        reward("a single string")
    with pytest.raises(ValueError, match="kind"):
        reward.with_kind("margin")


def test_unknown_recipe_raises():
    with pytest.raises(ValueError, match="recipe"):
        recipe_data("tweets")


def test_trained_reward_model_is_cached_with_its_weights(tmp_path, monkeypatch):
    from kl_helpers.encoding import TextData
    from kl_helpers.rl import reward as reward_module

    texts = ("great pill", "awful pill", "a pill", "lovely", "horrible", "fine") * 2
    small = TextData(texts[:6], (0, 1, 2, 0, 1, 2), texts[6:], (0, 1, 2, 0, 1, 2), LABEL_NAMES)
    monkeypatch.setattr(reward_module, "recipe_data", lambda recipe: small)  # seconds, not minutes
    config = RECIPES["sentiment"].replace(epochs=1, max_length=8)
    first = train_reward_model("sentiment", config, results_dir=tmp_path)
    second = train_reward_model("sentiment", config, results_dir=tmp_path, kind="logit")
    assert len(list(tmp_path.glob("*/model.safetensors"))) == 1  # trained once
    assert first.name == second.name and first.name.startswith("reward-sentiment:")
    torch.testing.assert_close(second.with_kind("prob")(TEXTS), first(TEXTS))
