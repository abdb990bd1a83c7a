"""A reference is deterministic and equal to its eval-mode output, whatever mode or architecture
it arrives in (issue 20, part 3): ``disable_dropout``, ``make_reference``, ``reference_view`` and
every path that runs a reference (``rl_loop.reference_logits``, ``training.train_step``,
``KLTrainer``, ``llm.truncated_tree``).

The expected output is always an eval-mode forward of an untouched copy of the model, taken before
any ``kl_helpers`` call; each model has dropout 0.5 where its architecture keeps it (Llama: the
float ``attention_dropout``; GPT-2: ``resid/embd/attn_pdrop``; BERT: hidden and attention probs).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.reference import disable_dropout, make_reference, reference_view

ARCHS = ("llama", "gpt2", "bert")
IDS = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


def build(arch: str, seed: int = 0) -> torch.nn.Module:
    """A tiny model of ``arch`` with dropout 0.5 everywhere it has dropout, in train mode."""
    import transformers as tf

    if arch == "llama":
        config = tf.LlamaConfig(
            vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
            attention_dropout=0.5,
        )  # fmt: skip
        cls = tf.LlamaForCausalLM
    elif arch == "gpt2":
        config = tf.GPT2Config(
            vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.5,
            embd_pdrop=0.5, attn_pdrop=0.5,
        )  # fmt: skip
        cls = tf.GPT2LMHeadModel
    else:
        config = tf.BertConfig(
            vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32, num_labels=3,
            hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5,
        )  # fmt: skip
        cls = tf.BertForSequenceClassification
    torch.manual_seed(seed)
    return cls(config).train()


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).logits


def eval_logits(model: torch.nn.Module) -> torch.Tensor:
    """The expectation: an untouched copy in eval mode."""
    return logits(copy.deepcopy(model).eval())


def assert_deterministic_eval_output(model: torch.nn.Module, want: torch.Tensor) -> None:
    torch.manual_seed(1)
    first = logits(model)
    torch.manual_seed(2)
    assert_close(logits(model), first, rtol=0, atol=0)
    assert_close(first, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_models_really_drop_out_in_train_mode(arch):
    model = build(arch)
    torch.manual_seed(1)
    first = logits(model)
    torch.manual_seed(2)
    assert (logits(model) - first).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_disable_dropout_makes_train_mode_equal_eval_mode(arch):
    model = build(arch)
    want = eval_logits(model)
    disable_dropout(model)
    assert model.training
    assert_deterministic_eval_output(model, want)


@pytest.mark.parametrize("arch", ARCHS)
def test_make_reference_stays_deterministic_when_put_back_in_train_mode(arch):
    model = build(arch)
    want = eval_logits(model)
    reference = make_reference(model).train()
    assert_deterministic_eval_output(reference, want)
    torch.manual_seed(1)
    first = logits(model)
    torch.manual_seed(2)
    assert (logits(model) - first).abs().max() > 1e-3  # make_reference copied: model untouched


@pytest.mark.parametrize("arch", ARCHS)
def test_reference_view_runs_a_train_mode_reference_in_eval_mode(arch):
    reference = build(arch, seed=1)  # arrives in train mode, dropout on, not made by us
    want = eval_logits(reference)
    policy = build(arch, seed=0)
    with reference_view(policy, reference) as ref:
        assert_deterministic_eval_output(ref, want)
    assert reference.training and all(m.training for m in reference.modules())  # mode restored


def test_peft_reference_view_is_the_eval_base_and_restores_every_module_mode():
    from peft import LoraConfig, get_peft_model

    base = build("llama")
    want = eval_logits(base)
    policy = get_peft_model(
        base, LoraConfig(r=2, lora_dropout=0.5, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # adapters that change the output, so disabling them is visible
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()
    policy.train()
    frozen = policy.get_base_model().model.embed_tokens
    frozen.eval()  # a part the caller keeps in eval mode while training the rest
    modes = {name: m.training for name, m in policy.named_modules()}
    with reference_view(policy) as ref:
        assert_deterministic_eval_output(ref, want)
    assert {name: m.training for name, m in policy.named_modules()} == modes
    torch.manual_seed(1)
    adapted = logits(policy)
    assert (adapted - want).abs().max() > 1e-3  # adapters back on, train mode again


def rl_inputs():
    prompt = IDS[:, :3]
    prompt_mask = torch.ones_like(prompt)
    responses = IDS[:, 3:]
    resp_mask = MASK[:, 3:].bool()
    return prompt, prompt_mask, responses, resp_mask


@pytest.mark.parametrize("arch", ("llama", "gpt2"))
def test_rl_loop_reference_logits_of_a_train_mode_ref_model(arch):
    from kl_helpers.rl.forward import reference_logits, response_logits

    ref_model = build(arch, seed=1)
    with torch.no_grad():
        want, want_logp = response_logits(copy.deepcopy(ref_model).eval(), *rl_inputs())
    policy = build(arch, seed=0)
    torch.manual_seed(1)
    first, first_logp = reference_logits(policy, *rl_inputs(), ref_model=ref_model)
    torch.manual_seed(2)
    second, _ = reference_logits(policy, *rl_inputs(), ref_model=ref_model)
    assert_close(second, first, rtol=0, atol=0)
    assert_close(first, want, rtol=1e-6, atol=1e-6)
    assert_close(first_logp, want_logp, rtol=1e-6, atol=1e-6)
    assert ref_model.training  # the caller's mode is given back


def test_engine_train_step_runs_a_train_mode_reference_in_eval_mode():
    from kl_helpers.engine.training import train_step

    reference = build("bert", seed=1)
    want = eval_logits(reference)
    results = []
    for seed in (1, 2):
        model = disable_dropout(build("bert", seed=0))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(seed)
        out = train_step(
            model, optimizer, IDS, MASK, torch.tensor([0, 2]), "reverse", 0.5,
            reference=reference,
        )  # fmt: skip
        results.append(out)
    model = disable_dropout(build("bert", seed=0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cached = train_step(
        model, optimizer, IDS, MASK, torch.tensor([0, 2]), "reverse", 0.5, ref_logits=want
    )
    assert_close(results[0], results[1], rtol=0, atol=0)
    assert_close(results[0], cached, rtol=1e-6, atol=1e-7)
    assert reference.training


@pytest.mark.parametrize("arch", ("llama", "gpt2"))
def test_kltrainer_disable_dropout_and_its_reference_are_eval_equal(tmp_path, arch):
    from datasets import Dataset
    from transformers import default_data_collator

    from kl_helpers.trainer.kl_trainer import KLTrainer
    from tests.trainer.trainer_args import train_args

    model = build(arch)
    want = eval_logits(model)
    labels = IDS.masked_fill(MASK == 0, -100)
    data = Dataset.from_dict({"input_ids": IDS, "attention_mask": MASK, "labels": labels})
    trainer = KLTrainer(
        model=model, args=train_args(tmp_path, disable_dropout=True), train_dataset=data,
        data_collator=default_data_collator,
    )  # fmt: skip
    trainer.model.train()
    assert_deterministic_eval_output(trainer.model, want)  # KLTrainingArguments.disable_dropout
    trainer.ref_model.train()  # even if something puts the reference back in train mode
    assert_deterministic_eval_output(trainer.ref_model, want)
    inputs = {"input_ids": IDS, "attention_mask": MASK}
    assert_close(trainer.reference_logits(trainer.model, inputs), want, rtol=1e-6, atol=1e-6)


def test_truncated_tree_runs_a_train_mode_ref_model_in_eval_mode():
    from kl_helpers.llm.model import truncated_tree

    policy, ref_model = build("llama", seed=0), build("llama", seed=1)
    want = truncated_tree(
        copy.deepcopy(policy).eval(), IDS[:1, :3], IDS[:1, :2], 2, 2,
        ref_model=copy.deepcopy(ref_model).eval(),
    )  # fmt: skip
    torch.manual_seed(1)
    got = truncated_tree(policy, IDS[:1, :3], IDS[:1, :2], 2, 2, ref_model=ref_model)
    for a, b in zip(got, want, strict=True):
        for key in ("policy", "ref", "support"):
            assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)
    assert policy.training and ref_model.training


def test_kltrainer_disable_dropout_reaches_the_lora_adapters(tmp_path):
    from datasets import Dataset
    from transformers import default_data_collator

    from kl_helpers.trainer.kl_trainer import KLTrainer
    from tests.trainer.trainer_args import train_args

    labels = IDS.masked_fill(MASK == 0, -100)
    data = Dataset.from_dict({"input_ids": IDS, "attention_mask": MASK, "labels": labels})
    args = train_args(
        tmp_path, disable_dropout=True, lora_r=2, lora_dropout=0.5,
        lora_target_modules="q_proj,v_proj",
    )  # fmt: skip
    trainer = KLTrainer(
        model=build("llama"), args=args, train_dataset=data, data_collator=default_data_collator
    )
    with torch.no_grad():  # adapters that change the output, so their dropout is visible
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    want = eval_logits(trainer.model)
    trainer.model.train()
    assert_deterministic_eval_output(trainer.model, want)
