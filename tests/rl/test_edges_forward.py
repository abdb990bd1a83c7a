"""kl_helpers.rl.forward at the edges its docstrings name (issue 30): whatever a caller leaves at
masked positions (−100, a pad id, ids past the vocabulary), temperature near 0 and large, every
model dtype, lists and NumPy for the ids, empty batches and responses, G = 1 and G > 1, the
``ref_model`` keyword, garbage logits off the mask in ``response_kl``. Expected values come from
a float64 copy of the model run on each row's unpadded tokens, one row at a time, and Python
loops over the vocabulary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_helpers.rl.forward import check_pairs, reference_logits, response_kl, response_logits
from tests.rl.test_forward import PROMPT_IDS, PROMPT_MASK, RESP_MASK, RESPONSES, G
from tests.rl.test_loop import VOCAB, tiny_llama


def naive_logits(prompt_ids, prompt_mask, responses, resp_mask, temperature, generations):
    """Per row: the real prompt tokens + the response, one float64 forward without padding;
    logits / T and their log-probs by a Python loop (0 off the mask)."""
    model = tiny_llama().double()
    logits, logps = [], []
    for b in range(responses.shape[0]):
        p = b // generations
        prompt = [int(t) for t, m in zip(prompt_ids[p], prompt_mask[p], strict=True) if m]
        real = [int(t) for t, m in zip(responses[b], resp_mask[b], strict=True) if m]
        with torch.no_grad():
            out = model(torch.tensor([prompt + real])).logits[0, len(prompt) - 1 :] / temperature
        row, lp = [], []
        for t in range(responses.shape[1]):
            if t < len(real):
                z = out[t].tolist()
                top = max(z)
                log_total = top + math.log(sum(math.exp(v - top) for v in z))
                row.append(out[t])
                lp.append(z[real[t]] - log_total)
            else:
                row.append(torch.zeros(VOCAB, dtype=torch.float64))
                lp.append(0.0)
        logits.append(torch.stack(row))
        logps.append(lp)
    return torch.stack(logits), torch.tensor(logps, dtype=torch.float64)


def inputs(generations):
    """The shared fixtures for G = 3, or the prompts repeated for G = 1."""
    if generations == G:
        return PROMPT_IDS, PROMPT_MASK
    return PROMPT_IDS.repeat_interleave(G, 0), PROMPT_MASK.repeat_interleave(G, 0)


def close_on_mask(got_logits, got_logp, want_logits, want_logp, rtol, atol):
    keep = RESP_MASK[..., None]
    torch.testing.assert_close(
        torch.where(keep, got_logits.double(), 0), want_logits, rtol=rtol, atol=atol
    )
    torch.testing.assert_close(got_logp.double(), want_logp, rtol=rtol, atol=atol)


@pytest.mark.parametrize("generations", [1, G])
@pytest.mark.parametrize("temperature", [1e-3, 0.7, 1.0, 1e3])
def test_logits_and_log_probs_against_unpadded_float64_rows(generations, temperature):
    torch.set_num_threads(1)
    ids, mask = inputs(generations)
    want = naive_logits(ids, mask, RESPONSES, RESP_MASK, temperature, generations)
    with torch.no_grad():
        got = response_logits(
            tiny_llama(), ids, mask, RESPONSES, RESP_MASK, temperature, generations
        )
    assert got[0].dtype == torch.float32 and got[0].shape == (6, 5, VOCAB)
    assert (got[1][~RESP_MASK] == 0).all()
    # float32 logits scaled by 1/T: their error scales with it
    close_on_mask(*got, *want, rtol=1e-4, atol=1e-5 * max(1.0, 1 / temperature))


@pytest.mark.parametrize("generations", [1, G])
@pytest.mark.parametrize("garbage", [-100, 0, VOCAB, 10**9])
def test_masked_positions_may_hold_any_id(generations, garbage):
    """−100, a pad id and ids past the vocabulary at masked prompt and response positions:
    an IndexError from the embedding (a device assert on CUDA) before the fix."""
    torch.set_num_threads(1)
    ids, mask = inputs(generations)
    want = naive_logits(ids, mask, RESPONSES, RESP_MASK, 1.0, generations)
    bad_ids = ids.masked_fill(mask == 0, garbage)
    bad_responses = RESPONSES.masked_fill(~RESP_MASK, garbage)
    with torch.no_grad():
        got = response_logits(
            tiny_llama(), bad_ids, mask, bad_responses, RESP_MASK, num_generations=generations
        )
    close_on_mask(*got, *want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [-1, VOCAB, -100])
def test_unmasked_ids_outside_the_vocabulary_are_refused(bad):
    responses = RESPONSES.clone()
    responses[1, 2] = bad
    ids = PROMPT_IDS.clone()
    ids[1, 0] = bad
    model = tiny_llama()
    for args in ((PROMPT_IDS, responses), (ids, RESPONSES)):
        with pytest.raises(ValueError, match=rf"{bad}.*vocabulary"):
            response_logits(model, args[0], PROMPT_MASK, args[1], RESP_MASK, num_generations=G)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_temperature_outside_its_range_is_refused(temperature):
    """T = 0 gave ±inf/NaN logits, T < 0 the flipped distribution, silently."""
    model = tiny_llama()
    with pytest.raises(ValueError, match="temperature"):
        response_logits(model, PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, temperature, G)
    with pytest.raises(ValueError, match="temperature"):
        reference_logits(
            model, PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, temperature, model, G
        )


def test_temperature_as_a_zero_d_tensor():
    torch.set_num_threads(1)
    want = naive_logits(PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, 0.5, G)
    with torch.no_grad():
        got = response_logits(
            tiny_llama(), PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, torch.tensor(0.5), G
        )
    close_on_mask(*got, *want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize(
    "convert", [lambda t: t.tolist(), lambda t: t.numpy(), lambda t: tuple(map(tuple, t.tolist()))]
)
def test_ids_and_masks_as_lists_tuples_and_numpy(convert):
    """A list or NumPy array of ids: AttributeError ('.shape' / '.to') before the fix."""
    torch.set_num_threads(1)
    want = naive_logits(PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, 1.0, G)
    args = [convert(t) for t in (PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK)]
    model = tiny_llama()
    with torch.no_grad():
        got = response_logits(model, *args, num_generations=G)
        ref = reference_logits(model, *args, ref_model=model, num_generations=G)
    close_on_mask(*got, *want, rtol=1e-4, atol=1e-5)
    close_on_mask(*ref, *want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "dtype, out", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                   (torch.float64, torch.float64), (torch.float32, torch.float32)]
)  # fmt: skip
def test_output_dtype_for_every_model_dtype(dtype, out):
    torch.set_num_threads(1)
    want = naive_logits(PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, 1.0, G)
    with torch.no_grad():
        got = response_logits(
            tiny_llama().to(dtype), PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK,
            num_generations=G,
        )  # fmt: skip
    assert got[0].dtype == out and got[1].dtype == out
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1}.get(dtype, 1e-5)
    close_on_mask(*got, *want, rtol=tol, atol=tol)


@pytest.mark.parametrize("generations", [1, G])
def test_responses_of_no_tokens(generations):
    """T = 0 with G > 1: RuntimeError from the attention's reshape before the fix."""
    ids, mask = inputs(generations)
    with torch.no_grad():
        logits, logp = response_logits(
            tiny_llama(), ids, mask, RESPONSES[:, :0], RESP_MASK[:, :0],
            num_generations=generations,
        )  # fmt: skip
    assert logits.shape == (6, 0, VOCAB) and logp.shape == (6, 0)


