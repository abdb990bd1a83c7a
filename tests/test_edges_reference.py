"""kl_helpers.reference at its edges (issue 30): evaluated/make_reference/reference_view with every
mix of submodule modes, an exception inside the block, copy_model and device keywords and dropout
kept or turned off; disable_dropout on attributes that are and are not rates (ints, bools, NumPy
floats, values above 1, names without "drop", cyclic sub-configs); redraw_classifier_head against
torch.randn of the same generator; logits_once and predict_logits against each text run alone and
unpadded in eval mode, for batch sizes 1..100, pad_to, no texts and bad sizes; ReferenceLogits keyed
by value; is_peft_model on a PeftModel (train and eval mode, adapters disabled), its base model, a
plain module, a model with PEFT-like attributes and a non-module."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest
import torch

from kl_helpers.encoding import Encoded, pad_batch
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.models import build_tiny_bert
from kl_helpers.reference import (
    ReferenceLogits,
    disable_dropout,
    evaluated,
    forward_logits,
    frozen_reference,
    is_peft_model,
    logits_once,
    make_reference,
    predict_logits,
    redraw_classifier_head,
    reference_view,
)

TEXTS = [[101, 5, 6, 102], [101, 7, 102], [101, 102], [101, 8, 9, 10, 11, 102], [101, 12, 102]]


_BUILT: dict[int, torch.nn.Module] = {}


def tiny(seed=0):
    """A fresh copy of a tiny BERT classifier (built once per seed: a build takes seconds)."""
    if seed not in _BUILT:
        _BUILT[seed] = build_tiny_bert(num_labels=3, seed=seed)
    return copy.deepcopy(_BUILT[seed])


def data(rows=TEXTS, dtype=torch.long):
    ids = tuple(torch.tensor(r, dtype=dtype) for r in rows)
    return Encoded(ids=ids, labels=torch.zeros(len(rows), dtype=torch.long), pad_id=0)


def alone(model, rows=TEXTS):
    """Each text run alone, unpadded, in eval mode on an untouched copy."""
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        return torch.cat([ref(input_ids=torch.tensor([r])).logits for r in rows])


def modes(model):
    return {name: m.training for name, m in model.named_modules()}


def mixed(model):
    model.train()
    model.bert.embeddings.eval()  # a frozen part of a training policy
    model.classifier.eval()
    return modes(model)


@pytest.mark.parametrize("setup", ["train", "eval", "mixed"])
def test_evaluated_gives_every_module_its_mode_back(setup):
    model = tiny()
    before = {"train": lambda: modes(model.train()), "eval": lambda: modes(model.eval()),
              "mixed": lambda: mixed(model)}[setup]()  # fmt: skip
    with evaluated(model) as inside:
        assert inside is model and not any(modes(model).values())
    assert modes(model) == before
    with pytest.raises(KeyError), evaluated(model):
        raise KeyError("inside the block")
    assert modes(model) == before
    with evaluated(model), evaluated(model.bert):
        assert not any(modes(model).values())
    assert modes(model) == before


@pytest.mark.parametrize(
    ("copy_model", "device", "dropout"),
    [(True, None, False), (False, "cpu", True), (True, torch.device("cpu"), True),
     (False, None, False)],
)  # fmt: skip
def test_make_reference_keywords(copy_model, device, dropout):
    model = tiny().train()
    expected = alone(model)
    ref = make_reference(model, copy_model=copy_model, device=device, dropout=dropout)
    assert (ref is model) == (not copy_model)
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert next(ref.parameters()).device.type == "cpu"
    rates = {m.p for m in ref.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == ({0.1} if dropout else {0.0})
    if copy_model:  # the caller's model is untouched
        assert model.training and all(p.requires_grad for p in model.parameters())
        assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    ref.train()  # put back in train mode: deterministic only with dropout off
    with torch.no_grad():
        got = torch.cat([ref(input_ids=torch.tensor([r])).logits for r in TEXTS])
    if not dropout:
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with reference_view(model, ref) as view, torch.no_grad():
        assert view is ref and not view.training
        view_logits = torch.cat([view(input_ids=torch.tensor([r])).logits for r in TEXTS])
    torch.testing.assert_close(view_logits, expected, rtol=0, atol=0)
    assert ref.training  # its own mode back


def test_reference_view_needs_a_reference_or_peft():
    with pytest.raises(ValueError, match="no reference model"):
        with reference_view(tiny()):
            pass


class Holder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self.attention_dropout = 0.3  # a rate
        self.layerdrop = 1  # an int rate
        self.dropout_flag = True  # a bool, not a rate
        self.drop_count = 3  # above 1: not a rate
        self.drop_np = np.float64(0.2)  # a NumPy float rate
        self.scale = 0.5  # no "drop" in the name
        self.alpha = torch.nn.AlphaDropout(0.4)
        self.feature = torch.nn.FeatureAlphaDropout(0.4)
        self.d1 = torch.nn.Dropout1d(0.4)


def test_disable_dropout_attributes():
    from transformers import BertConfig

    model = Holder()
    model.config = BertConfig(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
    model.config.text_config = BertConfig(hidden_dropout_prob=0.4)
    model.config.text_config.text_config = model.config  # a cycle
    assert disable_dropout(model) is model
    assert model.attention_dropout == 0.0 and model.layerdrop == 0.0 and model.drop_np == 0.0
    assert model.dropout_flag is True and model.drop_count == 3 and model.scale == 0.5
    assert model.alpha.p == model.feature.p == model.d1.p == 0.0
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == 0.0
    assert model.config.text_config.hidden_dropout_prob == 0.0


@pytest.mark.parametrize("seed", [0, 7, np.int64(7), torch.tensor(7)])
def test_redraw_classifier_head_against_torch_randn(seed):
    model = tiny()
    redraw_classifier_head(model, seed)
    gen = torch.Generator().manual_seed(int(seed))
    expected = torch.randn(model.classifier.weight.shape, generator=gen) * 0.02
    assert torch.equal(model.classifier.weight.data, expected)
    assert torch.equal(model.classifier.bias.data, torch.zeros(3))


def test_redraw_classifier_head_bad_input():
    """seed = 1.5 or True raised RuntimeError in manual_seed."""
    for seed in (1.5, True, "1"):
        with pytest.raises(ValueError, match="seed must be an int"):
            redraw_classifier_head(tiny(), seed)
    with pytest.raises(ValueError, match="Linear `.classifier`"):
        redraw_classifier_head(torch.nn.Linear(2, 2), 0)


def test_frozen_reference_modes():
    model = tiny().train()
    same = frozen_reference(model, ExperimentConfig(reference="same_start"))
    assert torch.equal(same.classifier.weight, model.classifier.weight) and not same.training
    other = frozen_reference(
        model, ExperimentConfig(reference="independent_head", reference_seed=3)
    )
    gen = torch.Generator().manual_seed(3)
    expected = torch.randn(other.classifier.weight.shape, generator=gen) * 0.02
    assert torch.equal(other.classifier.weight, expected)
    assert torch.equal(other.bert.embeddings.word_embeddings.weight,
                       model.bert.embeddings.word_embeddings.weight)  # fmt: skip
    assert model.training  # the start model is untouched


@pytest.mark.parametrize("batch_size", [1, 2, 3, 100, np.int64(2)])
def test_predict_logits_against_each_text_alone(batch_size):
    model = tiny()
    before = mixed(model)
    expected = alone(model)
    got = predict_logits(model, data(), batch_size=batch_size)
    assert got.dtype == torch.float32 and got.shape == (5, 3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)  # padding: < 1e-5
    assert modes(model) == before
    padded = predict_logits(model, data(dtype=torch.int32), batch_size=batch_size, pad_to=12)
    torch.testing.assert_close(padded, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        one = forward_logits(model.eval(), torch.tensor([TEXTS[0]]), torch.ones(1, 4))
    torch.testing.assert_close(one, expected[:1], rtol=0, atol=1e-6)


def test_predict_logits_sizes():
    """batch_size = 0 raised range()'s 'arg 3 must not be zero', 2.0 a TypeError; pad_to below
    the longest text a RuntimeError about expanded sizes."""
    model = tiny()
    assert predict_logits(model, data([])).shape == (0, 3)
    for batch_size, match in ((0, "batch_size must be >= 1"), (2.0, "batch_size must be an int"),
                              (True, "batch_size must be an int")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            predict_logits(model, data(), batch_size=batch_size)
    with pytest.raises(ValueError, match=r"pad_to = 3 is shorter than the longest sequence \(6\)"):
        predict_logits(model, data(), batch_size=100, pad_to=3)
    with pytest.raises(ValueError, match="pad_to = 1"):
        pad_batch([torch.tensor([1, 2])], 0, pad_to=1)


def test_logits_once_batches_and_modes():
    model = tiny()
    before = mixed(model)
    assert logits_once(model, []) == []
    ids, mask = pad_batch([torch.tensor(r) for r in TEXTS[:2]], 0)
    (got,) = logits_once(model, [{"input_ids": ids, "attention_mask": mask}])
    torch.testing.assert_close(got, alone(model, TEXTS[:2]), rtol=0, atol=1e-5)
    assert modes(model) == before and not got.requires_grad
    half = copy.deepcopy(model).to(torch.bfloat16)
    (low,) = logits_once(half, [{"input_ids": ids, "attention_mask": mask}])
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, got, rtol=0, atol=0.05)


def test_reference_logits_are_keyed_by_value():
    """The same ids as int32 and int64 were two keys (computed twice)."""
    memo, model, calls = ReferenceLogits(), tiny(), []

    def compute(tag):
        return lambda: calls.append(tag) or tag

    assert memo.get(model, data(), ("s",), compute("a")) == "a"
    assert memo.get(model, data(dtype=torch.int32), ("s",), compute("b")) == "a"
    assert memo.get(model, data(), ("t",), compute("c")) == "c"  # other settings
    split = [[101, 5], [6, 102, 101, 7, 102], [101, 102], TEXTS[3], TEXTS[4]]
    assert memo.get(model, data(split), ("s",), compute("d")) == "d"  # same ids, other texts
    other = tiny(seed=1)
    assert memo.get(other, data(), ("s",), compute("e")) == "e"
    assert calls == ["a", "c", "d", "e"] and len(memo) == 4
    del other
    gc.collect()
    assert len(memo) == 3  # held weakly by the start model


# ----------------------------------------------------------------------------- is_peft_model


def test_is_peft_model_is_isinstance_of_peft_model():
    from types import SimpleNamespace

    from peft import LoraConfig, PeftModel, TaskType, get_peft_model

    base = build_tiny_bert(num_labels=2, seed=0)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query"])
    peft_model = get_peft_model(base, config)
    assert isinstance(peft_model, PeftModel)
    assert is_peft_model(peft_model.train()) and is_peft_model(peft_model.eval())
    with peft_model.disable_adapter():
        assert is_peft_model(peft_model)
    assert not is_peft_model(peft_model.get_base_model())
    assert not is_peft_model(build_tiny_bert(num_labels=2, seed=0))
    lookalike = torch.nn.Linear(2, 2)
    lookalike.peft_config, lookalike.get_base_model = {}, lambda: lookalike
    assert not is_peft_model(lookalike)  # duck typing does not count
    assert not is_peft_model(SimpleNamespace()) and not is_peft_model(None)
