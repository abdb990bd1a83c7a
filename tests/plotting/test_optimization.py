"""Notebook 03 and 05 figures: labelled floors, directions in legends, visible markers."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from kl_helpers.plotting.fitting import plot_gaussian_fits, plot_kl_landscape  # noqa: E402
from kl_helpers.plotting.optimization import (  # noqa: E402
    plot_ascent_gaps,
    plot_beta_tradeoff,
    plot_kl_gap,
)
from kl_helpers.theory.mixtures import GaussianMixture  # noqa: E402


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_floored_curves_come_with_a_labelled_floor():
    fig, axes = plt.subplots(1, 2)
    plot_ascent_gaps({"β=1": torch.tensor([0.5, 1.0, 1.0])}, {"β=1": 1.0}, ax=axes[0])
    plot_kl_gap(torch.tensor([1.0, 0.0]), ax=axes[1])
    for ax in axes:
        assert any("plotting floor 1e-12" in t for t in legend_texts(ax))
    plt.close(fig)


def test_tradeoff_legend_names_the_direction():
    fig, ax = plt.subplots()
    names = ("forward KL: y = KL(p_ref‖p)", "reverse KL: y = KL(p‖p_ref)")
    plot_beta_tradeoff(
        [0.1, 1.0], {n: [0.1, 0.5] for n in names}, {n: [1.0, 0.2] for n in names}, ax=ax
    )
    assert legend_texts(ax) == list(names) and "direction" in ax.get_ylabel()
    plt.close(fig)


def test_fits_legend_sits_above_the_peaks_and_end_stars_on_top():
    p = GaussianMixture(weights=(0.4, 0.6), means=(-3.0, 3.0), sigmas=(1.0, 1.0))
    fig, axes = plt.subplots(1, 2)
    plot_gaussian_fits(p, {"fit": (3.0, 1.0)}, ax=axes[0])
    peak = max(line.get_ydata().max() for line in axes[0].get_lines())
    assert axes[0].get_ylim()[1] >= 1.5 * peak
    mus, sigmas = torch.linspace(-2, 2, 5), torch.linspace(0.5, 2, 4)
    path = torch.tensor([[0.0, 1.0], [1.0, 1.5]])
    plot_kl_landscape(mus, sigmas, torch.rand(4, 5), {"A": path, "B": path}, "t", ax=axes[1])
    stars = [line for line in axes[1].get_lines() if line.get_marker() == "*"]
    assert len(stars) == 2 and all(s.get_zorder() >= 5 for s in stars)
    assert stars[0].get_markersize() > stars[1].get_markersize()  # both visible when they meet
    plt.close(fig)


def test_a_fit_keeps_its_colour_in_every_notebook_03_panel():
    from matplotlib.colors import to_rgba

    from kl_helpers.plotting.fitting import plot_discrete_fits

    p = GaussianMixture(weights=(0.4, 0.6), means=(-3.0, 3.0), sigmas=(1.0, 1.0))
    colors = {"forward": "tab:blue", "reverse from A": "tab:orange"}
    fig, axes = plt.subplots(1, 3)
    plot_gaussian_fits(
        p, {"forward": (0.6, 3.1), "reverse from A": (-3.0, 1.0)}, ax=axes[0], colors=colors
    )
    curves = {line.get_label().split(":")[0]: line.get_color() for line in axes[0].get_lines()}
    mus, sigmas = torch.linspace(-2, 2, 5), torch.linspace(0.5, 2, 4)
    path = torch.tensor([[0.0, 1.0], [1.0, 1.5]])
    plot_kl_landscape(
        mus,
        sigmas,
        torch.rand(4, 5),
        {"forward": path, "reverse from A": path},
        "t",
        ax=axes[1],
        colors=colors,
        linestyles={"reverse from A": "--"},
    )
    paths = {line.get_label(): line for line in axes[1].get_lines() if line.get_marker() == "None"}
    plot_discrete_fits(
        torch.tensor([0.5, 0.5]),
        {k: torch.tensor([0.4, 0.6]) for k in colors},
        ax=axes[2],
        colors=colors,
    )
    for label, color in colors.items():
        assert to_rgba(curves[label]) == to_rgba(paths[label].get_color()) == to_rgba(color)
        bars = [c for c in axes[2].containers if c.get_label() == label][0]
        assert all(bar.get_facecolor() == to_rgba(color) for bar in bars)
    assert paths["reverse from A"].get_linestyle() == "--"
    legend = axes[1].get_legend()  # below the axes, off the contours
    assert legend.get_bbox_to_anchor().transformed(axes[1].transAxes.inverted()).y0 < 0
    plt.close(fig)


def test_a_beta_has_one_colour_in_both_rlhf_panels():
    from matplotlib.colors import to_rgba

    from kl_helpers.plotting import beta_color
    from kl_helpers.plotting.optimization import plot_policies

    betas = [0.05, 1.0, 30.0]
    colors = {f"β={b:g}": beta_color(b) for b in betas}
    fig, axes = plt.subplots(1, 2)
    plot_policies({n: [0.5, 0.5] for n in colors}, ["A", "B"], ax=axes[0], colors=colors)
    plot_ascent_gaps(
        {n: torch.tensor([0.0, 0.5]) for n in colors},
        dict.fromkeys(colors, 1.0),
        ax=axes[1],
        colors=colors,
    )
    lines = {line.get_label(): line.get_color() for line in axes[1].get_lines()}
    for name, color in colors.items():
        bars = [c for c in axes[0].containers if c.get_label() == name][0]
        assert all(bar.get_facecolor() == to_rgba(color) for bar in bars)
        assert to_rgba(lines[name]) == to_rgba(color)
    plt.close(fig)
