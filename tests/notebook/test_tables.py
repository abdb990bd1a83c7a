"""kl_helpers.notebook.tables.tidy against Python's own rounding of each value."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kl_helpers.notebook.tables import tidy


def test_tidy_rounds_numbers_only_and_writes_no_negative_zero():
    df = pd.DataFrame({"name": ["a", "b", "c"], "x": [-0.0004, 1.23456, -2.5e-9], "n": [1, 2, 3]})
    out = tidy(df, 3)
    assert list(out["name"]) == ["a", "b", "c"]
    assert list(out["n"]) == [1, 2, 3]
    assert list(out["x"]) == [round(v, 3) + 0.0 for v in df["x"]]
    assert not any(math.copysign(1.0, v) < 0 for v in out["x"] if v == 0)
    assert df["x"].iloc[0] == -0.0004  # the input is not changed
    assert "-0.0" not in out.to_string()


@pytest.mark.parametrize("decimals", [-1, 1.5, True])
def test_tidy_refuses_a_decimals_it_cannot_mean(decimals):
    with pytest.raises(ValueError, match="decimals"):
        tidy(pd.DataFrame({"x": [1.0]}), decimals)
