"""Checks for the notebooks' edit cells: what a reader may change there, validated once.

Notebooks 06 (βs, seed, shown β), 07 (grid, seeds), 10 (the sweep's βs, through ``RLHFPlan``) and
12 (the run) pass the edited values through these functions in the cell right after the edit
cell (08 validates its plan in ``retention.edited_plan``), so an inconsistent edit fails there
with a message that says what to change, and every later cell derives what it shows from what
ran. Introduced in notebook 06.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from kl_helpers._validate import real


def check_betas(betas: Iterable[float], name: str = "BETAS") -> tuple[float, ...]:
    """Distinct, positive, finite βs as floats in ascending order; ValueError otherwise.

    Each β is one number (Python, NumPy or a 0-d tensor; not a string or a bool); two βs within
    1e-12 relative of each other are one β twice (as ``same_betas`` and ``shown_beta`` read them).
    """
    if isinstance(betas, (str, bytes)):
        raise ValueError(f"{name} must be a list or tuple of numbers, e.g. (0.05, 2.0)")
    try:
        values = [real(b, name) for b in betas]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list or tuple of numbers, e.g. (0.05, 2.0)") from err
    if not values:
        raise ValueError(f"{name} is empty: give at least one β > 0, e.g. (0.05, 2.0)")
    bad = [b for b in values if not (math.isfinite(b) and b > 0)]
    if bad:
        raise ValueError(
            f"{name} must hold finite βs > 0 (β = 0 is plain SFT, which always runs); remove {bad}"
        )
    ordered = sorted(values)
    if any(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(ordered, ordered[1:], strict=False)):
        raise ValueError(f"{name} lists a β twice: {values}; keep each β once")
    return tuple(ordered)


def check_seeds(seeds: Iterable[int], name: str = "SEEDS") -> tuple[int, ...]:
    """Distinct non-negative integer seeds (Python or NumPy ints), in the order given, as Python
    ints; ValueError otherwise (a bool, a float, a string)."""
    if isinstance(seeds, (str, bytes)):
        raise ValueError(f"{name} must be a list or tuple of integers, e.g. (0, 1)")
    try:
        values = list(seeds)
    except TypeError as err:
        raise ValueError(f"{name} must be a list or tuple of integers, e.g. (0, 1)") from err
    if not values:
        raise ValueError(f"{name} is empty: give at least one seed, e.g. (0,)")
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0]
    if bad:
        raise ValueError(f"{name} must hold integers >= 0; replace {bad}")
    values = [int(s) for s in values]
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a seed twice: {values}; keep each seed once")
    return tuple(values)


def check_seed(seed: int, name: str = "SEED") -> int:
    """One non-negative integer seed; ValueError otherwise."""
    return check_seeds((seed,), name)[0]


def middle_beta(betas: Iterable[float]) -> float:
    """The middle of the sorted βs (the lower middle for an even count)."""
    values = check_betas(betas)
    return values[(len(values) - 1) // 2]


def shown_beta(betas: Iterable[float], show_beta: float | None = None) -> float:
    """The β a notebook shows: ``show_beta`` if it ran, the middle β if None; else ValueError
    (also for a ``show_beta`` that is no number: a string, a bool)."""
    values = check_betas(betas)
    if show_beta is None:
        return middle_beta(values)
    wanted = real(show_beta, "SHOW_BETA")
    for b in values:
        if math.isclose(b, wanted, rel_tol=1e-12):
            return b
    raise ValueError(
        f"SHOW_BETA = {show_beta:g} is not one of the βs that run, BETAS = "
        f"{tuple(values)}: set SHOW_BETA to one of them, or to None (the middle β, "
        f"{middle_beta(values):g})"
    )


def same_betas(a: Iterable[float], b: Iterable[float]) -> bool:
    """True if two β lists hold the same values (order and float spelling aside)."""
    x, y = sorted(float(v) for v in a), sorted(float(v) for v in b)
    if len(x) != len(y):
        return False
    return all(math.isclose(u, v, rel_tol=1e-12) for u, v in zip(x, y, strict=True))
