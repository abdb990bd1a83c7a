"""kl_helpers.engine.experiment at its edges (issue 30): resolve_device for config.device None,
"cpu", "cpu:0", "meta" and $KL_DEVICE; resolved for every optimizer and precision on cpu, cuda,
cuda:1 and mps (fused AdamW present or not, native bf16 or not) against a table written out by
hand; run_sweep (with run_experiment replaced by a counter) for no configs, a config listed twice,
force, a changed config, changed data, a model without a name, and keys against run_key of the
resolved config; run_experiment refusing replay KL inputs without replay texts."""

from __future__ import annotations

import pytest
import torch

from kl_helpers import precision
from kl_helpers.encoding import TextData
from kl_helpers.engine import experiment
from kl_helpers.engine.config import ExperimentConfig
from kl_helpers.engine.experiment import resolve_device, resolved, run_experiment, run_sweep
from kl_helpers.engine.results import LossHistory, RunResult, run_key

DATA = TextData(("good", "bad"), (1, 0), ("fine",), (1,), ("neg", "pos"))


@pytest.mark.parametrize("device", [None, "cpu", "cpu:0", "meta"])
def test_resolve_device(monkeypatch, device):
    monkeypatch.setenv("KL_DEVICE", "meta")
    expected = torch.device(device or "meta")
    assert resolve_device(ExperimentConfig(device=device)) == expected


# (device, optimizer, precision, fused available, native bf16) -> (optimizer, precision)
TABLE = [
    ("cpu", "auto", "auto", True, True, "fused", "fp32"),
    ("cpu", "auto", "auto", False, True, "foreach", "fp32"),
    ("cpu", "fused", "bf16", False, False, "foreach", "bf16"),
    ("cpu", "for_loop", "fp16", True, False, "for_loop", "fp16"),
    ("cpu", "foreach", "fp32", True, True, "foreach", "fp32"),
    ("cuda", "auto", "auto", True, True, "fused", "bf16"),
    ("cuda", "auto", "auto", True, False, "fused", "fp32"),
    ("cuda:1", "auto", "auto", False, True, "foreach", "bf16"),
    ("cuda", "fused", "fp16", True, True, "fused", "fp16"),
    ("mps", "auto", "auto", True, True, "foreach", "fp32"),
    ("mps", "fused", "bf16", False, True, "foreach", "bf16"),
]


@pytest.mark.parametrize(("device", "opt", "prec", "fused", "bf16", "want_opt", "want_prec"), TABLE)
def test_resolved_fills_in_what_the_key_sees(
    monkeypatch, device, opt, prec, fused, bf16, want_opt, want_prec
):
    monkeypatch.setattr(precision, "fused_adamw_available", lambda d: fused)
    monkeypatch.setattr(experiment, "fused_adamw_available", lambda d: fused)
    monkeypatch.setattr(precision, "native_bf16", lambda: bf16)
    config = ExperimentConfig(optimizer=opt, precision=prec, beta=0.0)
    full = resolved(config, "tiny", torch.device(device))
    assert full == config.replace(
        model="tiny", device=torch.device(device).type, optimizer=want_opt, precision=want_prec
    )
    assert resolved(full, "tiny", torch.device(device)) == full  # resolving twice changes nothing


def fake_result(config, data, *, model, tokenizer, model_name, reference_logits):
    n, m = len(data.train_texts), len(data.test_texts)
    probs = {
        f"{kind}/{split}": torch.full((k, 2), 0.5, dtype=torch.float64)
        for kind in ("reference", "start", "final")
        for split, k in (("train", n), ("test", m))
    }
    history = LossHistory([0], [0.7], [0.0], [0.0], config.beta, config.method)
    return RunResult(
        config, run_key(config, data.fingerprint()), model_name, config.device, 0.0,
        data.label_names, data.train_texts, data.train_labels, data.test_texts, data.test_labels,
        history, probs,
    )  # fmt: skip


@pytest.fixture()
def trained(monkeypatch):
    calls = []

    def counted(config, data, **kw):
        calls.append(config.label)
        return fake_result(config, data, **kw)

    monkeypatch.setattr(experiment, "run_experiment", counted)
    return calls


def sweep(configs, folder, data=DATA, **kw):
    kw.setdefault("model_name", "tiny")
    return run_sweep(
        configs, data, folder, model=object(), tokenizer=object(), progress=False, **kw
    )


def test_run_sweep_caches_by_resolved_config_and_data(tmp_path, trained):
    assert sweep([], tmp_path) == []
    base = ExperimentConfig(device="cpu", optimizer="foreach")
    other = base.replace(method="reverse", beta=0.5)
    first = sweep([base, other, base], tmp_path)
    assert trained == ["sft", "reverse_b0.5"]  # the repeated config is loaded, not retrained
    full = resolved(base, "tiny", torch.device("cpu"))
    assert first[0].key == first[2].key == run_key(full, DATA.fingerprint())
    assert first[0].config == full and first[2].config == full
    assert [r.config.label for r in sweep([other, base], tmp_path)] == ["reverse_b0.5", "sft"]
    assert len(trained) == 2
    sweep([base], tmp_path, force=True)
    assert trained[2:] == ["sft"]
    sweep([base.replace(lr=base.lr * (1 + 1e-15))], tmp_path)
    sweep([base], tmp_path, data=DATA.with_replay(["x"]))
    sweep([base], tmp_path, model_name="another")
    assert len(trained) == 6
    (custom,) = sweep([base], tmp_path, model_name=None)
    assert custom.model_name == "custom" and custom.config.model == "custom"


@pytest.mark.parametrize("kl_inputs", ["replay", "both"])
def test_run_experiment_needs_replay_texts(kl_inputs):
    config = ExperimentConfig(method="forward", beta=0.1, kl_inputs=kl_inputs)
    with pytest.raises(ValueError, match=f"kl_inputs='{kl_inputs}' needs TextData.replay_texts"):
        run_experiment(config, DATA, model=object(), tokenizer=object(), model_name="x")
