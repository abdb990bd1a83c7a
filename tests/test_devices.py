"""Device tests without a GPU: every model-facing function runs with its model on a stand-in
accelerator and returns on the device its docstring names (the model's device, or the CPU).

Why not plain ``meta``: meta kernels let some mixes through that CUDA refuses (``meta @ cpu``
is accepted), and a correct ``.cpu()`` of a meta tensor is impossible. ``tests/device_checks.py``
puts the model on ``meta`` and adds CUDA's rule on every aten operator (:class:`OneDevice`): two
devices in one operator raise ``DeviceMix``; copies are the legal way across and return zeros on
the CPU. Values are meaningless there; only devices are checked (unit tests elsewhere check
values). The two crashes of issue 19 (notebook 09's ``head_logits`` gradient cell, notebook 12's
LoRA check) are replayed here and raise ``DeviceMix`` on the old code.

Adapted or exempt, with the reason:

- ``llm.sample``, ``rl_loop.sample_responses`` (and what calls them: ``rollout``, ``rl_step``,
  ``evaluate_policy``) run the package's own sampler (``sampling.sample_tokens``, each prompt
  prefilled once and its cache repeated) on the stand-in too; the values it reads there are
  zeros, so it simply runs to ``max_new_tokens``.
- ``trainer.KLTrainer`` (and the Trainer runs of notebook 12): transformers' ``Trainer`` places
  the model on ``args.device`` (cpu, cuda, mps, ...), never on meta, and moves each batch there
  (reference-logit column included); its own device code (loss sums ``.to(args.device)``) runs
  in ``tests/trainer/test_kl_trainer.py`` on the CPU only. Its LoRA check in notebook 12 is
  ``trainer_utils.lora_logit_gaps``, checked here.
- ``experiment.run_experiment``/``run_sweep`` and what wraps them (``retention``, ``reward``'s
  training, ``beta_sweep``): they pick the device themselves; the pieces they run on it
  (``predict_logits``, ``frozen_reference``, ``train_loop``) are checked here, and their
  results (``RunResult.probs``, histories) are built with ``.cpu()``/``.tolist()``.
- Loaders (``llm.load_causal_lm``, ``models.load_classifier``) move weights with ``.to(device)``
  only; ``rl.runs.run_rl`` saves adapters with ``.cpu()``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from kl_helpers.encoding import encode, pad_batch
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.training import train_loop, train_step
from kl_helpers.llm import model as llm
from kl_helpers.llm import token_kl as tk
from kl_helpers.reference import frozen_reference, logits_once, make_reference, predict_logits
from kl_helpers.rl import loop as rl_loop
from kl_helpers.rl.reward import RewardModel
from kl_helpers.rl.runs import RLRun, policy_from_run
from kl_helpers.trainer.utils import lora_logit_gaps
from tests.device_checks import DeviceMix, OneDevice, devices_of, on_accelerator
from tests.rl.test_loop import CONFIG, PROMPTS, CharTokenizer, a_reward, tiny_llama

# --- the stand-in itself -----------------------------------------------------------------------


def test_the_stand_in_refuses_what_cuda_refuses_and_allows_the_copies():
    a, b = torch.ones(2, 3, device="meta"), torch.ones(2, 3)
    assert (a @ b.T).device.type == "meta"  # plain meta lets this mix through
    with OneDevice():
        with pytest.raises(DeviceMix):
            a @ b.T
        with pytest.raises(DeviceMix):
            torch.cat([a, b])
        assert (a * torch.tensor(2.0)).device.type == "meta"  # a CPU scalar may join
        assert a[torch.tensor([1])].device.type == "meta"  # CPU indices may index
        with pytest.raises(DeviceMix):  # a CPU tensor by indices on the accelerator may not
            b[torch.tensor([1], device="meta")]
        assert a.cpu().device.type == "cpu" and torch.equal(a.cpu(), torch.zeros(2, 3))
        assert a.sum().item() == 0


# --- notebook 09: the causal LM helpers return on the CPU ----------------------------------------


def test_llm_helpers_return_on_the_cpu():
    model = llm.build_tiny_causal_lm(6)
    prompt = torch.tensor([[0, 2]])
    with on_accelerator(model):
        tokens, mask = llm.sample(model, prompt, 3, 4, eos_id=5, seed=0)
        assert devices_of((tokens, mask)) == {"cpu"}
        assert devices_of(llm.response_logits(model, prompt, tokens)) == {"cpu"}
        assert devices_of(llm.next_token_logits(model, prompt, tokens[:, :2])) == {"cpu"}
        assert devices_of(llm.truncated_tree(model, prompt, prompt, k=2, length=2)) == {"cpu"}
        assert devices_of(llm.final_norm_weight(model)) == {"cpu"}


@pytest.mark.parametrize("theta_on", ["cpu", "model"])
def test_notebook_09_head_logit_gradients_run_on_an_accelerator(theta_on):
    """Notebook 09's gradient cell: head logits of the tree's CPU hidden states, differentiated in
    the final norm weight (issue 19: it mixed devices on any GPU). θ made by
    ``llm.final_norm_weight`` (CPU), or as the old cell did (on the model's device)."""
    model = llm.build_tiny_causal_lm(5)
    prompt = torch.tensor([[0, 2]])
    with on_accelerator(model):
        levels = llm.truncated_tree(model, prompt, prompt, k=2, length=2)
        theta = (
            llm.final_norm_weight(model)
            if theta_on == "cpu"
            else model.model.norm.weight.detach().clone().requires_grad_(True)
        )
        pol = [llm.head_logits(model, lv["hidden"], theta) for lv in levels]
        assert devices_of(pol) == {"cpu"}
        tree = tk.tree_sequences(
            pol, [lv["ref"] for lv in levels], [lv["support"] for lv in levels]
        )
        p_seq = tree["policy_logp"].exp().detach()
        exact = tk.flat_grad(tk.sequence_kl(tree["policy_logp"], tree["ref_logp"]), [theta])
        for fn in tk.SURROGATES.values():
            jac = tk.per_sequence_grads(
                fn(tree["policy_token_logp"], tree["ref_token_logp"]), [theta]
            )
            if theta_on == "cpu":  # the notebook's θ: gradients beside every other output
                tk.relative_error(p_seq @ jac, exact)
                tk.cosine(p_seq @ jac, exact)
        assert devices_of(exact) == {"cpu" if theta_on == "cpu" else "meta"}


# --- notebook 10: the RL loop keeps its tensors on the policy's device --------------------------


@pytest.fixture()
def lora_policy():
    policy = rl_loop.add_lora(tiny_llama(), CONFIG)
    return policy


def test_rl_loop_logits_stay_on_the_policy_device_whatever_the_inputs(lora_policy):
    ids, attn = rl_loop.encode_prompts(CharTokenizer(), PROMPTS[:2])  # on the CPU
    responses, mask = torch.full((2, 3), 5), torch.ones(2, 3, dtype=torch.bool)
    with on_accelerator(lora_policy):
        out = rl_loop.response_logits(lora_policy, ids, attn, responses, mask)
        assert devices_of(out) == {"meta"}
        ref = rl_loop.reference_logits(lora_policy, ids, attn, responses, mask)
        assert devices_of(ref) == {"meta"}
        shared = rl_loop.response_logits(  # each prompt once, its cache repeated (G = 2)
            lora_policy, ids, attn, responses.repeat(2, 1), mask.repeat(2, 1), num_generations=2
        )
        assert devices_of(shared) == {"meta"}
        ref = rl_loop.reference_logits(
            lora_policy, ids, attn, responses.repeat(2, 1), mask.repeat(2, 1), num_generations=2
        )
        assert devices_of(ref) == {"meta"}


def test_rl_step_and_evaluation_on_an_accelerator(lora_policy):
    tokenizer = CharTokenizer()
    with on_accelerator(lora_policy):
        sampled = rl_loop.rollout(lora_policy, tokenizer, PROMPTS[:2], CONFIG, seed=0)
        assert devices_of(sampled[:4]) == {"meta"}
        optimizer = torch.optim.AdamW([p for p in lora_policy.parameters() if p.requires_grad])
        stats, texts = rl_loop.rl_step(
            lora_policy, optimizer, tokenizer, PROMPTS[:2], a_reward, CONFIG
        )
        assert devices_of(stats) == set() and all(isinstance(v, float) for v in stats.values())

        def reward_on_accelerator(texts):  # a reward model that lives with the policy
            return torch.zeros(len(texts), device="meta")

        out = rl_loop.evaluate_policy(
            lora_policy, tokenizer, PROMPTS[:2], reward_on_accelerator, CONFIG
        )
        assert devices_of(out) == {"cpu"}


def test_a_cached_adapter_rebuilds_the_policy_on_the_model_device():
    model = tiny_llama()
    trained = rl_loop.add_lora(copy.deepcopy(model), CONFIG)
    from peft import get_peft_model_state_dict

    adapter = {k: v.detach().clone() for k, v in get_peft_model_state_dict(trained).items()}
    run = RLRun(CONFIG, "key", rl_loop.RLHistory(), adapter, "tiny", 0.0)
    with on_accelerator(model):
        assert devices_of(list(policy_from_run(model, run).parameters())) == {"meta"}


# --- notebooks 06-08, 10, 12: the classifier side ------------------------------------------------


def test_reference_helpers_return_on_the_model_device(tiny, tokenizer, data):
    enc = encode(tokenizer, data.train_texts, data.train_labels, 16)
    ids, mask = pad_batch(list(enc.ids), enc.pad_id)
    config = ExperimentConfig(reference="independent_head")
    with on_accelerator(tiny):
        assert devices_of(predict_logits(tiny, enc, batch_size=3)) == {"meta"}
        batches = [{"input_ids": ids, "attention_mask": mask}]  # CPU batches are moved over
        assert devices_of(logits_once(tiny, batches)) == {"meta"}
        assert devices_of(list(make_reference(tiny).parameters())) == {"meta"}
        assert devices_of(list(frozen_reference(tiny, config).parameters())) == {"meta"}


def test_reward_model_scores_on_the_cpu(tiny, tokenizer):
    reward = RewardModel(tiny, tokenizer, "tiny", kind="logit")
    with on_accelerator(tiny):
        assert devices_of(reward.log_probs(["good", "bad"])) == {"cpu"}
        assert devices_of(reward(["good", "bad"])) == {"cpu"}


def test_engine_training_runs_on_an_accelerator(tiny, tokenizer, data):
    config = ExperimentConfig(epochs=1, batch_size=4, max_length=16, method="reverse", beta=0.5)
    enc = encode(tokenizer, data.train_texts, data.train_labels, config.max_length)
    with on_accelerator(tiny):
        device = torch.device("meta")
        reference = frozen_reference(tiny, config)
        ref_logits = predict_logits(reference, enc)
        optimizer = torch.optim.AdamW(tiny.parameters(), lr=1e-4, foreach=False)
        history = train_loop(tiny, optimizer, enc, config, ref_logits, None, device)
        assert len(history.task) == 2 and all(isinstance(v, float) for v in history.task)
        live = train_loop(tiny, optimizer, enc, config, None, reference, device)
        cpu_ref = torch.zeros(len(enc), 3)  # cached reference logits kept on the CPU
        assert len(train_loop(tiny, optimizer, enc, config, cpu_ref, None, device).task) == 2
        assert len(live.kl_reverse) == 2
        ids, mask = (t.to(device) for t in pad_batch(list(enc.ids[:2]), enc.pad_id))
        step = train_step(tiny, optimizer, ids, mask, enc.labels[:2].to(device), "reverse", 0.5,
                          ref_logits[:2])  # fmt: skip
        assert devices_of(step) == {"meta"}


def test_notebook_12_lora_check_compares_on_one_device(tiny, tokenizer, data):
    """Notebook 12's LoRA check: a start model on the CPU and a LoRA policy the Trainer moved to
    its device (issue 19: the start's logits were subtracted across devices)."""
    from peft import LoraConfig, get_peft_model

    enc = encode(tokenizer, data.train_texts, data.train_labels, 16)
    lora = LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, target_modules=["query", "value"])
    policy = get_peft_model(copy.deepcopy(tiny), lora)
    with on_accelerator(policy):
        gaps = lora_logit_gaps(policy, tiny, enc)
    assert all(isinstance(g, float) for g in gaps)
    assert next(tiny.parameters()).device.type == "cpu"  # the start model stays where it was
