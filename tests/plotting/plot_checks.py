"""One check shared by the plotting tests: a helper draws on the Axes it is given, with labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def assert_draws_on_given_axes(draws: Sequence[Callable]) -> None:
    """Each ``draw(ax)`` returns ``ax`` and labels both of its axes."""
    for draw in draws:
        fig, ax = plt.subplots()
        try:
            assert draw(ax) is ax
            assert ax.get_xlabel() and ax.get_ylabel()
        finally:
            plt.close(fig)
