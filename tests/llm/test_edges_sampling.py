"""kl_helpers.llm.sampling at the edges its docstrings name (issue 30): draw_tokens against the
inverse CDF of the same uniforms computed with fractions (every dtype, rows not normalised, zeros
before, between and after the mass, a subnormal total, no rows, lists/NumPy); sample_tokens against
a naive sampler (each row run alone and unpadded at every step, float64 softmax in Python, the first
index whose cumulative sum exceeds u × total) for every keyword: temperatures from 1e-3 to inf (and
1e39, infinite in float32) with min_new_tokens, end ids as int/list/tuple/NumPy/ tensor,
pad_token_id, use_cache, num_generations, garbage ids at padded positions, ids and masks as
lists/NumPy/bool; shared_prefill against each prompt run alone; model_device on CPU, meta, mixed
devices (the first parameter's) and a module without parameters; forward_parameters and
cache_argument on forwards taking cache, past_key_values, both, neither or **kwargs, through a
PEFT-like wrapper and a real PeftModel; ids_in_vocabulary with -100, a pad id, V and 2**40 at masked
positions (masks as int, bool and float), the same ids unmasked (the id and the name said), ids all
inside (returned as they are), and models without input embeddings or without num_embeddings."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from kl_helpers.llm import model as llm
from kl_helpers.llm.sampling import (
    cache_argument,
    draw_tokens,
    forward_parameters,
    ids_in_vocabulary,
    model_device,
    sample_tokens,
    shared_prefill,
)

V = 8
INF = math.inf


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    m = llm.build_tiny_causal_lm(vocab_size=V, seed=0, hidden=16)
    with torch.no_grad():
        m.lm_head.weight.mul_(0.25)  # next-token probabilities about 0.01..0.4
    return m


def inverse_cdf(row: list[float], u: float) -> int:
    """First index whose exact cumulative sum exceeds u × the exact total."""
    row = [Fraction(x) for x in row]
    point, acc = Fraction(u) * sum(row), Fraction(0)
    for k, x in enumerate(row):
        acc += x
        if acc > point:
            return k
    raise AssertionError("u >= 1")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_draw_tokens_is_the_inverse_cdf_of_one_uniform_per_row(dtype):
    rows = torch.tensor(
        [[0.0, 3.0, 0.0, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0, 7.0]]
        + [[0.5, 0.0, 0.25, 0.0, 0.25]] * 97,
        dtype=dtype,
    )
    torch.manual_seed(3)
    got = draw_tokens(rows)
    torch.manual_seed(3)
    u = torch.rand(rows.shape[0], 1, dtype=torch.float64)[:, 0].tolist()
    want = [inverse_cdf(r, x) for r, x in zip(rows.double().tolist(), u, strict=True)]
    assert got.dtype == torch.long and got.shape == (100,) and got.tolist() == want
    assert not set(got[3:].tolist()) & {1, 3}  # probability 0 between the mass: never drawn


def test_a_token_of_probability_zero_is_never_drawn_even_beside_a_subnormal():
    torch.manual_seed(0)
    rows = torch.tensor([[0.0, 0.0, 5e-324, 0.0], [1e-300, 1.0, 0.0, 0.0]], dtype=torch.float64)
    draws = torch.stack([draw_tokens(rows) for _ in range(2000)])
    assert (draws[:, 0] == 2).all() and (draws[:, 1] == 1).all()


def test_draw_tokens_reads_lists_and_numpy_and_takes_no_rows():
    torch.manual_seed(1)
    assert draw_tokens([[0.0, 1.0], [1, 0]]).tolist() == [1, 0]
    assert draw_tokens(np.array([[0.0, 0.0, 2.0]], dtype=np.float32)).tolist() == [2]
    empty = draw_tokens(torch.zeros(0, 5))
    assert empty.shape == (0,) and empty.dtype == torch.long


@pytest.mark.parametrize(
    "probs",
    [[[0.5, -0.25, 0.75]], [[0.0, 0.0]], [[INF, 1.0]], [[math.nan, 1.0]], [[1e308, 1e308]]],
    ids=["negative", "zero-total", "inf", "nan", "total-overflows"],
)
def test_draw_tokens_refuses_rows_that_are_not_distributions(probs):
    """A negative entry with a positive total was drawn from silently (the CDF is then not
    monotone)."""
    with pytest.raises(ValueError, match="every row of probs"):
        draw_tokens(torch.tensor(probs, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3,), (2, 0), (1, 2, 3)])
def test_draw_tokens_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=re.escape(f"got {shape}")):
        draw_tokens(torch.ones(shape))


def naive_sample(model, prompts, max_new, temperature=1.0, eos=(), pad=None, min_new=0, g=1):
    """The sampler written out: each row's prompt (a list of real ids) plus its tokens so far run
    alone through the model; float64 softmax(logits / T) in Python with end ids at −inf for the
    first ``min_new`` steps (T = inf: uniform over the allowed ids); one torch.rand((B, 1))
    uniform per step for every row, as draw_tokens draws; pad after a row's end."""
    rows = [list(p) for p in prompts for _ in range(g)]
    out = [[] for _ in rows]
    done = [False] * len(rows)
    pad = eos[0] if pad is None and eos else pad
    for step in range(max_new):
        u = torch.rand(len(rows), 1, dtype=torch.float64)[:, 0].tolist()
        for b, row in enumerate(rows):
            if done[b]:
                out[b].append(pad)
                continue
            with torch.no_grad():
                logits = model(torch.tensor([row + out[b]])).logits[0, -1].double().tolist()
            banned = set(eos) if step < min_new else set()
            if math.isinf(temperature):
                weights = [0.0 if k in banned else 1.0 for k in range(V)]
            else:
                top = max(x / temperature for k, x in enumerate(logits) if k not in banned)
                weights = [
                    0.0 if k in banned else math.exp(x / temperature - top)
                    for k, x in enumerate(logits)
                ]
            token = inverse_cdf(weights, u[b])
            out[b].append(token)
            done[b] = token in eos
        if all(done):
            break
    return out


