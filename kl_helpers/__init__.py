"""Helpers for the kl-regularization notebook series.

Modules by topic: ``divergences`` (discrete KL and friends), ``gaussian`` (closed forms),
``losses`` (the article's SFT loss functions), ``runtime`` (device, seeds, quiet logs),
``models`` (offline-first BERT resolution), ``plotting`` (Axes-returning figure helpers).
Importing the package has no side effects.
"""

__version__ = "0.1.0"
