"""kl_helpers.precision at its edges (issue 30): autocast_dtype for every precision on CPU, CUDA
and MPS devices given as torch.device or a name, with native bf16 on and off, and misspelt
precisions; autocast's dtype on a CPU matmul, off for None; fused_adamw_available against torch
building a fused AdamW, and for CUDA on a CPU-only build; adamw_implementation for every choice
and device type; make_adamw's step for every implementation, params as a generator or as groups,
against the stock ``torch.optim.AdamW`` in float64. A GPU is not needed (the device checks in
tests/device_checks.py run them on one)."""

from __future__ import annotations

import pytest
import torch

from kl_helpers import precision

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("device", [CPU, CUDA, MPS, "cpu", "cuda", "cuda:1"])
def test_autocast_dtype_table(monkeypatch, native, device):
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    on_cuda = str(device).startswith("cuda")
    want = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16,
            "auto": torch.bfloat16 if on_cuda and native else None}  # fmt: skip
    for choice, dtype in want.items():
        assert precision.autocast_dtype(choice, device) is dtype, (choice, device)


@pytest.mark.parametrize("choice", ["FP32", "bfloat16", "half", "", None])
def test_autocast_dtype_refuses_other_names(choice):
    with pytest.raises(ValueError, match="precision must be auto, fp32, bf16 or fp16"):
        precision.autocast_dtype(choice, CPU)


@pytest.mark.parametrize("device", [CPU, "cpu"])
def test_autocast_context(device):
    a = torch.ones(2, 2)
    with precision.autocast(device, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    with precision.autocast(device, None):
        assert (a @ a).dtype == torch.float32
    assert (a @ a).dtype == torch.float32


def fused_builds(device) -> bool:
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except Exception:  # whatever torch raises for it
        return False
    return True


@pytest.mark.parametrize("device", [CPU, "cpu", CUDA, torch.device("meta")])
def test_fused_adamw_available(device):
    # CUDA on a CPU-only build raised torch's AssertionError instead of answering False
    assert precision.fused_adamw_available(device) is fused_builds(device)


@pytest.mark.parametrize("device", [CPU, "cpu", CUDA, MPS, torch.device("meta"), "xla"])
def test_adamw_implementation(device):
    kind = torch.device(device).type
    fastest = {"cuda": "fused", "cpu": "fused", "mps": "foreach"}.get(kind, "foreach")
    if fastest == "fused" and not fused_builds(device):
        fastest = "foreach"
    assert precision.adamw_implementation("auto", device) == fastest
    for choice in ("fused", "foreach", "for_loop"):
        assert precision.adamw_implementation(choice, device) == choice
    for bad in ("Fused", "adam", None):
        with pytest.raises(ValueError, match="optimizer must be auto or one of"):
            precision.adamw_implementation(bad, device)


def stock_step(params, lr, wd, groups=None):
    """Two steps of the stock AdamW (default implementation) on copies, with fixed gradients."""
    copies = [p.detach().clone().requires_grad_() for p in params]
    if groups is not None:
        copies_or_groups = [{"params": [c], **g} for c, g in zip(copies, groups, strict=True)]
    else:
        copies_or_groups = copies
    opt = torch.optim.AdamW(copies_or_groups, lr=lr, weight_decay=wd)
    for _ in range(2):
        for c in copies:
            c.grad = torch.cos(torch.arange(c.numel(), dtype=c.dtype)).reshape(c.shape)
        opt.step()
    return copies


@pytest.mark.parametrize("implementation", ["auto", "fused", "foreach", "for_loop"])
@pytest.mark.parametrize("device", [CPU, "cpu"])
def test_make_adamw_is_the_stock_adamw(implementation, device):
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(3, 2, generator=g, dtype=torch.float64),
             torch.randn(4, generator=g, dtype=torch.float64)]  # fmt: skip
    params = [p.clone().requires_grad_() for p in start]
    opt = precision.make_adamw((p for p in params), 0.1, 0.5, implementation, device)
    assert opt.defaults["lr"] == 0.1 and opt.defaults["weight_decay"] == 0.5
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 2
    for _ in range(2):
        for p in params:
            p.grad = torch.cos(torch.arange(p.numel(), dtype=p.dtype)).reshape(p.shape)
        opt.step()
    for got, want, first in zip(params, stock_step(start, 0.1, 0.5), start, strict=True):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
        assert not torch.allclose(got, first)  # the step did something


def test_make_adamw_keeps_the_callers_groups():
    start = [torch.ones(2, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)]
    params = [p.clone().requires_grad_() for p in start]
    groups = [{"weight_decay": 0.0}, {"lr": 0.01}]
    caller_groups = [{"params": [p], **g} for p, g in zip(params, groups, strict=True)]
    opt = precision.make_adamw(caller_groups, 0.1, 0.5, "for_loop", CPU)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(0.1, 0.0), (0.01, 0.5)]
    for _ in range(2):
        for p in params:
            p.grad = torch.cos(torch.arange(p.numel(), dtype=p.dtype)).reshape(p.shape)
        opt.step()
    for got, want in zip(params, stock_step(start, 0.1, 0.5, groups), strict=True):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
