"""Fixtures shared by the engine tests: the bundled tokenizer, the article's data, a tiny BERT."""

import os

import pytest

from kl_helpers.data.article import article_data
from kl_helpers.models import build_tiny_bert, load_tokenizer, resolve_model
from kl_helpers.runtime import THREADS_ENV, set_cpu_threads


def pytest_configure(config):
    """Honour $KL_THREADS in the test process too (on a shared CPU, 2 threads of tiny matrix
    products spin against other jobs: the RL loop tests took 100x longer than on 1 thread)."""
    if os.environ.get(THREADS_ENV):
        set_cpu_threads()


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled MiniLM's uncased WordPiece tokenizer (real vocabulary, no download)."""
    return load_tokenizer(resolve_model("minilm"))


@pytest.fixture(scope="session")
def data():
    """The article's nine sentences, split 7 train / 2 test."""
    return article_data()


@pytest.fixture()
def tiny():
    """A fresh 2-layer, 32-wide BERT classifier with seed 0 (tests may train it)."""
    return build_tiny_bert(num_labels=3, seed=0)
