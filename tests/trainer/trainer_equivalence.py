"""Issue 20's accumulation / DDP cases for ``KLTrainer``, shared by the test and its torchrun run.

One optimizer step (plain SGD, lr 0.5, no clipping, β = 0.7, reverse KL) on four rows with 2, 6,
4 and 3 real tokens, for a causal LM (tiny Llama, vocab 64) and a classification head (tiny
BERT, labels 0, 2, 1, 2), with batches as a plain ``dict`` (``default_data_collator``) or as a
``BatchEncoding`` (``DataCollatorWithPadding``). ``independent_step`` computes the expected update
and the logged means in float64 without ``KLTrainer`` or ``kl_helpers.regularizer``.

Run as ``torchrun --nproc_per_node=2 -m tests.trainer.trainer_equivalence OUT`` it trains every
case on two processes (batch 2 × accumulation 1, and 1 × 2) and rank 0 saves the results to ``OUT``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, default_data_collator

from kl_helpers.llm.model import build_tiny_causal_lm
from kl_helpers.models import build_tiny_bert, load_tokenizer, resolve_model
from kl_helpers.trainer.kl_trainer import KLTrainer
from tests.trainer.trainer_args import train_args

IDS = [[5, 6, 0, 0, 0, 0], [7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 0, 0], [3, 4, 5, 0, 0, 0]]
LENGTHS = [2, 6, 4, 3]
CLASS_LABELS = [0, 2, 1, 2]
LR, BETA, DIVERGENCE = 0.5, 0.7, "reverse"
CASES = ("lm-dict", "lm-batchencoding", "cls-dict", "cls-batchencoding")


def rows(case: str) -> dict[str, list]:
    """The four rows as dataset columns: ids, attention mask, labels (−100 on LM padding)."""
    mask = [[1] * n + [0] * (len(IDS[0]) - n) for n in LENGTHS]
    if case.startswith("lm"):
        pairs = zip(IDS, mask, strict=True)
        labels = [[t if m else -100 for t, m in zip(r, mr, strict=True)] for r, mr in pairs]
    else:
        labels = list(CLASS_LABELS)
    return {"input_ids": IDS, "attention_mask": mask, "labels": labels}


def models(case: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(policy, reference): different seeds, so the divergence and its gradient are not 0."""
    if case.startswith("lm"):
        return build_tiny_causal_lm(vocab_size=64, seed=0), build_tiny_causal_lm(64, seed=1)
    return build_tiny_bert(3, seed=0, vocab_size=64), build_tiny_bert(3, seed=1, vocab_size=64)


def collator(case: str) -> Callable:
    """``default_data_collator`` (a ``dict``) or ``DataCollatorWithPadding`` (a BatchEncoding)."""
    if case.endswith("dict"):
        return default_data_collator
    return DataCollatorWithPadding(load_tokenizer(resolve_model("minilm")))


def train_one_step(
    case: str, batch: int, accumulation: int, out_dir: Path | str, **kw: object
) -> dict:
    """Train one step; return the parameter update ``{name: Δ}`` and the logged values.
    ``kw`` go to ``KLTrainingArguments`` (e.g. the DDP backend)."""
    from datasets import Dataset

    policy, ref = models(case)
    start = {n: p.detach().clone() for n, p in policy.named_parameters()}
    args = train_args(
        out_dir, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=1, optim="sgd", learning_rate=LR, max_grad_norm=0.0, beta=BETA,
        divergence=DIVERGENCE, **kw,
    )  # fmt: skip
    trainer = KLTrainer(
        model=policy, args=args, ref_model=ref, train_dataset=Dataset.from_dict(rows(case)),
        data_collator=collator(case),
    )  # fmt: skip
    trainer.train()
    (log,) = [row for row in trainer.state.log_history if "task_loss" in row]
    trained = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    update = {n: (trained[n].detach() - w).cpu() for n, w in start.items()}
    return {"update": update, "log": {k: log[k] for k in ("loss", "task_loss", "divergence")}}


def independent_step(case: str) -> dict:
    """Expected update −lr·∇(mean CE + β·mean KL(π‖ref)) over the four rows at once, and the
    logged means, in float64 by explicit log-softmax sums (no kl_helpers loss code)."""
    policy, ref = (copy.deepcopy(m).double().eval() for m in models(case))
    data = rows(case)
    ids, mask = torch.tensor(data["input_ids"]), torch.tensor(data["attention_mask"])
    labels = torch.tensor(data["labels"])
    logits = policy(input_ids=ids, attention_mask=mask).logits
    with torch.no_grad():
        ref_logits = ref(input_ids=ids, attention_mask=mask).logits
    if logits.ndim == 3:  # position t predicts token t + 1; padding (−100) carries nothing
        logits, ref_logits, labels = logits[:, :-1], ref_logits[:, :-1], labels[:, 1:]
    valid = labels != -100
    logits, ref_logits, labels = logits[valid], ref_logits[valid], labels[valid]
    log_p, log_q = logits.log_softmax(-1), ref_logits.log_softmax(-1)
    task = -log_p.gather(-1, labels[:, None]).mean()
    div = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    loss = task + BETA * div
    loss.backward()
    update = {n: (-LR * p.grad).float() for n, p in policy.named_parameters()}
    log = {"loss": loss.item(), "task_loss": task.item(), "divergence": div.item()}
    return {"update": update, "log": log, "items": int(valid.sum())}


def relative_difference(update: dict, expected: dict) -> float:
    """‖Δ − Δ_expected‖ / ‖Δ_expected‖ over all parameters."""
    diff = sum(float((update[n].double() - w.double()).pow(2).sum()) for n, w in expected.items())
    norm = sum(float(w.double().pow(2).sum()) for w in expected.values())
    return (diff / norm) ** 0.5


def main(out: str) -> None:
    """Every case on this process group (2 × 1 and 1 × 2 per process); rank 0 saves them."""
    torch.set_num_threads(1)
    results = {}
    for case in CASES:
        for batch, accumulation in ((2, 1), (1, 2)):
            run_dir = Path(out).parent / f"{case}-{batch}x{accumulation}"
            results[(case, batch, accumulation)] = train_one_step(
                case, batch, accumulation, run_dir, ddp_backend="gloo",
                ddp_find_unused_parameters=False,
            )  # fmt: skip
    if torch.distributed.get_rank() == 0:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
