"""KLTrainer: logged task loss / divergence vs hand computations, torchrun DDP, token-level KL.

Hand computations use explicit float64 sums over probabilities (no kl_helpers code), so a sign,
direction, shift or masking bug in the trainer makes them disagree.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from transformers import DataCollatorWithPadding, TrainerCallback, default_data_collator

from kl_helpers.data.article import article_split
from kl_helpers.engine.losses import calculate_fkl_loss, calculate_rkl_loss
from kl_helpers.models import build_tiny_bert, load_classifier, load_tokenizer, resolve_model
from kl_helpers.reference import disable_dropout
from kl_helpers.regularizer import DIRECTIONS, generalised_js_from_logits, regularised_terms
from kl_helpers.trainer.cli import main
from kl_helpers.trainer.kl_trainer import KLTrainer
from kl_helpers.trainer.utils import add_reference_logits, tokenize_dataset
from tests.trainer.torchrun import run_torchrun
from tests.trainer.trainer_args import train_args

DDP_TIMEOUT_S = 180  # the 2-process run takes ~15 s on 2 shared cores
# Two processes × batch 4 vs one process × batch 8 on the same 8 sentences: the gradient is the
# same mean, so only float32 summation order differs. Relative tolerance on each logged value:
DDP_RTOL = 1e-4
DDP_ATOL = 1e-6  # the divergence starts at 0


# ----------------------------------------------------------------------------- naive references


def naive_divergence(policy: torch.Tensor, ref: torch.Tensor, kind: str, pi: float) -> float:
    """One row, float64, explicit sums: KL(ref‖policy), KL(policy‖ref) or JS_π(ref‖policy)."""
    p_new = torch.softmax(policy.double(), -1).tolist()
    p_ref = torch.softmax(ref.double(), -1).tolist()

    def kl(a: list[float], b: list[float]) -> float:
        return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    if kind == "forward":
        return kl(p_ref, p_new)
    if kind == "reverse":
        return kl(p_new, p_ref)
    mix = [pi * r + (1 - pi) * n for r, n in zip(p_ref, p_new, strict=True)]
    return pi * kl(p_ref, mix) + (1 - pi) * kl(p_new, mix)


def naive_cross_entropy(logits: torch.Tensor, label: int) -> float:
    probs = torch.softmax(logits.double(), -1)
    return -math.log(probs[label].item())


class SnapshotPolicy(TrainerCallback):
    """Keep a copy of the policy's weights at the start of every optimizer step."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.states.append(copy.deepcopy(model.state_dict()))


def train_logs(trainer: KLTrainer) -> list[dict]:
    return [row for row in trainer.state.log_history if "task_loss" in row]


# ----------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("kind", DIRECTIONS)
def test_classification_terms_match_naive_sums(kind):
    gen = torch.Generator().manual_seed(1)
    policy, ref = torch.randn(5, 3, generator=gen) * 3, torch.randn(5, 3, generator=gen) * 3
    labels = torch.tensor([0, 2, 1, 1, 0])
    task, div = regularised_terms(policy, ref, labels, kind, js_weight=0.3)
    want_div = sum(naive_divergence(policy[i], ref[i], kind, 0.3) for i in range(5)) / 5
    want_task = sum(naive_cross_entropy(policy[i], int(labels[i])) for i in range(5)) / 5
    torch.testing.assert_close(div.double(), torch.tensor(want_div, dtype=torch.float64))
    torch.testing.assert_close(task.double(), torch.tensor(want_task, dtype=torch.float64))


def test_forward_and_reverse_are_the_article_losses():
    gen = torch.Generator().manual_seed(2)
    policy, ref = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    labels = torch.tensor([0, 1, 2, 0])
    _, fkl = regularised_terms(policy, ref, labels, "forward")
    _, rkl = regularised_terms(policy, ref, labels, "reverse")
    torch.testing.assert_close(fkl, calculate_fkl_loss(policy, ref))
    torch.testing.assert_close(rkl, calculate_rkl_loss(policy, ref))
    assert not torch.allclose(fkl, rkl)  # the direction matters on these logits


