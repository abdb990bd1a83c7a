"""One check shared by the plotting tests: a helper draws on the Axes it is given, with labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def assert_draws_on_given_axes(draws: Sequence[Callable]) -> None:
    """Each ``draw(ax)`` returns ``ax`` and labels both of its axes; ``draw(None)`` draws on the
    current figure's Axes and returns it (the helpers' ``ax=None`` promise)."""
    for draw in draws:
        fig, ax = plt.subplots()
        try:
            assert draw(ax) is ax
            assert ax.get_xlabel() and ax.get_ylabel()
        finally:
            plt.close(fig)
        fig = plt.figure()
        try:
            current = plt.gca()
            assert draw(None) is current
            assert current.get_xlabel() and current.get_ylabel()
        finally:
            plt.close(fig)
