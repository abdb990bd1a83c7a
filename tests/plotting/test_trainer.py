"""Notebook-12 plot helpers draw on the Axes they are given, with units, plot the real gap and
keep their legends off the data."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kl_helpers.plotting.trainer import GAP_FLOOR, plot_abs_gap, plot_curve_pair  # noqa: E402

STEPS = [1, 2, 3]
CURVES = {
    "task": ([1.0, 0.5, 0.25], [1.0, 0.5001, 0.25]),
    "KL": ([0.0, 0.1, 0.2], [0.0, 0.1, 0.2]),
}


def test_helpers_return_their_axes_and_label_units():
    fig, axes = plt.subplots(1, 2)
    assert plot_curve_pair(STEPS, CURVES, ax=axes[0]) is axes[0]
    assert plot_abs_gap(STEPS, CURVES, tolerance=1e-4, ax=axes[1]) is axes[1]
    for ax in axes:
        assert "nats" in ax.get_ylabel() and ax.get_xlabel() == "optimizer step"
    assert len(axes[0].get_lines()) == 4  # two runs per curve
    task_gap = axes[1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(task_gap, [GAP_FLOOR, 1e-4, GAP_FLOOR], rtol=1e-6)  # 0 floored
    assert "nats" in axes[1].get_legend().get_texts()[-1].get_text()  # the tolerance line
    plt.close(fig)


def test_legends_do_not_cover_the_data():
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_curve_pair(STEPS, CURVES, ax=axes[0])
    plot_abs_gap(STEPS, CURVES, tolerance=1e-4, ax=axes[1])
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer))  # outside the plotting area
        assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)
    left_legend = axes[0].get_legend().get_window_extent(renderer)
    assert left_legend.x1 < axes[1].get_tightbbox(renderer).x0  # clear of the right panel's labels
    plt.close(fig)
