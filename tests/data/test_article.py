"""The article's data and its seeded split."""

import pytest

from kl_helpers.data.article import (
    ARTICLE_LABELS,
    ARTICLE_TEXTS,
    LABEL_NAMES,
    article_dataset,
    article_split,
)


def test_nine_sentences_three_classes():
    ds = article_dataset()
    assert len(ds) == 9 == len(ARTICLE_TEXTS) == len(ARTICLE_LABELS)
    assert set(ds["label"]) == set(range(len(LABEL_NAMES)))


def test_split_is_seeded_80_20():
    a, b = article_split(seed=42), article_split(seed=42)
    assert (len(a["train"]), len(a["test"])) == (7, 2)
    assert a["test"]["text"] == b["test"]["text"]
    assert set(a["train"]["text"]).isdisjoint(a["test"]["text"])
    with pytest.raises(ValueError, match="test_size"):
        article_split(test_size=1.5)
