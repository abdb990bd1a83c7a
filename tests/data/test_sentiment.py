"""The seeded template sentiment dataset: determinism, balance, disjoint splits, held-out words."""

from __future__ import annotations

from collections import Counter

import pytest

from kl_helpers.data.article import LABEL_NAMES
from kl_helpers.data.sentiment import (
    ADJECTIVES,
    SentimentConfig,
    held_out_words,
    make_sentiment_splits,
)

SMALL = SentimentConfig(n_per_class=40, seed=3)


def test_same_seed_same_data_and_other_seed_differs():
    a = make_sentiment_splits(SMALL)
    b = make_sentiment_splits(SMALL)
    c = make_sentiment_splits(SentimentConfig(n_per_class=40, seed=4))
    for split in ("train", "validation", "test"):
        assert a[split].to_dict() == b[split].to_dict()
    assert a["train"]["text"] != c["train"]["text"]


def test_sizes_and_class_balance():
    d = make_sentiment_splits(SentimentConfig(n_per_class=100, fractions=(0.6, 0.2, 0.2)))
    expected = {"train": 60, "validation": 20, "test": 20}
    for split, per_class in expected.items():
        counts = Counter(d[split]["clean_label"])
        assert counts == dict.fromkeys(range(len(LABEL_NAMES)), per_class)


def test_no_sentence_in_two_splits_and_no_duplicates():
    d = make_sentiment_splits()
    texts = {split: d[split]["text"] for split in d}
    for split, t in texts.items():
        assert len(set(t)) == len(t), f"duplicates inside {split}"
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["train"]) & set(texts["validation"])
    assert not set(texts["validation"]) & set(texts["test"])


def test_held_out_words_never_in_training_but_in_test():
    config = SentimentConfig(n_per_class=120, seed=1)
    d = make_sentiment_splits(config)
    unseen = [w for words in held_out_words(config).values() for w in words]
    assert unseen
    train_words = {w.strip(".,:!") for t in d["train"]["text"] for w in t.split()}
    assert not train_words & set(unseen)
    test_words = {w.strip(".,:!") for t in d["test"]["text"] for w in t.split()}
    assert test_words & set(unseen)


def test_clean_labels_match_the_adjective_class():
    d = make_sentiment_splits(SMALL)
    for text, label in zip(d["train"]["text"], d["train"]["clean_label"], strict=True):
        words = {w.strip(".,:!") for w in text.split()}
        if " moments and " in text:  # mixed sentences are neutral
            assert LABEL_NAMES[label] == "neutral"
            continue
        classes = {name for name, adjs in ADJECTIVES.items() if words & set(adjs)}
        assert classes == {LABEL_NAMES[label]}, text


def test_label_noise_rate_and_zero_noise():
    clean = make_sentiment_splits(SentimentConfig(n_per_class=200, label_noise=0.0))
    for split in clean:
        assert clean[split]["label"] == clean[split]["clean_label"]
    noisy = make_sentiment_splits(SentimentConfig(n_per_class=200, label_noise=0.2))
    flipped = sum(
        a != b
        for split in noisy
        for a, b in zip(noisy[split]["label"], noisy[split]["clean_label"], strict=True)
    )
    assert 0.14 < flipped / 600 < 0.26


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SentimentConfig(n_per_class=2), "n_per_class"),
        (SentimentConfig(fractions=(0.5, 0.5, 0.5)), "fractions"),
        (SentimentConfig(label_noise=1.0), "label_noise"),
        (SentimentConfig(unseen_word_fraction=-0.1), "unseen_word_fraction"),
        (SentimentConfig(n_per_class=5000), "only"),
    ],
)
def test_bad_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        make_sentiment_splits(config)
