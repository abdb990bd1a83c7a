"""A seeded 3-class sentiment dataset built from templates × slot words, for held-out evaluation.

Why generated: no PyPI package we could find ships a small, clearly licensed 3-class sentiment
set inside its installed files (``vaderSentiment``'s source archive carries human-rated snippets,
but its wheel does not install them; ``pytreebank`` downloads SST at run time), and the series
must run offline. Labels follow ``kl_helpers.data.article.LABEL_NAMES``: 0 positive, 1 negative,
2 neutral.

Construction: every class has its own adjectives; a sentence is a template filled with a subject
and an adjective (neutral also has "mixed" templates that pair a positive with a negative word).
Some templates are shared by all classes, so the adjective alone decides the label there. A
fraction of each class's adjectives is held out of training (``unseen_word_fraction``), so the
test set asks about words the fine-tuning never saw, and ``label_noise`` flips a fraction of the
labels (in every split, as annotator disagreement would), so a model that reaches probability 1
on its training labels pays for it in held-out NLL. Introduced in notebook 07.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset, DatasetDict

from kl_helpers._validate import integer
from kl_helpers.data.article import LABEL_NAMES

SUBJECTS: tuple[str, ...] = (
    "the movie",
    "this film",
    "the service",
    "the food",
    "this phone",
    "the hotel",
    "the book",
    "the concert",
    "the app",
    "the staff",
    "this laptop",
    "the show",
    "the game",
    "the tour",
)

ADJECTIVES: dict[str, tuple[str, ...]] = {
    "positive": (
        "wonderful",
        "excellent",
        "delightful",
        "fantastic",
        "superb",
        "brilliant",
        "lovely",
        "great",
        "outstanding",
        "charming",
        "impressive",
        "amazing",
    ),
    "negative": (
        "terrible",
        "awful",
        "dreadful",
        "horrible",
        "disappointing",
        "miserable",
        "useless",
        "boring",
        "painful",
        "frustrating",
        "poor",
        "bad",
    ),
    "neutral": (
        "okay",
        "average",
        "ordinary",
        "fine",
        "acceptable",
        "standard",
        "unremarkable",
        "adequate",
        "passable",
        "so-so",
        "typical",
        "fair",
    ),
}

SHARED_TEMPLATES: tuple[str, ...] = (
    "{Subject} was {adj}.",
    "Honestly, {subject} was {adj}.",
    "In my opinion {subject} is {adj}.",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "positive": (
        "I loved it: {subject} was {adj}.",
        "{Subject} was {adj} and I would recommend it to anyone.",
        "What {a_adj} experience, {subject} made my day.",
    ),
    "negative": (
        "I regret it: {subject} was {adj}.",
        "{Subject} was {adj} and I want my money back.",
        "What {a_adj} experience, {subject} ruined my day.",
    ),
    "neutral": (
        "{Subject} was {adj}, nothing more and nothing less.",
        "I have no strong feelings, {subject} was {adj}.",
        "{Subject} had {pos} moments and {neg} ones.",
    ),
}


@dataclass(frozen=True)
class SentimentConfig:
    """How the dataset is generated; the same config and seed give the same sentences."""

    n_per_class: int = 200  # sentences per class before the split (all splits together)
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)  # train, validation, test
    unseen_word_fraction: float = 0.25  # share of each class's adjectives kept out of training
    label_noise: float = 0.1  # probability that a sentence's label is replaced by another class
    seed: int = 0


def _fill(template: str, subject: str, adj: str, pos: str, neg: str) -> str:
    article = "an" if adj[:1] in "aeiou" and adj else "a"
    return template.format(
        subject=subject,
        Subject=subject[0].upper() + subject[1:],
        adj=adj,
        a_adj=f"{article} {adj}",
        pos=pos,
        neg=neg,
    )


def _class_sentences(
    name: str, adjectives: tuple[str, ...], pos_words: tuple[str, ...], neg_words: tuple[str, ...]
) -> dict[str, list[str]]:
    """Every sentence of one class from the given words, grouped by template (sorted lists)."""
    out: dict[str, list[str]] = {}
    for template in SHARED_TEMPLATES + TEMPLATES[name]:
        if "{pos}" in template:
            fills = [(subj, "", p, n) for subj in SUBJECTS for p in pos_words for n in neg_words]
        else:
            fills = [(subj, a, "", "") for subj in SUBJECTS for a in adjectives]
        out[template] = sorted({_fill(template, *f) for f in fills})
    return out


def _check(config: SentimentConfig) -> None:
    """ValueError naming the field: n_per_class an int ≥ 4 (4.5 made unbalanced splits), seed an
    int ≥ 0 (1.5 raised NumPy's TypeError), fractions three positive numbers summing to 1, the
    word fraction and label noise in [0, 1)."""
    integer(config.n_per_class, "n_per_class")
    if integer(config.seed, "seed") < 0:
        raise ValueError(f"seed must be >= 0, got {config.seed}")
    if config.n_per_class < 4:
        raise ValueError(f"n_per_class must be >= 4, got {config.n_per_class}")
    f = config.fractions
    if len(f) != 3 or any(x <= 0 for x in f) or abs(sum(f) - 1) > 1e-9:
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {f}")
    if not 0 <= config.unseen_word_fraction < 1:
        raise ValueError(
            f"unseen_word_fraction must be in [0, 1), got {config.unseen_word_fraction}"
        )
    if not 0 <= config.label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1), got {config.label_noise}")


def _word_split(
    rng: np.random.Generator, config: SentimentConfig
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Per class: (adjectives allowed in training, adjectives kept for validation/test)."""
    seen, unseen = {}, {}
    for name in LABEL_NAMES:
        words = ADJECTIVES[name]
        order = rng.permutation(len(words))
        k = round(len(words) * config.unseen_word_fraction)
        unseen[name] = tuple(sorted(words[i] for i in order[:k]))
        seen[name] = tuple(sorted(words[i] for i in order[k:]))
    return seen, unseen


def _pick(
    rng: np.random.Generator, groups: dict[str, list[str]], k: int, exclude: set[str]
) -> list[str]:
    """Draw ``k`` distinct sentences, cycling over the templates so each is used about equally."""
    queues = []
    for template in sorted(groups):
        pool = [s for s in groups[template] if s not in exclude]
        queues.append([pool[i] for i in rng.permutation(len(pool))])
    picked: list[str] = []
    while len(picked) < k and any(queues):
        for i in rng.permutation(len(queues)):
            if queues[i] and len(picked) < k:
                picked.append(queues[i].pop())
    if len(picked) < k:
        raise ValueError(f"asked for {k} sentences but the templates make only {len(picked)}")
    return picked


def make_sentiment_splits(config: SentimentConfig | None = None) -> DatasetDict:
    """Train/validation/test splits with ``text``, ``label`` (maybe noisy) and ``clean_label``.

    Balanced: each split has the same number of sentences per class (before label noise). No
    sentence appears in two splits; the held-out adjectives appear only in validation and test,
    where a sentence with a held-out word is preferred whenever one is left.
    """
    config = config or SentimentConfig()
    _check(config)
    rng = np.random.default_rng(config.seed)
    n_train = round(config.n_per_class * config.fractions[0])
    n_val = round(config.n_per_class * config.fractions[1])
    n_test = config.n_per_class - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise ValueError("n_per_class is too small for three non-empty splits")
    seen, _ = _word_split(rng, config)

    rows: dict[str, list[tuple[str, int]]] = {"train": [], "validation": [], "test": []}
    for label, name in enumerate(LABEL_NAMES):
        train_groups = _class_sentences(name, seen[name], seen["positive"], seen["negative"])
        all_groups = _class_sentences(
            name, ADJECTIVES[name], ADJECTIVES["positive"], ADJECTIVES["negative"]
        )
        train = _pick(rng, train_groups, n_train, exclude=set())
        familiar = {s for group in train_groups.values() for s in group}
        novel_groups = {t: [s for s in g if s not in familiar] for t, g in all_groups.items()}
        n_novel = min(n_val + n_test, sum(len(g) for g in novel_groups.values()))
        held = _pick(rng, novel_groups, n_novel, exclude=set())
        held += _pick(rng, train_groups, n_val + n_test - n_novel, exclude=set(train))
        held = [held[i] for i in rng.permutation(len(held))]
        rows["train"] += [(s, label) for s in train]
        rows["validation"] += [(s, label) for s in held[:n_val]]
        rows["test"] += [(s, label) for s in held[n_val:]]

    n_classes = len(LABEL_NAMES)
    out = {}
    for split, items in rows.items():
        order = rng.permutation(len(items))
        texts = [items[i][0] for i in order]
        clean = [items[i][1] for i in order]
        flip = rng.random(len(clean)) < config.label_noise
        shift = rng.integers(1, n_classes, size=len(clean))
        noisy = [
            (c + int(d)) % n_classes if f else c for c, f, d in zip(clean, flip, shift, strict=True)
        ]
        out[split] = Dataset.from_dict({"text": texts, "label": noisy, "clean_label": clean})
    return DatasetDict(out)


def held_out_words(config: SentimentConfig | None = None) -> dict[str, tuple[str, ...]]:
    """The adjectives of each class that the training split never contains."""
    config = config or SentimentConfig()
    _check(config)
    return _word_split(np.random.default_rng(config.seed), config)[1]
