"""Gaussian plot helpers draw on the Axes they are given, label units, and print the right KL."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kl_helpers.plotting.gaussians import (  # noqa: E402
    plot_gaussian_pair,
    plot_kl_heatmap,
    plot_kl_vs_mu,
    plot_pmf_pair,
)
from kl_helpers.theory.gaussian import kl_normal  # noqa: E402


def test_helpers_return_the_axes_they_draw_on():
    fig, axes = plt.subplots(1, 4)
    assert plot_pmf_pair([0.5, 0.5], [0.2, 0.8], ax=axes[0]) is axes[0]
    assert plot_gaussian_pair(3.0, ax=axes[1]) is axes[1]
    assert plot_kl_vs_mu(np.linspace(-2, 4, 50), marks=(3.0,), ax=axes[2]) is axes[2]
    assert plot_kl_heatmap(np.linspace(-2, 4, 20), np.linspace(0.5, 3, 10), ax=axes[3]) is axes[3]
    assert "nats" in axes[2].get_ylabel()
    plt.close(fig)


def test_gaussian_pair_annotates_the_closed_form_kl():
    fig, ax = plt.subplots()
    plot_gaussian_pair(5.0, 1.0, 1.0, 2.0, ax=ax)
    texts = [t.get_text() for t in ax.texts]
    assert f"KL(P‖Q) = {kl_normal(1.0, 2.0, 5.0, 1.0).item():.4f} nats" in texts
    plt.close(fig)


def test_gaussian_pair_leaves_room_for_the_kl_text_above_the_curves():
    fig, ax = plt.subplots()
    plot_gaussian_pair(-1.0, 1.0, 1.0, 2.0, ax=ax)  # the tallest Q of Figure A
    peak = max(line.get_ydata().max() for line in ax.get_lines())
    assert ax.get_ylim()[1] >= 1.3 * peak  # the text sits in the top 4% of the axes
    plt.close(fig)
