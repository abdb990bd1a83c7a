"""Tests for kl_helpers.plotting.experiment on a hand-made RunResult (no training)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kl_helpers.engine.config import ExperimentConfig  # noqa: E402
from kl_helpers.engine.results import LossHistory, RunResult  # noqa: E402
from kl_helpers.plotting.experiment import (  # noqa: E402
    beta_colors,
    label_line_ends,
    plot_class_distribution,
    plot_collapse_vs_beta,
    plot_loss_histories,
    role_distributions,
)


def fake_run(method: str, beta: float, peak: float) -> RunResult:
    config = ExperimentConfig(method=method, beta=beta)
    steps = 5
    history = LossHistory(
        list(range(steps)), [1.0] * steps, [0.1] * steps, [0.2] * steps, beta, method
    )
    final = torch.tensor([[peak, (1 - peak) / 2, (1 - peak) / 2]] * 2, dtype=torch.float64)
    uniform = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    probs = {
        f"{k}/{s}": (final if k == "final" else uniform)
        for k in ("reference", "start", "final")
        for s in ("train", "test")
    }
    return RunResult(
        config,
        "k",
        "fake",
        "cpu",
        1.0,
        ("a", "b", "c"),
        ("x", "y"),
        (0, 0),
        ("u", "v"),
        (0, 0),
        history,
        probs,
    )


@pytest.fixture()
def runs():
    return [
        fake_run("sft", 0.0, 0.9),
        fake_run("forward", 0.1, 0.8),
        fake_run("forward", 0.5, 0.6),
        fake_run("reverse", 0.1, 0.85),
        fake_run("reverse", 0.5, 0.7),
    ]


def test_loss_histories_draw_one_line_per_run_plus_sft(runs):
    fig, ax = plt.subplots()
    assert plot_loss_histories(runs[0], runs[1:3], "total", ax=ax) is ax
    assert len(ax.lines) == 3
    assert ax.lines[0].get_ydata()[0] == pytest.approx(1.0 + 0.1 * 0.1)  # task + beta * fkl
    labels = {t.get_text(): t for t in ax.texts}  # each line's β at its end, outside the Axes
    assert set(labels) == {"β = 0.1", "β = 0.5", "SFT"}
    assert all(t.get_position()[0] > 1 for t in labels.values())
    assert labels["β = 0.1"].get_color() == ax.lines[0].get_color()
    with pytest.raises(ValueError, match="part must be"):
        plot_loss_histories(runs[0], runs[1:3], "bogus", ax=ax)
    plt.close(fig)


def test_class_distribution_bars_and_roles(runs):
    fig, ax = plt.subplots()
    dists = role_distributions(runs[0], runs[0], runs[2], runs[4], "test:1")
    assert list(dists) == ["reference", "SFT", "FKL β=0.5", "RKL β=0.5"]
    assert torch.allclose(dists["SFT"], torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64))
    assert plot_class_distribution(dists, ("a", "b", "c"), ax=ax) is ax
    assert len(ax.patches) == 4 * 3
    assert ax.get_legend() is not None
    ax.clear()
    plot_class_distribution(dists, ("a", "b", "c"), ax=ax, legend=False)
    assert ax.get_legend() is None  # the figure carries one legend for its panels
    with pytest.raises(ValueError, match="which must be"):
        role_distributions(runs[0], runs[0], runs[2], runs[4], "train:0")
    plt.close(fig)


def test_collapse_vs_beta_lines(runs):
    fig, ax = plt.subplots()
    assert plot_collapse_vs_beta(runs, "max_prob", ax=ax) is ax
    fkl_line = ax.lines[0]
    assert list(fkl_line.get_xdata()) == [0.1, 0.5]
    assert list(fkl_line.get_ydata()) == pytest.approx([0.8, 0.6])
    with pytest.raises(ValueError, match="metric must be"):
        plot_collapse_vs_beta(runs, "accuracy", ax=ax)
    plt.close(fig)


def test_beta_colors_distinct():
    colors = beta_colors([0.9, 0.1, 0.5])
    assert len(set(colors.values())) == 3


def test_line_end_labels_keep_apart_and_inside_the_height():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ends = [(0.50, "a", "k"), (0.51, "b", "k"), (0.52, "c", "k"), (0.99, "d", "k"), (1.0, "e", "k")]
    texts = label_line_ends(ax, ends, min_gap=0.05)
    heights = sorted(t.get_position()[1] for t in texts)
    assert all(b - a >= 0.05 - 1e-12 for a, b in zip(heights[:-1], heights[1:], strict=True))
    assert max(heights) <= 1.0 + 1e-12
    order = [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[1])]
    assert order == ["a", "b", "c", "d", "e"]  # the order of the line ends is kept
    plt.close(fig)
