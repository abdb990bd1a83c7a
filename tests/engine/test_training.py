"""Tests for kl_helpers.engine.training on a tiny random BERT with the bundled (MiniLM)
tokenizer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from kl_helpers.data.article import article_data
from kl_helpers.divergences import kl_divergence
from kl_helpers.encoding import TextData, encode, pad_batch
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.experiment import run_experiment
from kl_helpers.engine.training import kl_regularised_loss, make_optimizer, train_step
from kl_helpers.models import build_tiny_bert
from kl_helpers.reference import disable_dropout, forward_logits, frozen_reference, predict_logits

FAST = ExperimentConfig(epochs=3, device="cpu")  # a few steps: enough to test the mechanics


def run(config, data, tiny, tokenizer):
    return run_experiment(config, data, model=tiny, tokenizer=tokenizer, model_name="tiny")


def test_loss_matches_naive_float64_in_both_directions():
    g = torch.Generator().manual_seed(0)
    logits, ref = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1])
    p_new, p_ref = logits.double().softmax(-1), ref.double().softmax(-1)
    naive_task = -p_new[torch.arange(5), labels].log().mean()
    naive_fwd = (p_ref * (p_ref.log() - p_new.log())).sum(-1).mean()  # KL(p_ref‖p_new)
    naive_rev = (p_new * (p_new.log() - p_ref.log())).sum(-1).mean()  # KL(p_new‖p_ref)
    total, task, fwd, rev = kl_regularised_loss(logits, labels, ref, "forward", 0.3)
    assert_close(task.double(), naive_task, rtol=1e-5, atol=1e-6)
    assert_close(fwd.double(), naive_fwd, rtol=1e-5, atol=1e-6)
    assert_close(rev.double(), naive_rev, rtol=1e-5, atol=1e-6)
    assert_close(total.double(), naive_task + 0.3 * naive_fwd, rtol=1e-5, atol=1e-6)
    total_r = kl_regularised_loss(logits, labels, ref, "reverse", 0.7)[0]
    assert_close(total_r.double(), naive_task + 0.7 * naive_rev, rtol=1e-5, atol=1e-6)
    assert_close(kl_regularised_loss(logits, labels, ref, "sft", 0.0)[0], task)
    naive_mix = 0.3 * p_ref + 0.7 * p_new
    naive_js = (
        0.3 * (p_ref * (p_ref / naive_mix).log()).sum(-1)
        + 0.7 * (p_new * (p_new / naive_mix).log()).sum(-1)
    ).mean()
    total_js = kl_regularised_loss(logits, labels, ref, "js", 0.5, js_weight=0.3)[0]
    assert_close(total_js.double(), naive_task + 0.5 * naive_js, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="method must be"):
        kl_regularised_loss(logits, labels, ref, "hellinger", 0.1)
    with pytest.raises(ValueError, match="'rkl' is now called 'reverse'"):
        kl_regularised_loss(logits, labels, ref, "rkl", 0.1)


def test_loss_has_no_nan_for_extreme_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    ref = torch.tensor([[-1e4, 1e4, 0.0]])
    total, *_ = kl_regularised_loss(logits, torch.tensor([0]), ref, "reverse", 0.5)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logits.grad).all()


def test_pad_batch_pads_right_with_mask():
    ids, mask = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert pad_batch([torch.tensor([1])], 0, pad_to=4)[0].shape == (1, 4)


def test_padding_does_not_change_eval_logits(tiny, tokenizer, data):
    enc = encode(tokenizer, data.train_texts, data.train_labels, 128)
    alone = torch.cat([predict_logits(tiny, type(enc)((x,), enc.labels[:1], 0)) for x in enc.ids])
    assert_close(predict_logits(tiny, enc), alone, rtol=0, atol=1e-5)
    assert_close(predict_logits(tiny, enc, pad_to=128), alone, rtol=0, atol=1e-5)
    assert_close(predict_logits(tiny, enc, batch_size=2), alone, rtol=0, atol=1e-5)


def test_cached_reference_logits_equal_recomputed_ones(tiny, tokenizer, data):
    enc = encode(tokenizer, data.train_texts, data.train_labels, 128)
    reference = frozen_reference(tiny, FAST)
    cached = predict_logits(reference, enc)
    for idx in (torch.tensor([3, 0, 6]), torch.randperm(len(enc))):
        ids, mask = pad_batch([enc.ids[i] for i in idx], enc.pad_id)
        with torch.no_grad():
            fresh = forward_logits(reference, ids, mask)
        assert_close(cached[idx], fresh, rtol=0, atol=1e-5)


def test_cached_and_recomputed_reference_train_alike(tiny, tokenizer, data):
    config = FAST.replace(method="forward", beta=0.5)
    cached = run(config, data, tiny, tokenizer)
    live = run(config.replace(cache_reference=False), data, tiny, tokenizer)
    assert_close(
        torch.tensor(cached.history.total), torch.tensor(live.history.total), rtol=0, atol=1e-4
    )


def test_reference_is_a_frozen_exact_copy(tiny):
    reference = frozen_reference(tiny, FAST)
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    for (name, a), b in zip(
        tiny.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    other = frozen_reference(tiny, FAST.replace(reference="independent_head"))
    assert not torch.equal(other.classifier.weight, tiny.classifier.weight)
    assert torch.equal(
        other.bert.embeddings.word_embeddings.weight, tiny.bert.embeddings.word_embeddings.weight
    )


def test_kl_is_zero_at_step_zero_only_for_the_same_start_reference(tiny, tokenizer, data):
    same = run(FAST.replace(method="forward", beta=0.1), data, tiny, tokenizer)
    assert same.kl_at_start() == pytest.approx(0.0, abs=1e-10)
    assert_close(same.all_probs("start"), same.all_probs("reference"))
    article = run(
        FAST.replace(method="forward", beta=0.1, reference="independent_head"),
        data,
        tiny,
        tokenizer,
    )
    assert article.kl_at_start() > 1e-6
    # Dropout is on while training, so even the same-start run's first training-step KL > 0.
    assert same.history.kl_forward[0] > 0


def test_run_leaves_the_start_model_untouched(tiny, tokenizer, data):
    before = copy.deepcopy(tiny.state_dict())
    run(FAST.replace(method="reverse", beta=0.3), data, tiny, tokenizer)
    for name, value in tiny.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_same_config_same_numbers_and_seed_matters(tiny, tokenizer, data):
    config = FAST.replace(method="reverse", beta=0.3)
    a, b = run(config, data, tiny, tokenizer), run(config, data, tiny, tokenizer)
    assert a.history.total == b.history.total
    assert torch.equal(a.all_probs("final"), b.all_probs("final"))
    c = run(config.replace(seed=1), data, tiny, tokenizer)
    assert a.history.total != c.history.total


def test_history_shape_and_result_fields(tiny, tokenizer, data):
    result = run(FAST.replace(batch_size=3), data, tiny, tokenizer)  # 7 texts -> 3 steps/epoch
    assert len(result.history) == 3 * 3 and result.history.epoch[:4] == [0, 0, 0, 1]
    assert result.model_name == "tiny" and result.config.device == "cpu"
    # "auto" choices are resolved before keying, so the cache never mixes implementations.
    assert (result.config.optimizer, result.config.precision) == ("fused", "fp32")
    assert result.prob("final", "train").shape == (7, 3)
    assert result.prob("final", "test").shape == (2, 3)
    assert_close(result.all_probs("final").sum(-1), torch.ones(9, dtype=torch.float64))
    assert result.wall_time_s > 0


def test_training_fits_and_kl_penalty_restrains(tiny, tokenizer, data):
    sft = run(FAST.replace(epochs=30, lr=1e-3), data, tiny, tokenizer)
    fkl = run(FAST.replace(epochs=30, lr=1e-3, method="forward", beta=5.0), data, tiny, tokenizer)
    assert sft.history.task[-1] < sft.history.task[0]
    assert fkl.kl_to_reference().mean() < sft.kl_to_reference().mean()


def test_train_step_needs_a_reference(tiny):
    opt = make_optimizer(tiny.parameters(), FAST, torch.device("cpu"))
    ids, mask = pad_batch([torch.tensor([101, 102])], 0)
    with pytest.raises(ValueError, match="ref_logits or a reference"):
        train_step(tiny, opt, ids, mask, torch.tensor([0]), "forward", 0.1)


@pytest.mark.parametrize("impl", ["fused", "foreach", "for_loop", "auto"])
def test_optimizer_implementations(tiny, impl):
    opt = make_optimizer(tiny.parameters(), FAST.replace(optimizer=impl), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["lr"] == 1e-4


def test_text_data_validation_and_fingerprint(data):
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        TextData(("a", "b"), (0,), (), (), ("x", "y"))
    with pytest.raises(ValueError, match="labels must be in"):
        TextData(("a",), (2,), (), (), ("x", "y"))
    with pytest.raises(ValueError, match="at least one training text"):
        TextData((), (), (), (), ("x", "y"))
    assert data.num_labels == 3 and len(data.train_texts) == 7 and len(data.test_texts) == 2
    other = TextData(
        data.train_texts,
        data.train_labels,
        data.test_texts[:1],
        data.test_labels[:1],
        data.label_names,
    )
    assert data.fingerprint() == article_data().fingerprint() != other.fingerprint()


def test_kl_to_reference_matches_divergences(tiny, tokenizer, data):
    r = run(FAST.replace(method="forward", beta=0.1), data, tiny, tokenizer)
    expected = kl_divergence(r.all_probs("reference"), r.all_probs("final"))
    assert_close(r.kl_to_reference(), expected)


# ----------------------------------------------------------------------------- replay

REPLAY = ("the weather is mild today", "a list of prime numbers", "trains leave at noon")


def test_replay_step_equals_hand_computation(tiny, tokenizer, data):
    """kl_inputs="replay": task loss on the batch, β·KL on the replay texts only (and "both")."""
    enc = encode(tokenizer, data.train_texts[:3], data.train_labels[:3], 128)
    rep = encode(tokenizer, REPLAY, None, 128)
    reference = frozen_reference(tiny, FAST)
    ref_task, ref_rep = predict_logits(reference, enc), predict_logits(reference, rep)
    ids, mask = pad_batch(enc.ids, enc.pad_id)
    r_ids, r_mask = pad_batch(rep.ids, rep.pad_id)
    for kl_inputs in ("replay", "both"):
        model = disable_dropout(copy.deepcopy(tiny))
        with torch.no_grad():  # move the policy away from the reference
            g = torch.Generator().manual_seed(0)
            model.classifier.weight.add_(torch.randn(model.classifier.weight.shape, generator=g))
        # the hand computation: naive float64 sums on the logits the model gives before the step
        with torch.no_grad():
            logits = forward_logits(model, ids, mask).double()
            logits_r = forward_logits(model, r_ids, r_mask).double()
        task = torch.nn.functional.cross_entropy(logits, enc.labels)
        pairs = [(logits_r, ref_rep)] + ([(logits, ref_task)] if kl_inputs == "both" else [])
        p = torch.cat([x.softmax(-1) for x, _ in pairs])
        r = torch.cat([y.double().softmax(-1) for _, y in pairs])
        kl_fwd = (r * (r.log() - p.log())).sum(-1).mean()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the step changes nothing
        out = train_step(
            model, opt, ids, mask, enc.labels, "forward", 0.7, ref_task,
            kl_inputs=kl_inputs, replay_batch=(r_ids, r_mask, ref_rep),
        )  # fmt: skip
        assert_close(out[0].double(), task, rtol=1e-5, atol=1e-6)
        assert_close(out[1].double(), kl_fwd, rtol=1e-5, atol=1e-6)
        assert out[1] > 1e-4  # the policy differs from the reference on replay texts
    with pytest.raises(ValueError, match="needs a replay batch"):
        train_step(model, opt, ids, mask, enc.labels, "forward", 0.7, ref_task, kl_inputs="both")


def test_replay_gradient_reaches_the_policy_not_the_reference(tiny, tokenizer, data):
    rep = encode(tokenizer, REPLAY, None, 128)
    reference = frozen_reference(tiny, FAST)
    ref_rep = predict_logits(reference, rep)
    enc = encode(tokenizer, data.train_texts[:2], data.train_labels[:2], 128)
    ids, mask = pad_batch(enc.ids, enc.pad_id)
    r_ids, r_mask = pad_batch(rep.ids, rep.pad_id)
    model = copy.deepcopy(tiny)
    opt = make_optimizer(model.parameters(), FAST, torch.device("cpu"))
    train_step(
        model, opt, ids, mask, enc.labels, "reverse", 1.0, predict_logits(reference, enc),
        kl_inputs="replay", replay_batch=(r_ids, r_mask, ref_rep),
    )  # fmt: skip
    assert all(p.grad is None for p in reference.parameters())
    assert_close(predict_logits(reference, rep), ref_rep)  # the reference never changed


def test_replay_runs_are_keyed_and_differ(tiny, tokenizer, data):
    with_replay = data.with_replay(REPLAY)
    assert with_replay.fingerprint() != data.fingerprint()
    assert TextData(*[getattr(data, f) for f in ("train_texts", "train_labels", "test_texts",
                    "test_labels", "label_names")]).fingerprint() == data.fingerprint()  # fmt: skip
    base = FAST.replace(method="forward", beta=2.0, epochs=4, lr=1e-3)
    task = run(base, with_replay, tiny, tokenizer)
    replay = run(
        base.replace(kl_inputs="replay", replay_batch_size=2), with_replay, tiny, tokenizer
    )
    assert replay.config.key(with_replay.fingerprint()) != task.config.key(
        with_replay.fingerprint()
    )
    assert replay.config.label == "forward_b2_replay"
    assert replay.history.task != task.history.task
    # kl_inputs="task" ignores replay texts entirely: same numbers as without them.
    assert run(base, data, tiny, tokenizer).history.total == task.history.total
    with pytest.raises(ValueError, match="needs TextData.replay_texts"):
        run(base.replace(kl_inputs="both"), data, tiny, tokenizer)


def test_shared_reference_logits_change_no_number(tiny, tokenizer, data, monkeypatch):
    from kl_helpers.engine import experiment
    from kl_helpers.reference import ReferenceLogits

    with_replay = data.with_replay(REPLAY)
    configs = [
        FAST.replace(method="forward", beta=0.3),
        FAST.replace(method="reverse", beta=1.0, seed=1),
        FAST.replace(method="forward", beta=1.0, kl_inputs="replay", replay_batch_size=2),
    ]
    plain = [run(c, with_replay, tiny, tokenizer) for c in configs]
    calls = []
    real = experiment.predict_logits
    monkeypatch.setattr(
        experiment, "predict_logits", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    memo = ReferenceLogits()
    shared = [
        run_experiment(
            c,
            with_replay,
            model=tiny,
            tokenizer=tokenizer,
            model_name="tiny",
            reference_logits=memo,
        )
        for c in configs
    ]
    for a, b in zip(plain, shared, strict=True):
        assert a.history == b.history
        for name, probs in a.probs.items():
            assert torch.equal(probs, b.probs[name]), name
    # the reference scored train, test and replay texts once: 3 + 2 final evaluations per run
    assert len(memo) == 3 and len(calls) == 3 + 2 * len(configs)
    other = build_tiny_bert(num_labels=3, seed=1)  # another start model: its own logits
    run_experiment(
        configs[0],
        with_replay,
        model=other,
        tokenizer=tokenizer,
        model_name="t",
        reference_logits=memo,
    )
    assert len(memo) == 5
