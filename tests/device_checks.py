"""A stand-in accelerator for device tests without a GPU: the model on meta, CUDA's rules on top.

Putting the model on the ``meta`` device alone is not enough: meta kernels accept some mixes that
CUDA refuses (``meta @ cpu`` returns a meta tensor; CUDA raises), and a meta tensor cannot be
copied to the CPU, so a function that correctly returns its outputs on the CPU could not run.
:class:`OneDevice` is a ``TorchDispatchMode`` that sees every aten operator below autograd and

- raises :class:`DeviceMix` when one operator gets tensors on two devices, as CUDA does (a 0-dim
  CPU tensor counts as a scalar and may join any device; copies such as ``.to``/``.cpu()`` and
  ``copy_`` are the legal way across; CPU indices may index a tensor on any device);
- lets data leave the stand-in: a copy from ``meta`` to the CPU returns zeros of the right shape
  and dtype, and ``.item()`` of a meta tensor returns 0 (values are unknown; devices are checked).

Functions whose control flow depends on values (sampling loops, ``nonzero``, boolean masks of
unknown contents) cannot run on ``meta``; ``tests/test_devices.py`` lists them with their checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

ACCELERATOR = torch.device("meta")
aten = torch.ops.aten
COPIES = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


class DeviceMix(RuntimeError):
    """One operator received tensors on two devices (CUDA would raise here)."""


def _devices(args, kwargs) -> set[torch.device]:
    leaves, _ = tree_flatten((args, kwargs))
    return {
        t.device
        for t in leaves
        if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)
    }


class OneDevice(TorchDispatchMode):
    """Dispatch mode: CUDA's one-device rule on every operator, meta standing in for CUDA."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in COPIES:
            if func is aten._to_copy.default and args[0].device.type == "meta":
                target = kwargs.get("device") or args[0].device
                if torch.device(target).type == "cpu":  # meta → CPU: zeros of that shape/dtype
                    return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
            if func is aten.copy_.default and args[1].device.type == "meta":
                if args[0].device.type == "cpu":
                    return args[0].zero_()
            return func(*args, **kwargs)
        if func is aten._local_scalar_dense.default and args[0].device.type == "meta":
            dtype = args[0].dtype
            return False if dtype == torch.bool else 0.0 if dtype.is_floating_point else 0
        if func in INDEXING:  # indices on the CPU or the tensor's device; values on its device
            devices = _devices((args[0], *args[2:]), kwargs)
            devices |= {d for d in _devices(args[1], {}) if d.type != "cpu"}
        else:
            devices = _devices(args, kwargs)
        if len(devices) > 1:
            names = ", ".join(sorted(str(d) for d in devices))
            raise DeviceMix(f"{func} got tensors on {names}")
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_accelerator(*modules: torch.nn.Module) -> Iterator[None]:
    """Move ``modules`` to the stand-in accelerator (``meta``) and check every op while inside."""
    from torch.fx.experimental import _config as fx_config

    for module in modules:
        module.to(ACCELERATOR)
    # nonzero (boolean-mask indexing) on meta: assume every element is set; shapes stay valid.
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True), OneDevice():
        yield


def devices_of(value) -> set[str]:
    """Device types of every tensor inside ``value`` (nested tuples, lists, dicts, dataclasses)."""
    found: set[str] = set()

    def visit(x):
        if isinstance(x, torch.Tensor):
            found.add(x.device.type)
        return x

    if hasattr(value, "__dataclass_fields__"):
        value = {name: getattr(value, name) for name in value.__dataclass_fields__}
    tree_map(visit, value)
    return found
