"""Notebook-08 plot helpers: one direction or both, task-KL and replay-KL on the same Axes."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from kl_helpers.plotting.retention import plot_retention_tradeoff, plot_retention_vs_beta  # noqa: E402


def _table() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        rows.append(("none", "sft", 0.0, seed, 0.01, 0.50 + seed / 100))
        for method in ("forward", "reverse"):
            for beta in (0.3, 3.0):
                rows.append(("task", method, beta, seed, beta / 5, 0.6 + beta / 30))
            rows.append(("replay", method, 0.3, seed, 0.02, 0.68))
    cols = ["kl_on", "method", "beta", "seed", "fit_nll", "accuracy"]
    return pd.DataFrame(rows, columns=cols).assign(task="article")


def test_tradeoff_draws_one_direction_with_replay_and_labels_units():
    fig, axes = plt.subplots(1, 3)
    one = plot_retention_tradeoff(
        _table(), "article", kl_on=("task", "replay"), methods=("forward",), ax=axes[0]
    )
    assert one is axes[0]
    labels = [t.get_text() for t in one.get_legend().get_texts()]
    assert len(labels) == 3 and labels[-1] == "SFT"  # forward on the task, forward on replay
    assert sum("replay" in x for x in labels) == 1
    assert "nats" in one.get_xlabel() and "forward" in one.get_title()
    both = plot_retention_tradeoff(_table(), "article", ax=axes[1])
    assert len(both.get_legend().get_texts()) == 3  # forward, reverse (task only), SFT
    assert plot_retention_vs_beta(_table(), "article", reference=0.68, ax=axes[2]) is axes[2]
    plt.close(fig)


def test_baselines_are_drawn_as_levels_and_infinite_ones_skipped():
    fig, axes = plt.subplots(1, 2)
    levels = {"majority class": 0.65, "class prior": float("inf")}
    ax = plot_retention_tradeoff(_table(), "article", reference=0.7, baselines=levels, ax=axes[0])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "majority class" in labels and "class prior" not in labels
    assert any("p_ref" in x for x in labels) and any("p_θ" in x for x in labels)
    flat = [ln.get_ydata()[0] for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1]
    assert 0.65 in flat and 0.7 in flat
    ax = plot_retention_vs_beta(_table(), "article", baselines={"class prior": 0.6}, ax=axes[1])
    assert "class prior" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_figure_legend_gathers_each_label_once_above_the_panels():
    from kl_helpers.plotting.retention import figure_legend

    fig, axes = plt.subplots(1, 2)
    for ax, y in zip(axes, (0.6, 0.7), strict=True):
        plot_retention_tradeoff(_table(), "article", reference=y, legend=False, ax=ax)
        assert ax.get_legend() is None
    plot_retention_vs_beta(_table(), "article", reference=0.7, ax=axes[1])  # a panel legend
    legend = figure_legend(fig)
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == len(set(labels)) and "SFT" in labels and "reference p_ref" in labels
    assert all(ax.get_legend() is None for ax in axes)
    fig.canvas.draw()
    top = max(ax.get_window_extent().y1 for ax in axes)
    assert legend.get_window_extent().y0 >= top  # above the panels, over no data
    plt.close(fig)