def test_generalised_js_properties():
    gen = torch.Generator().manual_seed(3)
    p, q = (
        torch.randn(6, 5, generator=gen, dtype=torch.float64) * 2,
        torch.randn(6, 5, generator=gen, dtype=torch.float64) * 2,
    )
    half = generalised_js_from_logits(p, q, 0.5)
    torch.testing.assert_close(half, generalised_js_from_logits(q, p, 0.5))  # symmetric at π = ½
    assert (half >= 0).all() and (half <= math.log(2) + 1e-12).all()
    # JS_π/π → KL(P‖Q) as π → 0 and JS_π/(1−π) → KL(Q‖P) as π → 1 (error is O(π)).
    kl_pq = torch.tensor([naive_divergence(q[i], p[i], "forward", 0) for i in range(6)]).double()
    kl_qp = torch.tensor([naive_divergence(q[i], p[i], "reverse", 0) for i in range(6)]).double()
    eps = 1e-5
    torch.testing.assert_close(
        generalised_js_from_logits(p, q, eps) / eps, kl_pq, rtol=1e-3, atol=1e-4
    )
    torch.testing.assert_close(
        generalised_js_from_logits(p, q, 1 - eps) / eps, kl_qp, rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize("kind", DIRECTIONS)
def test_neg_inf_and_huge_logits_give_no_nan(kind):
    inf = math.inf
    # Row 0: a class masked (-inf) in both; row 1: ±1e4 logits; row 2: ordinary.
    policy = torch.tensor(
        [[0.0, -inf, 1.0], [1e4, -1e4, 0.0], [2.0, 0.5, -1.0]], requires_grad=True
    )
    ref = torch.tensor([[1.0, -inf, 0.0], [-1e4, 1e4, 0.0], [0.0, 1.0, 3.0]])
    _, div = regularised_terms(policy, ref, torch.tensor([0, 1, 0]), kind)
    div.backward()
    assert torch.isfinite(div) and div > 0 and torch.isfinite(policy.grad).all()


def test_one_sided_mask_is_inf_for_kl_but_finite_for_js():
    policy = torch.tensor([[0.0, -math.inf, 1.0]], requires_grad=True)
    ref = torch.tensor([[0.0, 0.0, 1.0]])  # the reference puts mass where the policy has none
    assert torch.isposinf(regularised_terms(policy, ref, torch.tensor([0]), "forward")[1])
    _, js = regularised_terms(policy, ref, torch.tensor([0]), "js", js_weight=0.5)
    js.backward()
    assert torch.isfinite(js) and js <= math.log(2) and torch.isfinite(policy.grad).all()


def test_bad_inputs_raise(tmp_path):
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="direction must be one of"):
        regularised_terms(logits, logits, torch.tensor([0, 1]), "hellinger")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        generalised_js_from_logits(logits, logits, 1.0)
    with pytest.raises(ValueError, match="do not match"):
        regularised_terms(logits, torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="token-level"):
        regularised_terms(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.zeros(2, 5).long())
    with pytest.raises(ValueError, match="beta"):
        train_args(tmp_path, beta=-1.0)
    with pytest.raises(ValueError, match="js_weight"):
        train_args(tmp_path, divergence="js", js_weight=1.5)
    with pytest.raises(ValueError, match="temperature"):
        train_args(tmp_path, temperature=0.0)


# ----------------------------------------------------------------------------- token level


def tiny_causal_lm(seed: int, vocab: int = 40) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab,
        n_positions=16,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return disable_dropout(GPT2LMHeadModel(config))


