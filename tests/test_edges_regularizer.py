"""kl_helpers.regularizer at the edges its docstrings name (issue 30): temperature limits, tiny
divergences, every dtype, masked positions holding garbage, labels that are not class ids, empty
batches, every keyword; check_direction on every direction, the old names, "sft", other case,
None and numbers. Expected values come from mpmath / Python loops, never from kl_helpers."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from kl_helpers.regularizer import (
    DIRECTIONS,
    check_direction,
    check_js_weight,
    divergence_from_logits,
    generalised_js_from_logits,
    masked_mean,
    masked_sum,
    per_token_divergence,
    regularised_terms,
    token_mask,
)
from tests.test_regularizer import naive_row

INF = math.inf


def exact_row(policy, ref, direction: str, pi: float = 0.5, t: float = 1.0) -> float:
    """One row in 60-digit mpmath: KL(ref‖policy), KL(policy‖ref) or JS_π(ref‖policy)."""
    with mpmath.workdps(60):

        def softmax(row):
            row = [mpmath.mpf(float(v)) / mpmath.mpf(t) for v in row]
            m = max(row)
            e = [mpmath.exp(v - m) for v in row]
            z = mpmath.fsum(e)
            return [v / z for v in e]

        def kl(a, b):
            return mpmath.fsum(x * mpmath.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)

        new, old = softmax(policy), softmax(ref)
        if direction == "forward":
            return float(kl(old, new))
        if direction == "reverse":
            return float(kl(new, old))
        mix = [pi * r + (1 - pi) * n for r, n in zip(old, new, strict=True)]
        return float(pi * kl(old, mix) + (1 - pi) * kl(new, mix))


def logits(*shape: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# --- divergence_from_logits -----------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("temperature", [1e-3, 1e4, 1e7])
def test_temperature_limits_match_mpmath(direction, temperature):
    """T → 0: KL grows like 1/T; T → ∞: KL ~ 1/T² keeps 1e-6 relative accuracy above the
    documented 1e-9 floor (T = 1e4) and 1e-15 absolute below it (T = 1e7: KL ≈ 5e-15)."""
    policy, ref = logits(3, 7, seed=1).double(), logits(3, 7, seed=2).double()
    got = divergence_from_logits(policy, ref, direction, js_weight=0.3, temperature=temperature)
    want = [
        exact_row(p, r, direction, 0.3, temperature)
        for p, r in zip(policy.tolist(), ref.tolist(), strict=True)
    ]
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(want, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_near_identical_logits_keep_a_1e_9_divergence(direction):
    base = logits(2, 500, seed=3)
    policy, ref = base.double(), (base + 1e-4 * logits(2, 500, seed=4, scale=1.0)).double()
    got = divergence_from_logits(policy.float(), ref.float(), direction, js_weight=0.5)
    want = [exact_row(p, r, direction) for p, r in zip(policy.tolist(), ref.tolist(), strict=True)]
    assert 1e-10 < min(want) < 1e-7
    assert got.tolist() == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(
    ("dtypes", "out"),
    [
        ((torch.float16, torch.float16), torch.float32),
        ((torch.bfloat16, torch.bfloat16), torch.float32),
        ((torch.float32, torch.float32), torch.float32),
        ((torch.float64, torch.float64), torch.float64),
        ((torch.bfloat16, torch.float16), torch.float32),
        ((torch.float16, torch.float64), torch.float64),
        ((torch.int64, torch.int64), torch.float32),
    ],
)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_output_dtype_and_value_for_every_input_dtype(dtypes, out, direction):
    policy = (logits(2, 6, seed=5) * 3).round().to(dtypes[0])
    ref = (logits(2, 6, seed=6) * 3).round().to(dtypes[1])
    got = divergence_from_logits(policy, ref, direction, js_weight=0.7)
    want = [
        naive_row(p, r, direction, 0.7, 1.0)
        for p, r in zip(policy.double().tolist(), ref.double().tolist(), strict=True)
    ]
    assert got.dtype == out and got.device == policy.device
    assert got.tolist() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_huge_logits_are_finite_with_finite_gradient(direction):
    policy = torch.tensor([[1e30, 0.0, -1e30], [3e4, -3e4, 0.0]], requires_grad=True)
    ref = torch.tensor([[0.0, 1e30, 0.0], [-3e4, 3e4, 0.0]])
    value = divergence_from_logits(policy, ref, direction)
    value.sum().backward()
    # ref puts all its mass on class 1, the policy all on class 0: KL = the logit gap, JS = log 2.
    want = {"forward": [1e30, 6e4], "reverse": [1e30, 6e4], "js": [math.log(2)] * 2}[direction]
    assert value.tolist() == pytest.approx(want, rel=1e-6)
    assert torch.isfinite(policy.grad).all()


def test_empty_batch_gives_empty_result():
    for direction in DIRECTIONS:
        got = divergence_from_logits(torch.zeros(0, 4), torch.zeros(0, 4), direction)
        assert got.shape == (0,) and got.dtype == torch.float32
        got = divergence_from_logits(torch.zeros(2, 0, 4), torch.zeros(2, 0, 4), direction)
        assert got.shape == (2, 0)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", [(), (3, 0), (2, 2, 0)])
def test_no_class_axis_or_no_class_raises_value_error(direction, shape):
    """A KL needs a distribution: 0-d logits or an empty last dim (V = 0) name the shape."""
    with pytest.raises(ValueError, match=re_shape(shape)):
        divergence_from_logits(torch.zeros(shape), torch.zeros(shape), direction)


def re_shape(shape: tuple[int, ...]) -> str:
    import re

    return re.escape(str(tuple(shape)))


@pytest.mark.parametrize("bad", [-0.1, 1.1, math.nan, INF])
def test_js_weight_outside_unit_interval_or_nan_raises(bad):
    with pytest.raises(ValueError, match="js_weight"):
        check_js_weight(bad)
    with pytest.raises(ValueError, match="js_weight"):
        divergence_from_logits(logits(1, 3), logits(1, 3, seed=1), "js", js_weight=bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, -INF])
def test_nonpositive_or_nan_temperature_raises(bad):
    with pytest.raises(ValueError, match="temperature"):
        divergence_from_logits(logits(1, 3), logits(1, 3, seed=1), "reverse", temperature=bad)


def test_js_weight_is_ignored_outside_js():
    policy, ref = logits(2, 5, seed=7).double(), logits(2, 5, seed=8).double()
    for direction in ("forward", "reverse"):
        got = divergence_from_logits(policy, ref, direction, js_weight=0.9)
        want = [
            naive_row(p, r, direction, 0.5, 1)
            for p, r in zip(policy.tolist(), ref.tolist(), strict=True)
        ]
        assert got.tolist() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_unmasked_rows_without_a_distribution_give_nan(direction):
    """The narrowed promise: NaN / +inf logits or a row of −inf only have no softmax: NaN."""
    ref = torch.zeros(3, 3)
    policy = torch.tensor([[math.nan, 0.0, 0.0], [INF, 0.0, 0.0], [-INF, -INF, -INF]])
    assert torch.isnan(divergence_from_logits(policy, ref, direction)).all()


# --- generalised_js_from_logits --------------------------------------------------------------


def test_generalised_js_limits_and_log2_bound():
    p, q = logits(3, 6, seed=9).double(), logits(3, 6, seed=10).double()
    rows = list(zip(p.tolist(), q.tolist(), strict=True))
    kl_pq = [naive_row(b, a, "forward", 0, 1) for a, b in rows]  # KL(P‖Q): P weights
    kl_qp = [naive_row(b, a, "reverse", 0, 1) for a, b in rows]
    eps = 1e-7
    assert (generalised_js_from_logits(p, q, eps) / eps).tolist() == pytest.approx(kl_pq, rel=1e-5)
    near1 = generalised_js_from_logits(p, q, 1 - eps) / eps
    assert near1.tolist() == pytest.approx(kl_qp, rel=1e-5)
    # disjoint supports: JS_½ reaches log 2 exactly; −inf in both in one class gives no NaN.
    a = torch.tensor([[0.0, -INF, -INF], [0.0, -INF, 1.0]])
    b = torch.tensor([[-INF, 0.0, -INF], [1.0, -INF, 0.0]])
    got = generalised_js_from_logits(a, b)
    assert got[0].item() == pytest.approx(math.log(2), rel=1e-7)
    want = naive_row([1.0, -INF, 0.0], [0.0, -INF, 1.0], "js", 0.5, 1)
    assert got[1].item() == pytest.approx(want, rel=1e-6)
    assert generalised_js_from_logits(a.half(), b.half()).dtype == torch.float32
    for bad in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match="mixing weight"):
            generalised_js_from_logits(p, q, bad)


# --- per_token_divergence, masked_sum, masked_mean ------------------------------------------


GARBAGE = [math.nan, INF, -INF, 1e38]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_masked_positions_hold_any_garbage(direction, dtype):
    policy, ref = logits(2, 3, 5, seed=11), logits(2, 3, 5, seed=12)
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]])  # ints, not bools: read as bools
    for i, (b, t) in enumerate([(0, 1), (1, 0), (1, 1)]):
        policy[b, t] = GARBAGE[i]
        ref[b, t] = GARBAGE[i + 1]
    policy, ref = policy.to(dtype).requires_grad_(True), ref.to(dtype)
    out = per_token_divergence(policy, ref, mask, direction, js_weight=0.2)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    for b in range(2):
        for t in range(3):
            want = 0.0
            if mask[b, t]:
                p, r = policy[b, t].double().tolist(), ref[b, t].double().tolist()
                want = naive_row(p, r, direction, 0.2, 1.0)
            assert out[b, t].item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    masked_mean(out, mask.bool()).backward()
    assert torch.isfinite(policy.grad).all() and (policy.grad[mask == 0] == 0).all()


def test_all_false_mask_gives_zeros_and_zero_gradient():
    policy = torch.full((2, 3, 4), math.nan, dtype=torch.bfloat16, requires_grad=True)
    out = per_token_divergence(policy, policy.detach(), torch.zeros(2, 3, dtype=torch.bool))
    assert out.dtype == torch.float32 and out.shape == (2, 3) and (out == 0).all()
    masked_mean(out, torch.zeros(2, 3, dtype=torch.bool)).backward()
    assert (policy.grad == 0).all()


def test_per_token_temperature_and_js_weight_are_passed_through():
    policy, ref = logits(1, 2, 4, seed=13).double(), logits(1, 2, 4, seed=14).double()
    mask = torch.tensor([[True, False]])
    got = per_token_divergence(policy, ref, mask, "js", js_weight=0.8, temperature=3.0)
    want = naive_row(policy[0, 0].tolist(), ref[0, 0].tolist(), "js", 0.8, 3.0)
    assert got.shape == (1, 2) and got[0].tolist() == pytest.approx([want, 0.0], rel=1e-10)


def test_masked_mean_and_sum_ignore_garbage_and_read_int_masks():
    values = torch.tensor([[2.0, math.nan, -INF], [INF, 4.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [0, 2, 1]])  # any non-zero is True
    assert masked_mean(values, mask).item() == pytest.approx((2 + 4 + 1) / 3)
    assert masked_sum(values, mask).tolist() == [2.0, 5.0]
    assert masked_sum(values, mask, dim=0).tolist() == [2.0, 4.0, 1.0]
    masked_mean(values, mask).backward()
    assert values.grad.flatten().tolist() == pytest.approx([1 / 3, 0, 0, 0, 1 / 3, 1 / 3])
    assert masked_mean(torch.zeros(0)).item() == 0.0
    assert masked_sum(torch.zeros(2, 0), torch.zeros(2, 0)).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="mask has shape"):
        masked_sum(values, mask[0])


# --- token_mask and regularised_terms ---------------------------------------------------------


def naive_terms(policy, ref, labels, direction, eps=0.0, t=1.0, pi=0.5, shift=False, n=None):
    """(task, divergence) by loops over the items (label ≠ −100) in float64."""
    policy, ref = policy.double(), ref.double()
    if policy.ndim == 2:
        items = [(policy[i], ref[i], int(y)) for i, y in enumerate(labels.tolist()) if y != -100]
    else:
        if shift:
            policy, ref, labels = policy[:, :-1], ref[:, :-1], labels[:, 1:]
        items = [
            (policy[b, s], ref[b, s], int(labels[b, s]))
            for b in range(labels.shape[0])
            for s in range(labels.shape[1])
            if labels[b, s] != -100
        ]
    task = div = 0.0
    for p, r, y in items:
        row = p.tolist()
        m = max(row)
        log_z = m + math.log(sum(math.exp(v - m) for v in row))
        nll = [log_z - v for v in row]
        task += (1 - eps) * nll[y] + eps * sum(nll) / len(nll)
        div += exact_row(row, r.tolist(), direction, pi, t)
    denom = max(n if n is not None else len(items), 1)
    return task / denom, div / denom


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_keyword_of_regularised_terms(direction):
    policy, ref = logits(2, 5, 6, seed=15), logits(2, 5, 6, seed=16)
    labels = torch.tensor([[0, -100, 5, 3, 1], [-100, 2, 2, -100, 4]])
    kwargs = dict(js_weight=0.25, temperature=0.5, shift=True, num_items_in_batch=9)
    task, div = regularised_terms(policy, ref, labels, direction, label_smoothing=0.3, **kwargs)
    want = naive_terms(policy, ref, labels, direction, 0.3, 0.5, 0.25, True, 9)
    assert (task.item(), div.item()) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("scale", [1e-6, 1e3])
def test_label_smoothing_near_one_and_extreme_logit_scales(scale):
    policy, ref = logits(4, 5, seed=17, scale=scale), logits(4, 5, seed=18, scale=scale)
    labels = torch.tensor([1, -100, 0, 4])
    task, div = regularised_terms(policy, ref, labels, "reverse", label_smoothing=0.999)
    want = naive_terms(policy, ref, labels, "reverse", eps=0.999)
    assert math.isfinite(task.item()) and math.isfinite(div.item())
    assert (task.item(), div.item()) == pytest.approx(want, rel=1e-5, abs=1e-12)
    with pytest.raises(ValueError, match="label_smoothing"):
        regularised_terms(policy, ref, labels, label_smoothing=1.0)


@pytest.mark.parametrize("shape", ["token", "class"])
def test_ignored_labels_may_sit_on_garbage_logits(shape):
    if shape == "token":
        policy, ref = logits(2, 3, 4, seed=19), logits(2, 3, 4, seed=20)
        labels = torch.tensor([[1, -100, 3], [-100, 0, -100]])
        ignored = labels == -100
    else:
        policy, ref = logits(4, 4, seed=19), logits(4, 4, seed=20)
        labels = torch.tensor([1, -100, 3, -100])
        ignored = labels == -100
    clean_policy, clean_ref = policy.clone(), ref.clone()
    policy[ignored] = torch.tensor([math.nan, INF, -INF, 1e38])
    ref[ignored] = -INF
    policy.requires_grad_(True)
    task, div = regularised_terms(policy, ref, labels, "js")
    (task + div).backward()
    want = naive_terms(clean_policy, clean_ref, labels, "js")
    assert (task.item(), div.item()) == pytest.approx(want, rel=1e-5)
    assert torch.isfinite(policy.grad).all() and (policy.grad[ignored] == 0).all()


def test_pad_ids_are_items_unless_they_are_minus_100():
    """Only −100 is ignored: a pad id inside the vocabulary is a target like any other."""
    policy, ref = logits(1, 4, 5, seed=21), logits(1, 4, 5, seed=22)
    labels = torch.tensor([[2, 0, 0, -100]])  # 0 = a pad id the caller forgot to replace
    got = regularised_terms(policy, ref, labels, "forward")
    assert tuple(x.item() for x in got) == pytest.approx(
        naive_terms(policy, ref, labels, "forward"), rel=1e-5
    )
    _, _, mask = token_mask(policy, labels, shift=False)
    assert mask.tolist() == [[True, True, True, False]]


@pytest.mark.parametrize("bad", [5, 7, -1, -101])
@pytest.mark.parametrize("shape", ["token", "class"])
def test_labels_that_are_not_class_ids_raise_value_error(bad, shape):
    """A pad id past the vocabulary or a negative id other than −100 (IndexError before; a device
    assert that kills the CUDA context on GPUs) is named in a ValueError."""
    if shape == "token":
        policy, labels = logits(2, 3, 5, seed=23), torch.tensor([[1, -100, bad], [0, 4, 2]])
    else:
        policy, labels = logits(3, 5, seed=23), torch.tensor([1, bad, -100])
    with pytest.raises(ValueError, match=rf"labels must be class ids in \[0, 5\).*got {bad}$"):
        regularised_terms(policy, policy + 1, labels)


def test_float_labels_raise_value_error():
    with pytest.raises(ValueError, match="labels must be integer"):
        regularised_terms(logits(2, 3), logits(2, 3, seed=1), torch.tensor([1.0, 0.0]))


def test_shift_on_classification_logits_raises_value_error():
    """``shift`` pairs position t with label t + 1; classification logits have no positions."""
    with pytest.raises(ValueError, match="shift"):
        regularised_terms(logits(2, 3), logits(2, 3, seed=1), torch.tensor([1, 0]), shift=True)


@pytest.mark.parametrize(
    "num_items", [None, 0, 4, 7.5, torch.tensor(7), torch.tensor([7]), torch.tensor(7.0)]
)
def test_num_items_in_batch_as_int_float_or_tensor(num_items):
    policy, ref = logits(2, 3, 4, seed=24).double(), logits(2, 3, 4, seed=25).double()
    labels = torch.tensor([[1, -100, 3], [-100, 0, 2]])
    task, div = regularised_terms(policy, ref, labels, "reverse", num_items_in_batch=num_items)
    n = None if num_items is None else float(torch.as_tensor(num_items).reshape(()))
    want = naive_terms(policy, ref, labels, "reverse", n=n)
    assert task.dtype == div.dtype == torch.float64 and task.shape == div.shape == ()
    assert (task.item(), div.item()) == pytest.approx(want, rel=1e-10)


def test_num_items_in_batch_of_several_numbers_raises_value_error():
    policy, labels = logits(1, 2, 3), torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match=r"num_items_in_batch must be one number.*\(2,\)"):
        regularised_terms(policy, policy, labels, num_items_in_batch=torch.tensor([3, 4]))


@pytest.mark.parametrize(
    ("policy", "labels", "kwargs"),
    [
        (torch.zeros(0, 3, 4), torch.zeros(0, 3, dtype=torch.long), {}),
        (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), {}),
        (torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.long), {"shift": True}),
        (torch.zeros(2, 3, 4), torch.full((2, 3), -100), {"num_items_in_batch": 0}),
    ],
    ids=["no-sequences", "no-examples", "one-position-shifted", "all-ignored"],
)
def test_no_items_give_zero_not_nan(policy, labels, kwargs):
    policy = policy.bfloat16().requires_grad_(True)
    task, div = regularised_terms(policy, policy.detach() + 1, labels, "js", **kwargs)
    (task + div).backward()
    assert task.item() == 0.0 and div.item() == 0.0
    assert task.dtype == div.dtype == torch.float32
    assert (policy.grad == 0).all()


# ----------------------------------------------------------------------------- check_direction


@pytest.mark.parametrize("direction", ["forward", "reverse", "js"])
def test_check_direction_returns_every_direction_unchanged(direction):
    assert DIRECTIONS == ("forward", "reverse", "js")
    assert check_direction(direction) is direction


@pytest.mark.parametrize(("old", "new"), [("fkl", "forward"), ("rkl", "reverse")])
def test_check_direction_names_the_new_name_of_an_old_one(old, new):
    with pytest.raises(ValueError, match=f"'{old}' is now called '{new}'"):
        check_direction(old)


@pytest.mark.parametrize("bad", ["sft", "Forward", "forward ", "", None, 1, ["js"]])
def test_check_direction_refuses_everything_else_naming_the_choices(bad):
    # ["js"] raised TypeError (unhashable) from the old-name lookup before the fix
    with pytest.raises(ValueError, match=r"must be one of \('forward', 'reverse', 'js'\)"):
        check_direction(bad)
