"""Notebook 10's plot helpers draw on the Axes they are given, with labelled axes in nats."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kl_helpers.plotting import rl as pr  # noqa: E402
from tests.plotting.plot_checks import assert_draws_on_given_axes  # noqa: E402


def test_each_helper_returns_its_axes_with_labels():
    evals = {"β=0": [{"step": 0, "kl": 0.0}, {"step": 5, "kl": 2.0}]}
    draws = [
        lambda ax: pr.plot_eval_trace(evals, "kl", pr.KL_LABEL, ax=ax),
        lambda ax: pr.plot_frontier(
            {"β=0": (3.0, 1.0)}, [0, 0.2], [0.0, 0.5], [1, 2], "reward", ax=ax, bon_bound=[0, 0.19]
        ),
        lambda ax: pr.plot_bon_kl([1, 2, 4], [0, 0.19, 0.6], [0, 0.193, 0.636], ax=ax),
        lambda ax: pr.plot_bon_kl([1, 2], {"a": [0, 0.1], "b": [0, 0.19]}, [0, 0.193], ax=ax),
        lambda ax: pr.plot_frontier(
            {"β=0": (3.0, 1.0)},
            [0, 0.2],
            [0.0, 0.5],
            [1, 2],
            "reward",
            ax=ax,
            optimum=([0, 0.2, 1.0], [0, 0.6, 1.0]),
            kl_cap=3.4,
            errors={"β=0": (0.5, 0.1)},
        ),
        lambda ax: pr.plot_value_vs_kl({"run": ([0, 1], [0.5, 0.7])}, "gold", ax=ax),
    ]
    assert_draws_on_given_axes(draws)


def test_kl_axes_say_nats_and_the_frontier_marks_each_run():
    fig, ax = plt.subplots()
    pr.plot_frontier({"a": (1.0, 1.0), "b": (2.0, 1.5)}, [0, 0.2], [0, 0.3], [1, 2], "r", ax=ax)
    assert "nats" in ax.get_xlabel()
    assert {t.get_text() for t in ax.texts} >= {"a", "b", "N=1", "N=2"}
    plt.close(fig)