def padded_lm_batch() -> dict[str, torch.Tensor]:
    """Three rows, right-padded; row 0 has a 2-token prompt without loss, row 2 only padding."""
    input_ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0], [14, 0, 0, 0, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[0, :2] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def naive_token_terms(policy, ref, labels, kind, pi=0.5) -> tuple[float, float, int]:
    """Loop over positions t whose next label y_{t+1} is not -100; return the per-token means."""
    task = div = 0.0
    count = 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = int(labels[b, t + 1])
            if target == -100:
                continue
            task += naive_cross_entropy(policy[b, t], target)
            div += naive_divergence(policy[b, t], ref[b, t], kind, pi)
            count += 1
    return task / count, div / count, count


@pytest.mark.parametrize("kind", DIRECTIONS)
def test_token_level_masks_padding_and_shifts(kind):
    batch = padded_lm_batch()
    labels = batch["labels"]
    with torch.no_grad():
        ref = tiny_causal_lm(seed=1)(
            batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    policy = tiny_causal_lm(seed=0)(
        batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    # Padded positions may hold anything, even -inf everywhere: they must not reach the sums.
    pad = (batch["attention_mask"] == 0).unsqueeze(-1)
    policy = policy.masked_fill(pad, -math.inf)
    ref = ref.masked_fill(pad, -math.inf)
    task, div = regularised_terms(policy, ref, labels, kind, js_weight=0.5, shift=True)
    want_task, want_div, count = naive_token_terms(policy.detach(), ref, labels, kind)
    assert count == 4 + 2  # row 0: targets at t+1 = 2..5; row 1: t+1 = 1, 2; row 2: none
    torch.testing.assert_close(task.double(), torch.tensor(want_task, dtype=torch.float64))
    torch.testing.assert_close(div.double(), torch.tensor(want_div, dtype=torch.float64))
    (task + div).backward()
    assert torch.isfinite(task) and torch.isfinite(div)


def test_token_level_without_valid_tokens_is_zero_not_nan():
    logits = torch.randn(2, 4, 7, requires_grad=True)
    labels = torch.full((2, 4), -100)
    task, div = regularised_terms(logits, logits.detach() + 1, labels, "reverse", shift=True)
    (task + div).backward()
    assert task.item() == 0.0 and div.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_trainer_on_a_causal_lm_logs_the_per_token_means(tmp_path):
    from datasets import Dataset

    batch = padded_lm_batch()
    data = Dataset.from_dict({k: v.tolist() for k, v in batch.items()})
    policy, ref = tiny_causal_lm(seed=0), tiny_causal_lm(seed=1)
    start = copy.deepcopy(policy).eval()
    trainer = KLTrainer(
        model=policy,
        args=train_args(tmp_path, max_steps=1, beta=0.7, divergence="reverse"),
        ref_model=ref,
        train_dataset=data,
        data_collator=default_data_collator,
    )
    assert trainer.shift  # a *ForCausalLM: labels shifted by one
    trainer.train()
    (log,) = train_logs(trainer)
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        want_task, want_div, _ = naive_token_terms(
            start(**inputs).logits, ref(**inputs).logits, batch["labels"], "reverse"
        )
    assert log["task_loss"] == pytest.approx(want_task, rel=1e-5)
    assert log["divergence"] == pytest.approx(want_div, rel=1e-4)
    assert log["loss"] == pytest.approx(want_task + 0.7 * want_div, rel=1e-5)


# ----------------------------------------------------------------------------- classification


@pytest.fixture(scope="module")
def minilm():
    choice = resolve_model("minilm")
    return choice, load_tokenizer(choice)


def test_trainer_logs_match_hand_computation_on_the_bundled_model(tmp_path, minilm):
    choice, tokenizer = minilm
    train = tokenize_dataset(article_split()["train"], tokenizer)
    policy = disable_dropout(load_classifier(choice, num_labels=3, seed=0))
    ref = load_classifier(choice, num_labels=3, seed=1)  # another head: KL > 0 from step 1
    ref_before = copy.deepcopy(ref.state_dict())
    snapshots = SnapshotPolicy()
    beta = 0.5
    trainer = KLTrainer(
        model=policy,
        args=train_args(tmp_path, beta=beta, divergence="forward"),
        ref_model=ref,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[snapshots],
    )
    trainer.train()
    logs = train_logs(trainer)
    assert [row["step"] for row in logs] == [1, 2]

    collate = DataCollatorWithPadding(tokenizer)
    batch = collate([train[i] for i in range(len(train))])  # 7 sentences < batch 8: one batch
    labels = batch.pop("labels")
    probe = copy.deepcopy(policy).eval()
    with torch.no_grad():
        ref_logits = ref(**batch).logits
        for row, state in zip(logs, snapshots.states, strict=True):
            probe.load_state_dict(state)
            logits = probe(**batch).logits
            n = len(labels)
            want_task = sum(naive_cross_entropy(logits[i], int(labels[i])) for i in range(n)) / n
            want_div = (
                sum(naive_divergence(logits[i], ref_logits[i], "forward", 0) for i in range(n)) / n
            )
            assert row["task_loss"] == pytest.approx(want_task, rel=1e-4)
            assert row["divergence"] == pytest.approx(want_div, rel=1e-3)
            assert row["loss"] == pytest.approx(
                row["task_loss"] + beta * row["divergence"], rel=1e-6
            )
    assert logs[0]["divergence"] > 1e-4  # the independent head really differs
    assert logs[1]["task_loss"] != logs[0]["task_loss"]  # the policy was updated

    # The reference: same device, eval mode, frozen, unchanged, and not part of the trained model.
    assert not trainer.ref_model.training
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())
    assert next(trainer.ref_model.parameters()).device == next(trainer.model.parameters()).device
    trained_ids = {id(p) for p in trainer.model_wrapped.parameters()}
    assert not any(id(p) in trained_ids for p in trainer.ref_model.parameters())
    for name, value in trainer.ref_model.state_dict().items():
        torch.testing.assert_close(value, ref_before[name])


def tiny_setup(minilm, n: int = 8):
    from kl_helpers.data.article import article_dataset

    _, tokenizer = minilm
    data = tokenize_dataset(article_dataset().select(range(n)), tokenizer)
    return tokenizer, data, disable_dropout(build_tiny_bert(num_labels=3, seed=0))


def test_precomputed_reference_logits_give_the_same_logs(tmp_path, minilm):
    tokenizer, data, model = tiny_setup(minilm)
    collate = DataCollatorWithPadding(tokenizer)
    args = train_args(tmp_path, max_steps=3, beta=0.3, divergence="js", js_weight=0.3)
    live = KLTrainer(
        model=copy.deepcopy(model), args=args, train_dataset=data, data_collator=collate
    )
    live.train()
    with_column = add_reference_logits(data, copy.deepcopy(model).eval(), collate)
    cached = KLTrainer(model=model, args=args, train_dataset=with_column, data_collator=collate)
    assert cached.ref_model is None  # nothing to hold: the column replaces the reference
    cached.train()
    for a, b in zip(train_logs(live), train_logs(cached), strict=True):
        assert b["task_loss"] == pytest.approx(a["task_loss"], rel=1e-5)
        assert b["divergence"] == pytest.approx(a["divergence"], rel=1e-3, abs=1e-7)
    assert train_logs(live)[-1]["divergence"] > 1e-5  # the policy moved away from its start


def test_logs_average_over_accumulation_and_logging_steps(tmp_path, minilm):
    tokenizer, data, model = tiny_setup(minilm)
    args = train_args(
        tmp_path,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        logging_steps=2,
        max_steps=4,
        beta=2.0,
        divergence="reverse",
    )
    trainer = KLTrainer(
        model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)
    )
    trainer.train()
    logs = train_logs(trainer)
    assert [row["step"] for row in logs] == [2, 4]  # each row covers 2 steps × 2 micro-batches
    for row in logs:  # the Trainer's own "loss" is averaged the same way as ours
        assert row["loss"] == pytest.approx(row["task_loss"] + 2.0 * row["divergence"], rel=1e-5)


# ----------------------------------------------------------------------------- torchrun


CLI_ARGS = [
    "--model", "tiny", "--article_data", "all", "--num_train_examples", "8",
    "--max_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-3",
    "--beta", "0.5", "--divergence", "reverse", "--disable_dropout",
    "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true",
]  # fmt: skip


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_processes_match_one_process(tmp_path):
    one = [*CLI_ARGS, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "8"]
    single = [row for row in main(one) if "task_loss" in row]
    out = tmp_path / "two"
    run_torchrun(
        ["-m", "kl_helpers.trainer", *CLI_ARGS, "--output_dir", str(out),
         "--per_device_train_batch_size", "4", "--ddp_backend", "gloo",
         "--ddp_find_unused_parameters", "false"],
        DDP_TIMEOUT_S,
    )  # fmt: skip
    two = [row for row in json.loads((out / "log_history.json").read_text()) if "task_loss" in row]
    assert len(two) == len(single) == 3
    for a, b in zip(single, two, strict=True):
        for key in ("loss", "task_loss", "divergence"):
            assert b[key] == pytest.approx(a[key], rel=DDP_RTOL, abs=DDP_ATOL), (key, a, b)
    assert single[-1]["divergence"] > 1e-4  # the runs moved: agreement is not trivial
