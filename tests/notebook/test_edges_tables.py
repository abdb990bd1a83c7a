"""kl_helpers.notebook.tables.tidy at its edges (issue 30): values that round to -0.0 from below
(and -0.0 itself), NaN, ±inf, 1e300 and 5e-324, decimals 0, 3 and 15, float32 and nullable
Float64 columns with missing values, bool, string, datetime and category columns untouched, a
MultiIndex and an empty frame kept, the caller's frame unchanged, NumPy integer decimals, and the
refusals; expected values from Python's round() of each value."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kl_helpers.notebook.tables import tidy

VALUES = [
    -0.0004,
    -0.0,
    0.0,
    1.23456,
    -2.5e-9,
    1e300,
    5e-324,
    -1e-320,
    math.nan,
    math.inf,
    -math.inf,
]


def negative_zero(v):
    return v == 0 and math.copysign(1.0, v) < 0


@pytest.mark.parametrize("decimals", [0, 3, 15])
def test_floats_against_python_round(decimals):
    df = pd.DataFrame({"x": VALUES})
    out = tidy(df, decimals)["x"].tolist()
    for got, v in zip(out, VALUES, strict=True):
        if math.isnan(v):
            assert math.isnan(got)
        else:
            assert got == round(v, decimals) and not negative_zero(got)
    assert df["x"].tolist()[:2] == [-0.0004, -0.0] and negative_zero(df["x"].iloc[1])


def test_other_dtypes_and_shapes():
    index = pd.MultiIndex.from_tuples([("a", 1), ("b", 2), ("c", 3)], names=["k", "n"])
    df = pd.DataFrame(
        {
            "f32": np.array([-0.0004, 1.23456, 2.0], dtype=np.float32),
            "nullable": pd.array([-0.0004, None, 1.23456], dtype="Float64"),
            "flag": [True, False, True],
            "name": ["x", "-0.0", "y"],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "kind": pd.Categorical(["a", "b", "a"]),
        },
        index=index,
    )
    out = tidy(df, 2)
    assert out.index.equals(index) and list(out.columns) == list(df.columns)
    assert out["f32"].tolist() == [0.0, pytest.approx(1.23), 2.0] and not negative_zero(
        out["f32"].iloc[0]
    )
    assert out["nullable"].iloc[0] == 0.0 and not negative_zero(float(out["nullable"].iloc[0]))
    assert pd.isna(out["nullable"].iloc[1]) and out["nullable"].iloc[2] == 1.23
    for column in ("flag", "name", "when", "kind"):
        assert out[column].equals(df[column]), column
    empty = tidy(pd.DataFrame({"x": pd.Series([], dtype=float), "s": pd.Series([], dtype=str)}))
    assert empty.shape == (0, 2)


@pytest.mark.parametrize("decimals", [np.int64(2), np.int32(2)])
def test_numpy_integer_decimals(decimals):
    # failed before the fix: NumPy integers (e.g. from a config array) were refused
    df = pd.DataFrame({"x": [1.23456, -0.001]})
    assert tidy(df, decimals)["x"].tolist() == [1.23, 0.0]


@pytest.mark.parametrize("bad", [-1, np.int64(-1), 1.5, 2.0, True, np.bool_(True), "3", None])
def test_refusals(bad):
    with pytest.raises(ValueError, match="decimals must be an integer >= 0"):
        tidy(pd.DataFrame({"x": [1.0]}), bad)
