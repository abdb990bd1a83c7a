"""kl_helpers.notebook.claims at its edges (issue 30): precision_name for every dtype and name,
None, float64, "FP32", "float32", an int; fingerprint with devices "cpu", "cuda:1",
torch.device("mps") and every precision; compare for every saved notebook, each field alone, no
fields, fields as one string, unknown fields and notebooks; SavedRunCheck's truth and skip note;
check_claims with booleans, NumPy bools, 0-d and 2-element tensors, callables (never called when
skipped), claims that raise, every failure listed at once, two skipped groups numbered in order,
no claims; ClaimReport's headline, text and HTML (escaped) with and without rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kl_helpers.notebook.claims import (
    SAVED_RUNS,
    ClaimReport,
    RunFingerprint,
    SavedRunCheck,
    check_claims,
    compare,
    fingerprint,
    precision_name,
)

FIELDS = [f.name for f in dataclasses.fields(RunFingerprint)]


@pytest.mark.parametrize(
    ("dtype", "name"),
    [(None, "fp32"), (torch.float32, "fp32"), (torch.float, "fp32"), (torch.bfloat16, "bf16"),
     (torch.float16, "fp16"), (torch.half, "fp16"), ("fp32", "fp32"), ("bf16", "bf16"),
     ("fp16", "fp16")],
)  # fmt: skip
def test_precision_name(dtype, name):
    assert precision_name(dtype) == name


@pytest.mark.parametrize("bad", [torch.float64, torch.int8, "FP32", "float32", "", 32])
def test_precision_name_refuses(bad):
    with pytest.raises(ValueError):
        precision_name(bad)


@pytest.mark.parametrize("device", ["cpu", "cuda:1", torch.device("mps"), torch.device("cuda", 0)])
def test_fingerprint_keeps_the_device_type(device):
    got = fingerprint("m", device, torch.bfloat16, "full")
    assert got == RunFingerprint("m", torch.device(device).type, "bf16", "full")
    assert got.describe() == f"m on {torch.device(device).type}, bf16, plan full"


@pytest.mark.parametrize("notebook", sorted(SAVED_RUNS))
def test_compare_each_field(notebook):
    saved = SAVED_RUNS[notebook]
    assert compare(notebook, saved).matches and compare(notebook, saved).differences == ()
    for name in FIELDS:
        run = dataclasses.replace(saved, **{name: "other"})
        check = compare(notebook, run)
        want = f"{name}: other here, {getattr(saved, name)} in the saved run"
        assert not check and check.differences == (want,)
        others = [f for f in FIELDS if f != name]
        assert compare(notebook, run, others).matches
        assert compare(notebook, run, [name]).differences == (want,)
        # failed before the fix: one string was read as its letters ("unknown field(s) ['a', ...]")
        assert compare(notebook, run, name).differences == (want,)
        assert compare(notebook, run, []).matches  # no fields: nothing to differ


def test_compare_refuses_unknown_names():
    run = SAVED_RUNS["07_beta_strength"]
    with pytest.raises(ValueError, match="no saved run for '07_beta'"):
        compare("07_beta", run)
    with pytest.raises(ValueError, match=r"unknown fingerprint field\(s\) \['seed'\]"):
        compare("07_beta_strength", run, ["plan", "seed"])


def test_skip_note():
    saved = SAVED_RUNS["06_bert_experiment"]
    run = dataclasses.replace(saved, device="cuda", precision="bf16")
    check = compare("06_bert_experiment", run)
    assert check.skip_note(3) == (
        f"skipped 3 claim(s) measured on the saved run ({saved.describe()}): "
        f"device: cuda here, cpu in the saved run; precision: bf16 here, fp32 in the saved run"
    )
    assert SavedRunCheck(saved, saved, ()).skip_note(3) == ""


def test_check_claims_evaluates_everything_then_raises():
    calls = []
    saved = SAVED_RUNS["07_beta_strength"]
    same = compare("07_beta_strength", saved)
    other = compare("07_beta_strength", dataclasses.replace(saved, plan="quick"))
    other_device = compare("07_beta_strength", dataclasses.replace(saved, device="mps"))
    always = {
        "bool": True,
        "numpy": np.bool_(True),
        "tensor": torch.tensor(True),
        "callable": lambda: calls.append("c") or 1,
    }
    skipped = {"never evaluated": lambda: calls.append("skipped") or False, "x": False}
    report = check_claims(always, (skipped, other), ({"run": lambda: True}, same),
                          ({"y": False}, other_device))  # fmt: skip
    assert calls == ["c"]
    assert report.rows == (
        ("bool", "holds"), ("numpy", "holds"), ("tensor", "holds"), ("callable", "holds"),
        ("never evaluated", "skipped [1]"), ("x", "skipped [1]"), ("run", "holds"),
        ("y", "skipped [2]"),
    )  # fmt: skip
    assert report.notes == (other.skip_note(2), other_device.skip_note(1))
    assert (
        report.n_held == 5
        and report.headline() == "8 claims: 5 hold, 3 skipped (not the saved run)"
    )
    failing = {
        "false": False,
        "raises": lambda: 1 / 0,
        "ambiguous": torch.tensor([True, False]),
        "holds": True,
        "zero": np.float64(0.0),
    }
    with pytest.raises(AssertionError) as info:
        check_claims(failing, ({"bad run": False}, same))
    text = str(info.value)
    assert text.startswith("5 claim(s) do not hold:")
    for name in ("false", "raises (raised ZeroDivisionError", "ambiguous (raised RuntimeError",
                 "zero", "bad run"):  # fmt: skip
        assert f"  - {name}" in text
    assert "holds" not in text


def test_claim_report_text_and_html():
    empty = check_claims({})
    assert (
        empty.rows == ()
        and empty.headline() == "0 claims: 0 hold"
        and str(empty) == empty.headline()
    )
    report = ClaimReport((("p < q & <b>", "holds"), ("r", "skipped [1]")), ("why <not>",))
    assert str(report).splitlines() == [
        "2 claims: 1 hold, 1 skipped (not the saved run)",
        "  holds        p < q & <b>",
        "  skipped [1]  r",
        "[1] why <not>",
    ]
    assert repr(report) == str(report)
    page = report._repr_html_()
    assert (
        "p &lt; q &amp; &lt;b&gt;" in page and "why &lt;not&gt;" in page and "<b>2 claims" in page
    )
    assert "✓ holds" in page and "✓ skipped" not in page
