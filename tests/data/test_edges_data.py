"""kl_helpers.data at its edges (issue 30): the article's split for test sizes down to one sentence,
seeds as NumPy ints, bools, floats and negatives; the synthetic sentiment splits at the smallest
size, with no label noise and no held-out words, balanced per class (counted), no held-out adjective
in training, the same config giving the same sentences, and every field given an impossible value;
clean_review on quotes, entities and blanks; article_dataset's columns, order, features and
independence of each call (editing one copy leaves the next unchanged)."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from kl_helpers.data.article import (
    ARTICLE_LABELS,
    ARTICLE_TEXTS,
    LABEL_NAMES,
    article_data,
    article_dataset,
    article_split,
)
from kl_helpers.data.reviews import clean_review
from kl_helpers.data.sentiment import SentimentConfig, held_out_words, make_sentiment_splits


@pytest.mark.parametrize(("test_size", "n_test"), [(0.05, 1), (1 / 9, 1), (0.2, 2), (0.85, 8)])
def test_article_split_sizes(test_size, n_test):
    split = article_split(seed=np.int64(3), test_size=test_size)
    assert split["test"].num_rows == n_test and split["train"].num_rows == 9 - n_test
    texts = list(split["train"]["text"]) + list(split["test"]["text"])
    labels = list(split["train"]["label"]) + list(split["test"]["label"])
    pairs = set(zip(texts, labels, strict=True))
    assert pairs == set(zip(ARTICLE_TEXTS, ARTICLE_LABELS, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"seed": 1.5}, "seed must be an int"), ({"seed": True}, "seed must be an int"),
     ({"seed": -1}, "seed must be >= 0"), ({"test_size": 0.0}, "test_size"),
     ({"test_size": math.nan}, "test_size"), ({"test_size": "0.2"}, "test_size"),
     ({"test_size": 0.95}, "train set will be empty")],
)  # fmt: skip
def test_article_split_bad_arguments(kwargs, match):
    """seed = 1.5 raised NumPy's TypeError, -1 its 'expected non-negative integer', and True
    was split as seed 1."""
    with pytest.raises(ValueError, match=match):
        article_split(**kwargs)


def test_article_data_is_the_split():
    data = article_data(split_seed=np.int64(42))
    assert len(data.train_texts) == 7 and len(data.test_texts) == 2
    assert data == article_data(42)


@pytest.mark.parametrize(
    "config",
    [SentimentConfig(n_per_class=8, label_noise=0.0, seed=np.int64(1)),
     SentimentConfig(n_per_class=12, unseen_word_fraction=0.0, label_noise=0.0),
     SentimentConfig(n_per_class=8, fractions=(0.5, 0.25, 0.25), label_noise=0.0)],
)  # fmt: skip
def test_sentiment_splits_are_balanced_and_hold_words_out(config):
    splits = make_sentiment_splits(config)
    for name, split in splits.items():
        counts = Counter(split["clean_label"])
        assert len(set(counts.values())) == 1, (name, counts)  # the same number per class
        assert list(split["label"]) == list(split["clean_label"])  # no label noise asked for
    assert sum(s.num_rows for s in splits.values()) == 3 * config.n_per_class
    held = {w for words in held_out_words(config).values() for w in words}
    if config.unseen_word_fraction == 0:
        assert not held
    train_words = {w for t in splits["train"]["text"] for w in re.findall(r"[a-z-]+", t.lower())}
    assert not held & train_words
    again = make_sentiment_splits(config)["train"]["text"]
    assert list(again) == list(splits["train"]["text"])


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"n_per_class": 4.5}, "n_per_class must be an int"), ({"n_per_class": 3}, ">= 4"),
     ({"seed": 1.5}, "seed must be an int"), ({"seed": -2}, "seed must be >= 0"),
     ({"label_noise": math.nan}, "label_noise"), ({"label_noise": 1.0}, "label_noise"),
     ({"unseen_word_fraction": 1.0}, "unseen_word_fraction"),
     ({"fractions": (0.5, 0.5, 0.0)}, "fractions"), ({"fractions": (0.5, 0.5)}, "fractions"),
     ({"n_per_class": 10**6}, "the templates make only")],
)  # fmt: skip
def test_sentiment_config_bad_values(changes, match):
    """n_per_class = 4.5 made 15 sentences split 6/3/6 (not balanced); seed = 1.5 raised
    NumPy's TypeError."""
    with pytest.raises(ValueError, match=match):
        make_sentiment_splits(SentimentConfig(**changes))


def test_clean_review():
    assert clean_review('  "It&#039;s  great &amp; good"\n') == "It's great & good"
    assert clean_review('""') == ""
    assert clean_review("a\t\tb") == "a b"


# ----------------------------------------------------------------------------- article_dataset


def test_article_dataset_is_the_nine_sentences_in_order():
    data = article_dataset()
    assert data.column_names == ["text", "label"] and len(data) == 9
    assert data["text"] == list(ARTICLE_TEXTS) and data["label"] == list(ARTICLE_LABELS)
    assert data.features["text"].dtype == "string" and data.features["label"].dtype == "int64"
    assert Counter(data["label"]) == {0: 4, 1: 3, 2: 2}
    assert set(data["label"]) <= set(range(len(LABEL_NAMES)))
    edited = data.map(lambda row: {"label": 99})
    assert set(edited["label"]) == {99} and article_dataset()["label"] == list(ARTICLE_LABELS)
    assert article_dataset() is not data