PROMPTS = [[0, 3, 5], [6, 1]]  # the second is left-padded to length 3


def padded(fill=0):
    return torch.tensor([[0, 3, 5], [fill, 6, 1]]), torch.tensor([[1, 1, 1], [0, 1, 1]])


@pytest.mark.parametrize("temperature", [1e-3, 0.7, 1.0, 3.0, INF, 1e39], ids=repr)
@pytest.mark.parametrize("use_cache", [True, False])
def test_sample_tokens_is_the_naive_sampler_at_every_temperature(model, temperature, use_cache):
    """T = inf (and 1e39, inf once the logits' float32 divides by it) with min_new_tokens gave
    −inf / inf = NaN probabilities and a ValueError about probs; the limit is uniform over the
    tokens allowed."""
    ids, mask = padded()
    kw = dict(max_new_tokens=6, temperature=temperature, eos_token_id=[2, 7], min_new_tokens=2)
    torch.manual_seed(11)
    got = sample_tokens(model, ids, mask, use_cache=use_cache, num_generations=3, **kw)
    torch.manual_seed(11)
    want = naive_sample(model, PROMPTS, 6, temperature, (2, 7), None, 2, g=3)
    assert got.dtype == torch.long and got.tolist() == want
    assert not torch.isin(got[:, :2], torch.tensor([2, 7])).any()


