"""Tests of kl_helpers.reward on a tiny BERT from a config with the bundled MiniLM tokenizer."""

from __future__ import annotations

import pytest
import torch

from kl_helpers import models
from kl_helpers.data import LABEL_NAMES
from kl_helpers.reward import POSITIVE, RewardModel

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
