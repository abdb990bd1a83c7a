"""Notebook-10 plot helpers draw on the Axes they are given, with units, and plot the real gap."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kl_helpers.plotting.trainer import plot_abs_gap, plot_curve_pair  # noqa: E402


def test_helpers_return_their_axes_and_label_units():
    steps = [1, 2, 3]
    curves = {
        "task": ([1.0, 0.5, 0.25], [1.0, 0.5001, 0.25]),
        "KL": ([0.0, 0.1, 0.2], [0.0, 0.1, 0.2]),
    }
    fig, axes = plt.subplots(1, 2)
    assert plot_curve_pair(steps, curves, ax=axes[0]) is axes[0]
    assert plot_abs_gap(steps, curves, tolerance=1e-4, ax=axes[1]) is axes[1]
    assert "nats" in axes[0].get_ylabel() and "nats" in axes[1].get_ylabel()
    assert len(axes[0].get_lines()) == 4  # two runs per curve
    task_gap = axes[1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(task_gap, [1e-12, 1e-4, 1e-12], rtol=1e-6)  # zero gaps floored
    plt.close(fig)