def test_no_prompts_is_refused():
    """P = 0: RuntimeError from inside the model before the fix."""
    with pytest.raises(ValueError, match=r"at least one prompt.*\(0, 6\)"):
        response_logits(
            tiny_llama(), PROMPT_IDS[:0], PROMPT_MASK[:0], RESPONSES[:0], RESP_MASK[:0],
            num_generations=G,
        )  # fmt: skip


@pytest.mark.parametrize("bad", [3.0, 2.5, "3", True])
def test_num_generations_must_be_an_int(bad):
    """3.0: TypeError from repeat_interleave before the fix."""
    with pytest.raises(ValueError, match="num_generations"):
        check_pairs(PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, bad)
    assert check_pairs(PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, np.int64(3)) is None


def test_reference_logits_with_ref_model_has_no_gradient_and_matches():
    torch.set_num_threads(1)
    ref_model = tiny_llama()
    want = naive_logits(PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, 0.7, G)
    got = reference_logits(
        tiny_llama(1), PROMPT_IDS, PROMPT_MASK, RESPONSES, RESP_MASK, 0.7, ref_model, G
    )
    assert not got[0].requires_grad and not got[1].requires_grad
    close_on_mask(*got, *want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_response_kl_with_garbage_off_the_mask(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 4, 6, generator=gen, dtype=torch.float64) * 3).to(dtype)
    ref = (torch.randn(3, 4, 6, generator=gen, dtype=torch.float64) * 3).to(dtype)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])  # ints, a row of nothing
    want = []
    for b in range(3):
        total = 0.0
        for t in range(4):
            if mask[b, t]:
                z, r = logits[b, t].double().tolist(), ref[b, t].double().tolist()
                lz = math.log(sum(math.exp(v) for v in z))
                lr = math.log(sum(math.exp(v) for v in r))
                total += sum(
                    math.exp(a - lz) * ((a - lz) - (c - lr)) for a, c in zip(z, r, strict=True)
                )
        want.append(total)
    off = (mask == 0)[..., None]
    got = response_kl(logits.masked_fill(off, math.nan), ref.masked_fill(off, -math.inf), mask)
    assert got.shape == (3,) and (got >= 0).all() and got[1] == 0
    assert got.double().tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)
