"""Input checks shared by the divergence functions; each raises ValueError naming the problem."""

from __future__ import annotations

import math
import numbers
import operator

import torch

PROB_ATOL = 1e-5  # rows of a probability table must sum to 1 within this tolerance


def as_float_tensor(x: torch.Tensor | object, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``x`` as a floating tensor (float64 for Python/NumPy input, or ``like``'s dtype);
    ValueError for what is no array of numbers (a string, None, a ragged list)."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float64)
    dtype = like.dtype if like is not None else torch.float64
    if isinstance(x, (str, bytes)) or x is None:
        raise ValueError(f"expected numbers (a tensor, an array or a list), got {x!r}")
    try:
        return torch.as_tensor(x, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"expected numbers (a tensor, an array or a list), got {x!r}") from err


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Raise if ``a`` and ``b`` differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"shape mismatch: {names[0]} has shape {tuple(a.shape)} but {names[1]} has shape "
            f"{tuple(b.shape)}"
        )


def check_probabilities(p: torch.Tensor, name: str, atol: float = PROB_ATOL) -> None:
    """Raise if ``p`` has NaN, infinite or negative entries, or rows (last dim) not summing to 1
    within ``atol`` or, for half precision, the dtype's own resolution (eps: 7.8e-3 for
    bfloat16, 9.8e-4 for float16, whose rounded entries cannot sum to 1 more closely); rows are
    summed in float64. A table of no rows (shape ``(0, ..., V)``) passes."""
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the outcomes)")
    if torch.isnan(p).any():
        raise ValueError(f"{name} contains NaN")
    if torch.isinf(p).any():
        raise ValueError(f"{name} contains inf")
    if (p < 0).any():
        raise ValueError(f"{name} has negative probabilities (min {p.min().item():.3g})")
    sums = p.double().sum(dim=-1)
    if sums.numel() == 0:
        return
    worst = (sums - 1).abs().max().item()
    if p.is_floating_point():
        atol = max(atol, torch.finfo(p.dtype).eps)
    if worst > atol:
        raise ValueError(
            f"{name} rows must sum to 1 (within {atol:g}); the worst row is off by {worst:.3g}"
        )


def check_positive(value: torch.Tensor, name: str) -> None:
    """Raise unless every entry of ``value`` is > 0 (e.g. a standard deviation)."""
    if torch.isnan(value).any() or (value <= 0).any():
        raise ValueError(f"{name} must be > 0, got {value.tolist()}")


def probability_pair(
    p: torch.Tensor | object, q: torch.Tensor | object, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` and ``q`` as float tensors of one shape; with ``validate``, both checked as tables."""
    p = as_float_tensor(p)
    q = as_float_tensor(q, like=p)
    check_same_shape(p, q, ("p", "q"))
    if validate:
        check_probabilities(p, "p")
        check_probabilities(q, "q")
    return p, q


def discrete_outcomes(ref_probs: object, rewards: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(π_ref normalised, rewards) as 1-D float64 tensors of one length; ValueError naming the
    shapes, or on probabilities that are not a distribution or rewards that are not finite."""
    q = as_float_tensor(ref_probs).to(torch.float64)
    r = as_float_tensor(rewards).to(torch.float64)
    check_same_shape(r, q, ("rewards", "ref_probs"))
    if q.ndim != 1 or q.numel() == 0:
        raise ValueError(f"ref_probs must be 1-D and non-empty, got shape {tuple(q.shape)}")
    check_probabilities(q, "ref_probs")
    if not torch.isfinite(r).all():
        raise ValueError("rewards must be finite")
    return q / q.sum(), r


def token_ids(value: object, name: str = "eos_token_id") -> tuple[int, ...] | None:
    """``None``, one token id or several (``generation_config.eos_token_id`` may be a list, as for
    Llama 3) as a tuple of distinct non-negative ints in the given order; None for None or an
    empty list. Ids may be Python or NumPy ints, a tensor or a NumPy array. Raises ValueError on
    anything else (a negative id, a bool, a float, a nested list)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor) or hasattr(value, "__array__"):
        value = value.tolist()  # a 0-d tensor or array gives one int
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a token id or a list of them, got {value!r}")
    try:
        items = [value] if isinstance(value, numbers.Integral) else list(value)  # type: ignore
    except TypeError:
        raise ValueError(f"{name} must be a token id or a list of them, got {value!r}") from None
    ids: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 0:
            raise ValueError(f"{name} must be a token id or a list of them, got {value!r}")
        item = int(item)
        if item not in ids:
            ids.append(item)
    return tuple(ids) or None


def is_any(tokens: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    """Bool tensor like ``tokens``: True where the token is one of ``ids``."""
    return torch.isin(tokens, torch.tensor(ids, dtype=tokens.dtype, device=tokens.device))


def integer(value: object, name: str) -> int:
    """``value`` as an int (a Python or NumPy int, a 0-d integer tensor); ValueError naming
    ``name`` for anything else (a bool, a float such as 2.0, a string)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None


def real(value: object, name: str) -> float:
    """``value`` as a float: a Python or NumPy real, or a tensor/array of one element. ValueError
    naming ``name`` for anything else (a bool, a string, None, several values); NaN and ±inf pass
    (the caller says which of them it takes)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "__array__") and getattr(value, "size", None) == 1:
        value = value.item()  # type: ignore[union-attr]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be one real number, got {value!r}")
    return float(value)


def kl_weight(value: object, allow_zero: bool = False, name: str = "beta") -> float:
    """The KL weight β as a float: one real number > 0 (≥ 0 with ``allow_zero``), ``math.inf``
    allowed; ValueError naming it for NaN, a negative (or zero) value, a bool or a string."""
    beta = real(value, name)
    if math.isnan(beta) or beta < 0 or (beta == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} (math.inf allowed), got {value!r}")
    return beta
