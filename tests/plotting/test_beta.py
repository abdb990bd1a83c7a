"""Notebook 07's plot helpers draw on the Axes they are given and put the right things there."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kl_helpers.plotting import beta as pb  # noqa: E402
from kl_helpers.studies import metrics  # noqa: E402
from kl_helpers.theory import optima


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


def test_crossing_and_theory_plots_return_axes():
    fig, axes = plt.subplots(1, 2)
    assert pb.plot_crossing_beta(np.linspace(0.01, 0.49, 30), ax=axes[0]) is axes[0]
    table = pd.DataFrame(
        {"method": ["forward", "reverse"], "predicted": [0.6, 0.9], "trained": [0.62, 0.93]}
    )
    assert pb.plot_theory_vs_trained(table, ax=axes[1], tolerance=0.05) is axes[1]
    plt.close(fig)


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
