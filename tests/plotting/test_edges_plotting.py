"""kl_helpers.plotting at its edges (issue 30): every public helper that draws takes ``ax=None``
(default None, annotated to return an Axes); the helpers no other test reaches draw on the Axes
they are given and on the current one with ``ax=None``, with inputs as tensors, arrays and
lists, and raise ValueError on input they cannot draw (mismatched lengths, nothing to draw,
bins < 1); one repeated estimate gets finite bins; beta_color at its edges."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import warnings

import numpy as np
import pytest
import torch

import kl_helpers.plotting as plotting
from kl_helpers.plotting import BETA_RANGE, beta_color, get_ax
from kl_helpers.plotting.family import plot_divergence_classes
from kl_helpers.plotting.fitting import plot_discrete_fits
from kl_helpers.plotting.optimization import (
    plot_elbo_history,
    plot_estimator_distributions,
    plot_policies,
)
from tests.plotting.plot_checks import assert_draws_on_given_axes, plt


def drawing_helpers():
    for info in pkgutil.iter_modules(plotting.__path__):
        module = importlib.import_module(f"kl_helpers.plotting.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                if "ax" in inspect.signature(fn).parameters:
                    yield f"{info.name}.{name}", fn


# Helpers that annotate a plot already drawn: the Axes is required, there is nothing to draw on
# a fresh one. Listed by name so that a new drawing helper cannot slip in without ax=None.
ANNOTATORS = {"experiment.label_line_ends"}
HELPERS = sorted((n, fn) for n, fn in drawing_helpers() if n not in ANNOTATORS)


def test_annotators_require_the_axes_they_annotate():
    found = {n: fn for n, fn in drawing_helpers() if n in ANNOTATORS}
    assert set(found) == ANNOTATORS
    for name, fn in found.items():
        first = next(iter(inspect.signature(fn).parameters.values()))
        assert first.name == "ax" and first.default is inspect.Parameter.empty, name


@pytest.mark.parametrize(("name", "fn"), HELPERS, ids=[n for n, _ in HELPERS])
def test_every_drawing_helper_takes_ax_none_and_returns_axes(name, fn):
    sig = inspect.signature(fn)
    assert sig.parameters["ax"].default is None, name
    assert "Axes" in str(sig.return_annotation), name


def test_there_are_helpers_to_check():
    assert len(HELPERS) > 20


def test_uncovered_helpers_draw_on_the_given_and_the_current_axes():
    p = torch.tensor([0.45, 0.05, 0.05, 0.45], dtype=torch.float64)
    fits = {"forward": np.array([0.3, 0.2, 0.2, 0.3]), "reverse": [0.9, 0.05, 0.03, 0.02]}
    for ax in (None, "given"):  # a diagram with its axes off: no labels to check
        fig = plt.figure()
        try:
            target = plt.gca() if ax is None else fig.add_subplot(2, 1, 2)
            assert plot_divergence_classes(ax=None if ax is None else target) is target
        finally:
            plt.close(fig)
    assert_draws_on_given_axes([
        lambda ax: plot_discrete_fits(p, fits, ax=ax),
        lambda ax: plot_discrete_fits(p.tolist(), {"q": torch.ones(4) / 4}, ax=ax),
        lambda ax: plot_policies({"ref": [0.5, 0.5], "β=1": torch.tensor([0.2, 0.8])},
                                 ["a", "b"], ax=ax),
        lambda ax: plot_estimator_distributions({"k1": torch.randn(50), "k3": np.ones(50)},
                                                0.1, ax=ax, bins=np.int64(10)),
        lambda ax: plot_elbo_history([-3.0, -2.0, -1.5], -1.0, ax=ax),
    ])  # fmt: skip


def test_one_repeated_estimate_gets_finite_bins():
    """Every estimate equal (a k2 of 0 at π = π_ref) gave numpy's 'bins must increase'."""
    fig, ax = plt.subplots()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 1e-300-wide bins divided by zero in numpy
            plot_estimator_distributions({"k2": torch.zeros(20)}, 0.0, ax=ax, bins=5)
        plot_estimator_distributions({"k1": [1.0, 1.0, math.inf]}, 1.0, ax=ax)
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("draw", "match"),
    [
        (lambda: plot_discrete_fits([0.5, 0.5], {"q": [0.2, 0.3, 0.5]}), "q must be 1-D like p"),
        (lambda: plot_discrete_fits([[0.5, 0.5]], {}), "p must be 1-D"),
        (lambda: plot_policies({}, ["a"]), "policies is empty"),  # was ZeroDivisionError
        (lambda: plot_policies({"ref": [0.5, 0.5]}, ["a", "b", "c"]), "one probability per"),
        (lambda: plot_estimator_distributions({}, 0.1), "at least one estimator"),
        (lambda: plot_estimator_distributions({"k1": [math.nan]}, 0.1), "finite estimate"),
        (lambda: plot_estimator_distributions({"k1": [0.1, 0.2]}, 0.1, bins=0), "bins must"),
        (lambda: plot_estimator_distributions({"k1": [0.1, 0.2]}, 0.1, bins=2.5), "bins must"),
        (lambda: plot_elbo_history(torch.zeros(2, 3), 0.0), "elbo must be 1-D"),
    ],
)
def test_input_they_cannot_draw(draw, match):
    """Lists raised AttributeError ('list' object has no attribute 'shape'/'numpy'), mismatched
    lengths a matplotlib shape error or a silently wrong figure."""
    fig = plt.figure()
    try:
        with pytest.raises(ValueError, match=match):
            draw()
    finally:
        plt.close(fig)


def test_beta_color_edges():
    assert beta_color(0.0) == beta_color(0)
    assert beta_color(1e-9) == beta_color(BETA_RANGE[0])  # clipped below the range
    assert beta_color(1e9) == beta_color(BETA_RANGE[1])  # and above it
    assert beta_color(np.float64(0.3)) == beta_color(0.3)
    for bad in (-1e-300, math.inf, math.nan):
        with pytest.raises(ValueError, match="beta must be"):
            beta_color(bad)


def test_get_ax():
    fig, ax = plt.subplots()
    try:
        assert get_ax(ax) is ax and get_ax(None) is plt.gca()
    finally:
        plt.close(fig)