@pytest.mark.parametrize(
    "eos",
    [3, [3], (3, 6), np.int64(3), np.array([3, 6]), torch.tensor(3), torch.tensor([6, 3])],
    ids=["int", "list", "tuple", "np-int", "np-array", "0-d", "tensor"],
)
@pytest.mark.parametrize("pad", [None, 0, -100])
def test_every_form_of_end_ids_and_pad(model, eos, pad):
    """NumPy ints (np.int64(3), an array's items) were refused as not token ids."""
    ids, mask = padded()
    ends = (3,) if np.ndim(eos) == 0 else tuple(int(e) for e in eos)
    torch.manual_seed(5)
    got = sample_tokens(model, ids, mask, max_new_tokens=8, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(5)
    want = naive_sample(model, PROMPTS, 8, eos=ends, pad=pad)
    assert got.tolist() == want
    for row in got.tolist():
        end = min((row.index(e) for e in ends if e in row), default=len(row))
        assert row[end + 1 :] == [ends[0] if pad is None else pad] * (len(row) - end - 1)


@pytest.mark.parametrize("fill", [-100, V, 10**9])
@pytest.mark.parametrize(
    "form", ["tensor", "list", "numpy", "bool-mask", "float-mask"], ids=lambda f: f
)
def test_padded_positions_may_hold_any_id_and_inputs_any_form(model, fill, form):
    """−100 or an id past V under the padding reached the embedding (IndexError; a device assert
    on CUDA); lists and NumPy ids raised TypeError from ones_like."""
    ids, mask = padded(fill)
    if form == "list":
        ids, mask = ids.tolist(), mask.tolist()
    elif form == "numpy":
        ids, mask = ids.numpy(), mask.numpy()
    elif form == "bool-mask":
        mask = mask.bool()
    elif form == "float-mask":
        mask = mask.float()
    torch.manual_seed(2)
    got = sample_tokens(model, ids, mask, max_new_tokens=4, num_generations=2)
    torch.manual_seed(2)
    assert got.tolist() == naive_sample(model, PROMPTS, 4, g=2)


def test_no_mask_means_all_ones_and_integer_counts_of_any_kind(model):
    torch.manual_seed(4)
    got = sample_tokens(
        model, [[4, 4, 1]], max_new_tokens=np.int64(3), min_new_tokens=torch.tensor(1),
        num_generations=np.int32(2), eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(4)
    assert got.tolist() == naive_sample(model, [[4, 4, 1]], 3, eos=(1,), min_new=1, g=2)


def test_min_new_tokens_equal_to_max_never_ends(model):
    torch.manual_seed(6)
    got = sample_tokens(model, [[1, 2]], max_new_tokens=5, min_new_tokens=5, eos_token_id=range(7),
                        num_generations=50)  # fmt: skip
    assert (got == 7).all() and got.shape == (50, 5)  # token 7 is all that is left


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_model_dtypes_give_long_tokens_and_float64_is_the_naive_sampler(model, dtype):
    m = llm.build_tiny_causal_lm(vocab_size=V, seed=0, hidden=16).to(dtype)
    m.train()
    torch.manual_seed(8)
    got = sample_tokens(m, *padded(), max_new_tokens=5, num_generations=2)
    assert m.training and all(mod.training for mod in m.modules())
    assert got.dtype == torch.long and got.shape == (4, 5) and ((got >= 0) & (got < V)).all()
    if dtype == torch.float64:
        torch.manual_seed(8)
        assert got.tolist() == naive_sample(m.eval(), PROMPTS, 5, g=2)


BAD = [
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(temperature=-1.0), "temperature must be > 0"),
    (dict(temperature=math.nan), "temperature must be > 0"),
    (dict(temperature=1e-40), re.escape("(temperature 1e-40)")),
    (dict(temperature=5e-324), re.escape("(temperature 5e-324)")),
    (dict(num_generations=2.0), "num_generations must be an int, got 2.0"),
    (dict(num_generations="2"), "num_generations must be an int, got '2'"),
    (dict(num_generations=0), "num_generations must be >= 1"),
    (dict(max_new_tokens=2.0), "max_new_tokens must be an int, got 2.0"),
    (dict(max_new_tokens=0), "need max_new_tokens >= 1"),
    (dict(min_new_tokens=4), "need max_new_tokens >= 1"),
    (dict(min_new_tokens=1.5, eos_token_id=1), "min_new_tokens must be an int, got 1.5"),
    (dict(min_new_tokens=1), "min_new_tokens needs an eos_token_id"),
    (dict(min_new_tokens=1, eos_token_id=list(range(V))), "min_new_tokens forbids every token"),
    (dict(eos_token_id=V), "outside the vocabulary"),
    (dict(eos_token_id=-1), "eos_token_id must be a token id"),
    (dict(eos_token_id=True), "eos_token_id must be a token id"),
]


@pytest.mark.parametrize("kw,match", BAD, ids=[str(k) for k, _ in BAD])
def test_settings_that_make_no_sense_raise_value_error(model, kw, match):
    """Before: T below ~1e-38 raised a ValueError about probs that named no temperature; float
    counts raised TypeError; every token an end token raised the probs error."""
    kw = {"max_new_tokens": 3, **kw}
    with pytest.raises(ValueError, match=match):
        sample_tokens(model, *padded(), **kw)


@pytest.mark.parametrize(
    "ids,mask,match",
    [
        (torch.zeros(0, 3, dtype=torch.long), None, re.escape("got (0, 3)")),
        (torch.zeros(2, 0, dtype=torch.long), None, re.escape("got (2, 0)")),
        (torch.zeros(3, dtype=torch.long), None, re.escape("got (3,)")),
        ([[1, 2, 3]], [[1, 1]], re.escape("attention_mask has shape (1, 2)")),
        ([[1, 2, 0]], [[1, 1, 0]], "left-padded"),
        ([[1, -100, 3]], [[1, 1, 1]], re.escape("id -100 outside the vocabulary [0, 8)")),
        ([[V, 2, 3]], None, re.escape("id 8 outside the vocabulary [0, 8)")),
    ],
    ids=["no-prompts", "empty-prompts", "1-d", "mask-shape", "right-padded", "-100", "V"],
)
def test_shapes_and_ids_that_make_no_sense(model, ids, mask, match):
    """No prompts raised a RuntimeError inside the model; an unmasked −100 an IndexError."""
    with pytest.raises(ValueError, match=match):
        sample_tokens(model, ids, mask, max_new_tokens=2)


@pytest.mark.parametrize("g", [1, 3, np.int64(2)])
def test_shared_prefill_is_each_prompt_run_alone(model, g):
    ids, mask = padded(fill=V - 1)
    with torch.no_grad():
        last, cache, rep = shared_prefill(model, ids, mask.bool(), g, logits_to_keep=1)
        alone = [model(torch.tensor([p])).logits[0, -1] for p in PROMPTS]
    g = int(g)
    assert last.shape == (2 * g, V) and last.dtype == torch.float32
    for b in range(2 * g):
        torch.testing.assert_close(last[b], alone[b // g], rtol=1e-5, atol=1e-6)
    assert rep.dtype == torch.long and rep.tolist() == [[1, 1, 1]] * g + [[0, 1, 1]] * g
    assert cache.get_seq_length() == 3 and cache.layers[0].keys.shape[0] == 2 * g


@pytest.mark.parametrize("g", [0, -1, 2.0, True])
def test_shared_prefill_refuses_counts_that_are_not_positive_ints(model, g):
    with pytest.raises(ValueError, match="num_generations must be"):
        shared_prefill(model, *padded(), g)


# ----------------------------------------------------------------------------- small helpers


def test_model_device_is_the_first_parameters_device(model):
    assert model_device(model) == torch.device("cpu")
    meta = torch.nn.Linear(2, 2, device="meta")
    assert model_device(meta) == torch.device("meta")
    mixed = torch.nn.Sequential(torch.nn.Linear(2, 2, device="meta"), torch.nn.Linear(2, 2))
    assert model_device(mixed).type == "meta"  # the first parameter's, as documented


def test_model_device_without_parameters_is_a_value_error():
    # StopIteration escaped before the fix (and would end a generator calling it silently)
    with pytest.raises(ValueError, match="no parameters"):
        model_device(torch.nn.ReLU())


class WithCache(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, cache=None):
        return input_ids


class WithPast(torch.nn.Module):
    def forward(self, input_ids, past_key_values=None, *, use_cache=True):
        return input_ids


class WithBoth(torch.nn.Module):
    def forward(self, input_ids, cache=None, past_key_values=None):
        return input_ids


class WithKwargs(torch.nn.Module):
    def forward(self, *args, **kwargs):
        return args


class Wrapper(torch.nn.Module):
    """PEFT-like: its own forward takes anything; the base model's says what is accepted."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def get_base_model(self):
        return self.base

    def forward(self, *args, **kwargs):
        return self.base(*args, **kwargs)


@pytest.mark.parametrize(
    ("module", "names", "argument"),
    [
        (WithCache(), {"input_ids", "attention_mask", "cache"}, "cache"),
        (WithPast(), {"input_ids", "past_key_values", "use_cache"}, "past_key_values"),
        (WithBoth(), {"input_ids", "cache", "past_key_values"}, "cache"),
        (WithKwargs(), {"args", "kwargs"}, "past_key_values"),
        (Wrapper(WithCache()), {"input_ids", "attention_mask", "cache"}, "cache"),
        (Wrapper(WithPast()), {"input_ids", "past_key_values", "use_cache"}, "past_key_values"),
    ],
)
def test_forward_parameters_and_cache_argument(module, names, argument):
    assert forward_parameters(module) == names
    assert cache_argument(module) == argument


def test_forward_parameters_of_a_real_causal_lm_and_its_peft_model(model):
    from peft import LoraConfig, TaskType, get_peft_model

    names = forward_parameters(model)
    assert {"input_ids", "attention_mask", "position_ids", "use_cache"} <= names
    assert cache_argument(model) in names
    peft_model = get_peft_model(
        llm.build_tiny_causal_lm(vocab_size=V, seed=0, hidden=16),
        LoraConfig(task_type=TaskType.CAUSAL_LM, r=2, target_modules=["q_proj"]),
    )
    assert forward_parameters(peft_model) == names  # the base model's, not PEFT's **kwargs
    assert cache_argument(peft_model) == cache_argument(model)


@pytest.mark.parametrize("mask_type", [torch.long, torch.bool, torch.float32])
def test_ids_in_vocabulary_replaces_only_masked_garbage(model, mask_type):
    ids = torch.tensor([[-100, 5, 7, V], [2**40, 0, 1, 3], [4, 4, -1, 6]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1], [1, 1, 0, 1]]).to(mask_type)
    got = ids_in_vocabulary(model, ids, mask)
    want = [[0 if not 0 <= i < V else i for i in row] for row in ids.tolist()]
    assert got.tolist() == want and got.dtype == ids.dtype
    assert ids[0, 0].item() == -100  # the caller's tensor is not changed
    inside = torch.tensor([[0, V - 1]])
    assert ids_in_vocabulary(model, inside, torch.zeros(1, 2)) is inside


@pytest.mark.parametrize("bad", [-100, -1, V, 2**40])
def test_ids_in_vocabulary_refuses_an_unmasked_id_outside(model, bad):
    ids, mask = torch.tensor([[1, bad, 2]]), torch.tensor([[1, 1, 0]])
    with pytest.raises(ValueError, match=rf"prompt_ids holds id {bad} outside .*\[0, {V}\)"):
        ids_in_vocabulary(model, ids, mask, name="prompt_ids")
    with pytest.raises(ValueError, match=rf"^input_ids holds id {bad}"):
        ids_in_vocabulary(model, ids, mask)


def test_ids_in_vocabulary_without_a_vocabulary_size_returns_the_ids():
    ids = torch.tensor([[-100, 10**6]])
    assert ids_in_vocabulary(torch.nn.Linear(2, 2), ids, torch.ones(1, 2)) is ids

    class NoSize(torch.nn.Module):
        def get_input_embeddings(self):
            return torch.nn.Identity()

    assert ids_in_vocabulary(NoSize(), ids, torch.ones(1, 2)) is ids
