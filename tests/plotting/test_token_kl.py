"""Notebook 09's plot helpers draw on the Axes they are given, with labelled axes in nats."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from kl_helpers.llm import token_kl as tk  # noqa: E402
from kl_helpers.plotting import token_kl as pt  # noqa: E402
from tests.plotting.plot_checks import assert_draws_on_given_axes  # noqa: E402


def test_each_helper_returns_its_axes_with_labels():
    draws = [
        lambda ax: pt.plot_estimator_spread({"k1": [1.0, 2.0], "k3": [1.5, 1.6]}, 1.5, ax=ax),
        lambda ax: pt.plot_token_trace([0.1, 0.2], {"k1": [0.3, -0.1]}, ax=ax),
        lambda ax: pt.plot_gradient_errors([1, 4], {"k1 in reward": [1.0, 0.5]}, ax=ax),
        lambda ax: pt.plot_length_curves([1, 2], {"sum": [0.5, 1.0]}, ax=ax),
        lambda ax: pt.plot_token_bars(["a", "b"], {"p": [0.4, 0.6]}, ax=ax),
    ]
    assert_draws_on_given_axes(draws)


def test_landscape_marks_minima():
    a, b = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    alphas, taus = torch.linspace(0, 1, 5), torch.tensor([0.5, 1.0, 2.0])
    land = tk.blend_landscape(a, b, tk.mixture_log_probs(a, b), alphas, taus, "reverse")
    assert land.shape == (3, 5) and (land >= 0).all()
    minima = tk.landscape_minima(land, alphas, taus)
    fig, ax = plt.subplots()
    assert pt.plot_landscape(land, alphas, taus, minima, "reverse", ax=ax) is ax
    assert sum(line.get_marker() == "*" for line in ax.lines) == 2
    assert "nats" in ax.figure.axes[-1].get_ylabel()
    plt.close(fig)
