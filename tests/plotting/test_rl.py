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


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_sweep_vs_kl_draws_each_beta_in_its_colour_with_its_standard_errors():
    from matplotlib.colors import to_rgba

    from kl_helpers.plotting import beta_color

    trace = [{"kl": 0.0, "gold": 1.0}, {"kl": 5.0, "gold": 0.5}, {"kl": 40.0, "gold": -1.0}]
    points = {
        0.1: {"kl": 3.0, "kl_se": 0.4, "gold": 0.8, "gold_se": 0.05},
        1.0: {"kl": 0.5, "kl_se": 0.1, "gold": 0.2, "gold_se": 0.25},
    }
    fig, ax = plt.subplots()
    assert pr.plot_sweep_vs_kl(trace, points, "gold", "r_gold", ax=ax, baseline=0.3) is ax
    (line,) = [ln for ln in ax.lines if list(ln.get_xdata()) == [0.0, 5.0, 40.0]]
    assert to_rgba(line.get_color(), 1) == to_rgba(beta_color(0.0), 1)
    assert list(line.get_ydata()) == [1.0, 0.5, -1.0]
    for beta, p in points.items():
        (marker,) = [
            ln for ln in ax.lines if ln.get_marker() == "s" and ln.get_xdata()[0] == p["kl"]
        ]
        assert to_rgba(marker.get_color()) == beta_color(beta)
        assert list(marker.get_ydata()) == [p["gold"]]
    # the error bars' half-lengths are the SEs given: x then y for each β
    spans = sorted(
        round(float(abs(seg[1] - seg[0]).max()) / 2, 9)
        for coll in ax.collections
        if hasattr(coll, "get_segments")
        for seg in coll.get_segments()
    )
    assert spans == sorted([0.4, 0.05, 0.1, 0.25])
    assert ax.get_xscale() == "symlog" and "nats" in ax.get_xlabel()
    assert [ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == ":"] == [0.3]
    assert _legend_texts(ax) == ["β = 0, every evaluation", "π_ref", "β = 0.1", "β = 1"]
    plt.close(fig)


def test_frontier_with_colors_names_runs_in_the_legend_and_draws_bon_errors():
    from matplotlib.colors import to_rgba

    colors = {"β = 0.1": "tab:red", "β = 1": "tab:blue"}
    points = {"β = 0.1": (2.0, 1.0), "β = 1": (0.5, 0.4)}
    fig, ax = plt.subplots()
    pr.plot_frontier(points, [0.0, 0.19, 0.6], [0.0, 0.5, 0.9], [1, 2, 4], "r", ax=ax,
                     colors=colors, bon_errors=[0.0, 0.1, 0.2])  # fmt: skip
    for name, (kl, value) in points.items():
        (scatter,) = [c for c in ax.collections if list(c.get_offsets()[0]) == [kl, value]]
        assert tuple(scatter.get_facecolor()[0]) == to_rgba(colors[name])
    assert {"β = 0.1", "β = 1"} <= set(_legend_texts(ax))
    assert not {"β = 0.1", "β = 1"} & {t.get_text() for t in ax.texts}  # named in the legend only
    bars = [c for c in ax.collections if len(getattr(c, "get_segments", list)()) == 3]
    (bar,) = bars
    assert [round(float(s[1][1] - s[0][1]) / 2, 9) for s in bar.get_segments()] == [0.0, 0.1, 0.2]
    plt.close(fig)


def test_eval_trace_takes_each_runs_colour_by_name():
    from matplotlib.colors import to_rgba

    evals = {"a": [{"step": 0, "kl": 0.0}, {"step": 5, "kl": 1.0}], "b": [{"step": 0, "kl": 0.5}]}
    fig, ax = plt.subplots()
    pr.plot_eval_trace(evals, "kl", pr.KL_LABEL, ax=ax, colors={"b": "tab:green"})
    assert to_rgba(ax.lines[1].get_color()) == to_rgba("tab:green")
    assert _legend_texts(ax) == ["a", "b"]
    plt.close(fig)
