"""One colour per β across the series: the palette depends on β alone, not on the other βs."""

import math

import matplotlib as mpl
import pytest

from kl_helpers.plotting import BETA_RANGE, COLORS, beta_color
from kl_helpers.plotting.experiment import beta_colors


def test_a_beta_has_the_same_colour_whatever_else_is_plotted():
    assert beta_colors([0.1, 0.5])[0.5] == beta_colors([0.5, 1.0, 10.0])[0.5] == beta_color(0.5)


def test_the_palette_is_viridis_on_a_log_scale_of_beta():
    low, high = (math.log10(b) for b in BETA_RANGE)
    x = (math.log10(0.5) - low) / (high - low)
    assert beta_color(0.5) == mpl.colormaps["viridis"](0.05 + 0.85 * x)
    assert beta_color(BETA_RANGE[0] / 10) == beta_color(BETA_RANGE[0])  # clipped below
    assert beta_color(BETA_RANGE[1] * 10) == beta_color(BETA_RANGE[1])  # and above
    series = (0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 3.0, 10.0, 30.0, 100.0)  # every β used
    assert len({beta_color(b) for b in series}) == len(series)
    assert beta_color(0.0) == mpl.colors.to_rgba(COLORS["sft"])


@pytest.mark.parametrize("beta", [-0.1, math.nan, math.inf])
def test_a_beta_that_is_no_penalty_strength_is_refused(beta):
    with pytest.raises(ValueError, match="beta must be"):
        beta_color(beta)
