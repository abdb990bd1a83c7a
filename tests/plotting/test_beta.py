"""Notebook 07's plot helpers draw on the Axes they are given and put the right things there."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kl_helpers.plotting import beta as pb  # noqa: E402
from kl_helpers.plotting import beta_color  # noqa: E402
from kl_helpers.studies import metrics  # noqa: E402
from kl_helpers.theory import optima  # noqa: E402


def _sweep_table():
    rows = []
    for seed in (0, 1, 2):
        rows.append({"method": "sft", "beta": 0.0, "seed": seed, "nll": 1.0 + 0.1 * seed})
        for m in ("forward", "reverse"):
            for b in (0.1, 1.0, 10.0):
                rows.append({"method": m, "beta": b, "seed": seed, "nll": 0.5 + 0.01 * seed + b})
    return pd.DataFrame(rows)


def test_label_probability_curves_and_crossing_dots():
    fig, ax = plt.subplots()
    betas = np.logspace(-2, 2, 50)
    assert pb.plot_label_probability_vs_beta(betas, [0.2, 0.6], ax=ax) is ax
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(dots) == 1  # r_y = 0.2 crosses, r_y = 0.6 never does
    assert dots[0].get_xdata()[0] == pytest.approx(optima.crossing_beta(0.2))
    assert ax.get_xscale() == "log"
    plt.close(fig)


def test_label_probability_colours_are_not_the_beta_palette():
    fig, ax = plt.subplots()
    pb.plot_label_probability_vs_beta(np.logspace(-2, 2, 20), [0.1, 0.3, 0.6], ax=ax)
    curve_colours = {tuple(ln.get_color()) for ln in ax.lines if ln.get_label().startswith("p_ref")}
    assert len(curve_colours) == 3
    betas = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    assert not curve_colours & {beta_color(b) for b in betas}
    plt.close(fig)


def test_crossing_and_theory_plots_return_axes():
    fig, axes = plt.subplots(1, 2)
    assert pb.plot_crossing_beta(np.linspace(0.01, 0.49, 30), ax=axes[0]) is axes[0]
    table = pd.DataFrame(
        {
            "method": ["forward", "reverse", "reverse"],
            "beta": [0.1, 0.1, 0.9],
            "predicted": [0.6, 0.9, 0.7],
            "trained": [0.62, 0.93, 0.72],
        }
    )
    assert pb.plot_theory_vs_trained(table, ax=axes[1], tolerance=0.05) is axes[1]
    points = [c for c in axes[1].collections if len(c.get_offsets())]
    colours = [tuple(c.get_facecolor()[0]) for c in points[1:]]  # after the tolerance band
    assert colours == [beta_color(0.1), beta_color(0.1), beta_color(0.9)]  # colour is β
    labels = axes[1].get_legend_handles_labels()[1]
    assert {"β = 0.1", "β = 0.9", pb.METHOD_STYLE["reverse"]["label"]} <= set(labels)
    plt.close(fig)


def test_run_style_colours_by_beta_and_marks_the_method():
    assert pb.run_style("forward", 0.3)["color"] == pb.run_style("reverse", 0.3)["color"]
    assert pb.run_style("forward", 0.3)["color"] == beta_color(0.3)
    assert pb.run_style("forward", 0.3)["marker"] != pb.run_style("reverse", 0.3)["marker"]
    assert pb.run_style("reverse", 0.0) == pb.run_style("forward", 0.0)  # β = 0 is SFT


@pytest.mark.parametrize("spread", ["minmax", "std"])
def test_metric_vs_beta_band_spans_the_seeds(spread):
    fig, ax = plt.subplots()
    assert pb.plot_metric_vs_beta(_sweep_table(), "nll", "NLL (nats)", ax=ax, spread=spread) is ax
    assert "nats" in ax.get_ylabel()
    fkl = [ln for ln in ax.lines if ln.get_label() == pb.METHOD_STYLE["forward"]["label"]][0]
    np.testing.assert_allclose(fkl.get_ydata(), [0.61, 1.51, 10.51])
    plt.close(fig)


def test_metric_vs_beta_rejects_unknown_spread():
    with pytest.raises(ValueError, match="spread"):
        pb.plot_metric_vs_beta(_sweep_table(), "nll", "NLL", spread="iqr")


def test_tradeoff_rings_the_frontier():
    pts = pd.DataFrame(
        {
            "method": ["forward", "forward", "reverse", "reverse"],
            "beta": [0.1, 1.0, 0.1, 1.0],
            "x": [1.0, 0.2, 0.9, 0.5],
            "y": [0.3, 0.8, 0.2, 0.9],
            "frontier": [False, True, True, False],
        }
    )
    fig, ax = plt.subplots()
    assert pb.plot_tradeoff(pts, "x", "y", "KL (nats)", "NLL (nats)", ax=ax) is ax
    rings = ax.collections[-1].get_offsets()
    assert len(rings) == 2
    assert not ax.texts  # no β written beside the points: nothing to overlap
    drawn = {
        tuple(map(float, c.get_offsets()[0])): tuple(c.get_facecolor()[0])
        for c in ax.collections[:-1]
        if len(c.get_offsets()) == 1
    }
    assert drawn[(0.2, 0.8)] == drawn[(0.5, 0.9)] == beta_color(1.0)  # same β, same colour
    assert drawn[(1.0, 0.3)] == beta_color(0.1)
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 >= ax.bbox.x1  # off the data
    plt.close(fig)


def test_reliability_diagram():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(100, 3, generator=gen, dtype=torch.float64), 1)
    labels = torch.randint(0, 3, (100,), generator=gen)
    bins = {"model": metrics.reliability_bins(probs, labels)}
    fig, ax = plt.subplots()
    assert pb.plot_reliability(bins, ax=ax) is ax
    assert ax.get_lines()[0].get_label() == "perfect calibration"
    plt.close(fig)
    fig, ax = plt.subplots()
    pb.plot_reliability(bins, ax=ax, styles={"model": pb.run_style("reverse", 1.0)})
    line = ax.get_lines()[1]
    assert line.get_color() == beta_color(1.0) and line.get_linestyle() == "--"
    plt.close(fig)


def test_metric_vs_beta_ignores_reference_rows():
    table = pd.concat(
        [
            _sweep_table(),
            pd.DataFrame([{"method": "reference", "beta": np.inf, "seed": 0, "nll": 1.1}]),
        ]
    )
    fig, ax = plt.subplots()
    pb.plot_metric_vs_beta(table, "nll", "NLL (nats)", ax=ax)
    np.testing.assert_allclose(ax.get_xticks(), [0.1, 1.0, 10.0])
    plt.close(fig)
