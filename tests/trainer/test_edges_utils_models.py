"""kl_helpers.trainer.utils' model-dependent helpers at their edges (issue 30), on a 2-layer Llama
(hidden 16), tiny BERT classifiers / masked LMs / token classifiers and the bundled MiniLM
tokenizer: unwrap_model and is_causal_lm through real DataParallel, torch.compile and PEFT
(CAUSAL_LM, SEQ_CLS, no task type); copy_as_reference on a model in train mode and on meta
weights; prepare_reference under a CPU Accelerator with a str or torch.device; lora_model's
target lists (commas, blanks, empty, a list) and task types; count_label_items on the meta device;
tokenize_dataset against the tokenizer text by text at max_length 2 / 8, another text column,
max_length 0, 1, True, -1; add_reference_logits against one forward per example for batch sizes 1,
3 and 10, a stale column, an empty dataset, a causal LM, batch sizes 0, -1 and 2.5;
remove_progress_callbacks twice; lora_logit_gaps for a fresh and a perturbed adapter."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForTokenClassification,
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainingArguments,
)
from transformers import default_data_collator as collate

from kl_helpers.encoding import Encoded
from kl_helpers.models import build_tiny_bert, load_tokenizer, resolve_model
from kl_helpers.reference import disable_dropout
from kl_helpers.trainer.utils import (
    add_reference_logits,
    copy_as_reference,
    count_label_items,
    is_causal_lm,
    lora_logit_gaps,
    lora_model,
    prepare_reference,
    remove_progress_callbacks,
    tokenize_dataset,
    unwrap_model,
)


def llama(seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=32, pad_token_id=0)  # fmt: skip
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def tiny_bert_config() -> BertConfig:
    return BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, num_labels=3)  # fmt: skip


def lora_args(**kw) -> SimpleNamespace:
    values = dict(lora_r=2, lora_alpha=4, lora_dropout=0.0, lora_target_modules=None)
    values.update(kw)
    return SimpleNamespace(**values)


def task_name(model) -> str:
    return str(unwrap_model(model)[1]).rsplit(".", 1)[-1]


# ----------------------------------------------------------------------------- model kinds


def test_unwrap_and_detect_through_real_wrappers():
    from peft import LoraConfig, get_peft_model

    lm, bert = llama(), build_tiny_bert(num_labels=2)
    for wrapped, inner in ((torch.nn.DataParallel(lm), lm), (torch.compile(bert), bert)):
        assert unwrap_model(wrapped) == (inner, None)
    assert is_causal_lm(torch.nn.DataParallel(lm)) and not is_causal_lm(torch.compile(bert))
    untyped = get_peft_model(llama(), LoraConfig(r=2, target_modules=["q_proj"]))
    assert unwrap_model(untyped)[1] is None and is_causal_lm(untyped)  # from the class
    seq = lora_model(build_tiny_bert(num_labels=2), lora_args())
    assert task_name(torch.nn.DataParallel(seq)) == "SEQ_CLS" and not is_causal_lm(seq)
    for cls in (BertForMaskedLM, BertForTokenClassification):  # labels not shifted
        assert not is_causal_lm(cls(tiny_bert_config()))


def test_lora_model_targets_and_task_types():
    lm = lora_model(llama(), lora_args(lora_target_modules=" q_proj, v_proj,", lora_alpha=8))
    config = lm.peft_config["default"]
    assert task_name(lm) == "CAUSAL_LM" and set(config.target_modules) == {"q_proj", "v_proj"}
    assert (config.r, config.lora_alpha, config.lora_dropout) == (2, 8, 0.0)
    for targets in (None, "", " , "):  # nothing named: peft's default for the architecture
        bert = lora_model(build_tiny_bert(num_labels=2), lora_args(lora_target_modules=targets))
        assert set(bert.peft_config["default"].target_modules) == {"query", "value"}
    listed = lora_model(build_tiny_bert(num_labels=2), lora_args(lora_target_modules=["key"]))
    assert set(listed.peft_config["default"].target_modules) == {"key"}
    base = disable_dropout(build_tiny_bert(num_labels=2)).eval()
    ids = torch.tensor([[101, 2000, 2001, 102]])
    want = base(input_ids=ids).logits
    wrapped = lora_model(base, lora_args()).eval()  # LoRA's B starts at 0: the same logits
    assert torch.equal(wrapped(input_ids=ids).logits, want)


# ----------------------------------------------------------------------------- references


def test_copy_as_reference_leaves_the_caller_model_alone():
    model = build_tiny_bert(num_labels=3).train()
    ref = copy_as_reference(model)
    assert ref is not model and model.training and all(p.requires_grad for p in model.parameters())
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    ids = torch.tensor([[101, 2000, 102]])
    with torch.no_grad():
        assert torch.equal(ref(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    with torch.device("meta"):
        meta = LlamaForCausalLM(llama().config)
    with pytest.raises(ValueError, match="partitioned"):
        copy_as_reference(meta)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_prepare_reference_under_a_cpu_accelerator(device):
    from accelerate import Accelerator

    model = build_tiny_bert(num_labels=3).train()
    ids = torch.tensor([[101, 2000, 2001, 102]])
    with torch.no_grad():
        want = copy.deepcopy(model).eval()(input_ids=ids).logits
    ref = prepare_reference(model, Accelerator(cpu=True), device)
    assert isinstance(ref, type(model))  # not DDP-wrapped
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    with torch.no_grad():
        assert torch.allclose(ref(input_ids=ids).logits, want, atol=1e-6)


def test_count_label_items_stays_on_the_labels_device():
    labels = torch.empty(2, 5, dtype=torch.long, device="meta")
    assert count_label_items([{"labels": labels}], True).device.type == "meta"


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model("minilm"))


def test_tokenize_dataset_is_the_tokenizer_text_by_text(tokenizer):
    texts = ["hello world " * 20, "short", ""]
    data = Dataset.from_dict({"body": texts, "label": [0, 1, 2]})
    for max_length in (2, 8):
        out = tokenize_dataset(data, tokenizer, max_length=max_length, text_column="body")
        assert "body" not in out.column_names and out["label"] == [0, 1, 2]
        for text, ids in zip(texts, out["input_ids"], strict=True):
            assert ids == tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            assert len(ids) <= max_length


@pytest.mark.parametrize("max_length", [0, 1, True, -1, 2.5])
def test_tokenize_dataset_refuses_lengths_it_cannot_truncate_to(tokenizer, max_length):
    # 0 and 1 (and True) came back untruncated, 102 tokens; -1 raised an OverflowError
    data = Dataset.from_dict({"text": ["hello world " * 50], "label": [0]})
    with pytest.raises(ValueError, match="max_length"):
        tokenize_dataset(data, tokenizer, max_length=max_length)


def reference_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (5, 4), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist(), "label": [0, 1, 2, 0, 1],
                              "ref_logits": [[9.0, 9.0, 9.0]] * 5})  # fmt: skip


def test_add_reference_logits_is_one_forward_per_example():
    data = reference_dataset()
    model = build_tiny_bert(num_labels=3).train()
    with torch.no_grad():
        frozen = copy.deepcopy(model).eval()
        want = torch.cat(
            [frozen(input_ids=torch.tensor([row])).logits for row in data["input_ids"]]
        )
    for batch_size in (1, 3, 10):
        out = add_reference_logits(data, model, collate, batch_size=batch_size, device="cpu")
        got = torch.tensor(out["ref_logits"])
        assert got.shape == (5, 3) and torch.allclose(got, want, atol=1e-5), batch_size
        assert out.column_names.count("ref_logits") == 1 and out["label"] == data["label"]
    assert model.training  # its mode is given back
    empty = add_reference_logits(data.select([]), model, collate)
    assert len(empty) == 0 and "ref_logits" in empty.column_names


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_add_reference_logits_bad_batch_size(batch_size):
    # 0 raised range()'s error, -1 datasets' "tables don't have the same number of rows"
    with pytest.raises(ValueError, match="batch_size"):
        add_reference_logits(reference_dataset(), build_tiny_bert(num_labels=3), collate,
                             batch_size=batch_size)  # fmt: skip


def test_add_reference_logits_refuses_token_logits():
    data = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5, 6]]})
    with pytest.raises(ValueError, match=r"classification \(B, C\)"):
        add_reference_logits(data, llama(), collate)


# ----------------------------------------------------------------------------- trainer helpers


def test_remove_progress_callbacks(tmp_path):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                             disable_tqdm=False)  # fmt: skip
    trainer = Trainer(model=build_tiny_bert(num_labels=2), args=args)
    kinds = lambda: {type(c) for c in trainer.callback_handler.callbacks}  # noqa: E731
    assert ProgressCallback in kinds()
    assert remove_progress_callbacks(trainer) is trainer
    remove_progress_callbacks(trainer)  # nothing left to remove: no error
    assert not kinds() & {PrinterCallback, ProgressCallback} and kinds()


def test_lora_logit_gaps_fresh_and_perturbed():
    start = disable_dropout(build_tiny_bert(num_labels=3, seed=1))
    policy = lora_model(copy.deepcopy(start), lora_args())
    data = Encoded(ids=(torch.tensor([101, 2000, 102]), torch.tensor([101, 2001, 2002, 2003, 102])),
                   labels=torch.tensor([0, 1]), pad_id=0)  # fmt: skip
    assert lora_logit_gaps(policy, start, data) == (0.0, 0.0)  # B = 0: no change at all
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
        policy.eval()
        rows = [policy(input_ids=i[None]).logits[0] - start.eval()(input_ids=i[None]).logits[0]
                for i in data.ids]  # fmt: skip
    want = max(r.abs().max().item() for r in rows)
    disabled, moved = lora_logit_gaps(policy, start, data)
    assert disabled == 0.0 and want > 1e-3 and moved == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="PEFT"):
        lora_logit_gaps(start, start, data)
