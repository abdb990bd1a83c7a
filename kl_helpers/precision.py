"""Mixed precision and the AdamW implementation: what the engine and ``KLTrainer`` both choose.

Introduced in notebook 06 (engine speed); ``KLTrainer`` uses the same bf16 test (notebook 12).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# AdamW implementation per device type for optimizer="auto". Measured on a 2-core CPU with the
# bundled MiniLM (22.7 M parameters): fused 0.010 s/step, foreach 0.068 s, for-loop 0.084 s
# (benchmarks/bench_engine.py prints these for the current machine).
FASTEST_ADAMW: dict[str, str] = {"cuda": "fused", "cpu": "fused", "mps": "foreach"}
ADAMW_FLAGS: dict[str, dict[str, bool]] = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "for_loop": {"foreach": False, "fused": False},
}


def native_bf16() -> bool:
    """True only on a GPU with bf16 in hardware (Ampere or newer), not one that emulates it.

    Colab's free T4 *emulates* bf16 (slow, and ``torch.cuda.is_bf16_supported()`` says True);
    there "auto" precision must stay fp32.
    """
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation: ask for compute capability 8+
        return torch.cuda.get_device_capability()[0] >= 8


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device`` (None = fp32); "auto": bf16 if native.
    ``device`` is a ``torch.device`` or a name such as "cpu"; ValueError for another precision."""
    device = torch.device(device)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if native_bf16() else None
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` to ``dtype`` on ``device`` (a ``torch.device`` or a name); nothing when
    ``dtype`` is None."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            yield


def fused_adamw_available(device: torch.device | str) -> bool:
    """True if torch has a fused AdamW for ``device`` (CPU: torch >= 2.4); False also where the
    device is not there (CUDA on a CPU-only build)."""
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, AssertionError):  # AssertionError: torch without CUDA
        return False
    return True


def adamw_implementation(choice: str, device: torch.device | str) -> str:
    """The AdamW implementation ``choice`` means on ``device`` ("auto": the fastest there is);
    ``device`` is a ``torch.device`` or a name. ValueError for a choice not in ADAMW_FLAGS."""
    device = torch.device(device)
    impl = FASTEST_ADAMW.get(device.type, "foreach") if choice == "auto" else choice
    if impl not in ADAMW_FLAGS:
        raise ValueError(f"optimizer must be auto or one of {tuple(ADAMW_FLAGS)}, got {choice!r}")
    if impl == "fused" and choice == "auto" and not fused_adamw_available(device):
        impl = "foreach"  # no fused AdamW here (CPU before torch 2.4): next fastest
    return impl


def make_adamw(
    params, lr: float, weight_decay: float, implementation: str, device: torch.device | str
) -> torch.optim.AdamW:
    """AdamW(lr, weight_decay) on every parameter, in ``implementation`` (see FASTEST_ADAMW)."""
    flags = ADAMW_FLAGS[adamw_implementation(implementation, device)]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **flags)
