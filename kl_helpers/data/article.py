"""The article's nine labelled sentences and its seeded 80/20 train/test split.

Labels: 0 positive, 1 negative, 2 neutral (as in the article). Introduced in notebook 06.
"""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from kl_helpers._validate import integer, real
from kl_helpers.encoding import TextData

LABEL_NAMES: tuple[str, ...] = ("positive", "negative", "neutral")

ARTICLE_TEXTS: tuple[str, ...] = (
    "This movie was incredible and I loved every moment.",
    "Terrible service, slow response, waste of money.",
    "It was okay, not great but not bad either.",
    "Absolutely brilliant, a must-watch experience.",
    "I regret buying this. Zero stars if I could.",
    "Highly recommended for a chill evening.",
    "Mediocre at best, very disappointing performance.",
    "A masterpiece of modern cinema. Truly outstanding.",
    "Never again. Simply the worst.",
)
ARTICLE_LABELS: tuple[int, ...] = (0, 1, 2, 0, 1, 0, 2, 0, 1)


def article_dataset() -> Dataset:
    """The article's nine sentences as a ``datasets.Dataset`` with ``text`` and ``label``."""
    return Dataset.from_dict({"text": list(ARTICLE_TEXTS), "label": list(ARTICLE_LABELS)})


def article_split(seed: int = 42, test_size: float = 0.2) -> DatasetDict:
    """The article's 80/20 train/test split (7 train, 2 test sentences), seeded.

    ``seed`` is an int ≥ 0 (Python or NumPy; ValueError for 1.5 or True), ``test_size`` a
    fraction in (0, 1); at least one sentence goes to each side (``datasets`` rounds the test
    count up: 0.05 of nine is one) or ``datasets`` raises ValueError (0.95: no training set)."""
    seed = integer(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    test_size = real(test_size, "test_size")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    return article_dataset().train_test_split(test_size=test_size, seed=seed)


def article_data(split_seed: int = 42) -> TextData:
    """The article's nine sentences, split 7 train / 2 test with ``split_seed``."""
    return TextData.from_split(article_split(seed=split_seed), LABEL_NAMES)
