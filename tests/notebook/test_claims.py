"""Saved-run claims are asserted on the saved run only; the rest everywhere, with the reason."""

import pytest
import torch

from kl_helpers.models import MINILM
from kl_helpers.notebook import claims


def test_fingerprint_reduces_the_device_to_its_type_and_names_the_precision():
    run = claims.fingerprint("m", torch.device("cuda", 0), torch.bfloat16, "full")
    assert (run.device, run.precision) == ("cuda", "bf16")
    assert claims.fingerprint("m", "cpu", None, "full").precision == "fp32"
    assert claims.fingerprint("m", "cpu", "fp16", "full").precision == "fp16"
    with pytest.raises(ValueError, match="int8"):
        claims.fingerprint("m", "cpu", "int8", "full")
    with pytest.raises(ValueError, match="float64"):
        claims.precision_name(torch.float64)


def test_the_saved_run_matches_itself_and_colab_does_not():
    saved = claims.SAVED_RUNS["06_bert_experiment"]
    assert claims.compare("06_bert_experiment", saved).matches
    colab = claims.fingerprint("bert-base-uncased", "cuda:0", torch.bfloat16, saved.plan)
    check = claims.compare("06_bert_experiment", colab)
    assert not check
    assert [d.split(":")[0] for d in check.differences] == ["model", "device", "precision"]
    assert f"{MINILM} in the saved run" in check.differences[0]


def test_notebook_06s_saved_runs_name_the_epochs_its_modes_train():
    # 06 and 07 build the plan as f"article grid, seed 0, {epochs} epochs" from article_protocol
    from kl_helpers.engine.config import article_protocol

    for name, quick in (("06_bert_experiment", False), ("06_bert_experiment (quick)", True)):
        epochs = article_protocol(quick).epochs
        assert claims.SAVED_RUNS[name].plan == f"article grid, seed 0, {epochs} epochs"
    full = claims.SAVED_RUNS["06_bert_experiment"]
    assert not claims.compare("06_bert_experiment (quick)", full)  # the full run is not the quick


def test_compare_can_leave_fields_out_and_rejects_unknown_names():
    saved = claims.SAVED_RUNS["07_beta_strength"]
    quick = claims.fingerprint(saved.model, "cpu", None, "quick")
    assert not claims.compare("07_beta_strength", quick)
    assert claims.compare("07_beta_strength", quick, fields=("model", "device", "precision"))
    with pytest.raises(ValueError, match="no saved run"):
        claims.compare("99_nothing", quick)
    with pytest.raises(ValueError, match="seed"):
        claims.compare("07_beta_strength", quick, fields=("seed",))


def test_saved_run_claims_are_asserted_only_on_the_saved_run():
    saved = claims.SAVED_RUNS["09_llm_token_kl"]
    other = claims.compare("09_llm_token_kl", claims.fingerprint("tiny", "cpu", None, "full"))
    never = {"measured on the saved run": lambda: False}
    assert claims.check_claims({"a theorem": True}, (never, other)).n_held == 1
    with pytest.raises(AssertionError, match="measured on the saved run"):
        claims.check_claims({}, (never, claims.compare("09_llm_token_kl", saved)))
    with pytest.raises(AssertionError, match="a theorem"):
        claims.check_claims({"a theorem": False}, (never, other))


def test_notebook_10s_saved_models_are_named_as_the_reward_models_name_themselves():
    from kl_helpers.rl import reward
    from kl_helpers.studies import retention

    src = __import__("inspect").getsource(reward.train_reward_model)
    assert 'f"reward-{recipe}:{ref.name}"' in src  # RewardModel.name of a trained reward
    side = f"|truncate-{retention.TRUNCATION_SIDE}"  # retention.trained_reference's ref.name
    for recipe in ("sentiment", "reviews"):
        assert f"reward-{recipe}:{MINILM}{side}" in claims.RLHF_MODELS


def test_the_reason_is_given_even_when_no_saved_run_claim_was_computed():
    quick = claims.fingerprint(MINILM, "cpu", None, "quick")
    report = claims.check_claims({"a theorem": True}, ({}, claims.compare("08_forgetting", quick)))
    assert "skipped 0 claim(s) measured on the saved run" in report.notes[0]
    assert "plan: quick here, full (reference: last 64 tokens" in report.notes[0]
    saved = claims.compare("08_forgetting", claims.SAVED_RUNS["08_forgetting"])
    report = claims.check_claims({"a theorem": True}, ({}, saved))
    assert report.notes == () and str(report) == "1 claims: 1 hold\n  holds  a theorem"


def test_check_claims_tabulates_held_and_skipped_claims_with_the_reason():
    other = claims.compare("09_llm_token_kl", claims.fingerprint("tiny", "cpu", None, "full"))
    saved = claims.compare("09_llm_token_kl", claims.SAVED_RUNS["09_llm_token_kl"])
    never = {"measured on the saved run": lambda: False}
    report = claims.check_claims({"a theorem": True}, (never, other), ({"also saved": True}, saved))
    assert report.rows == (
        ("a theorem", "holds"),
        ("measured on the saved run", "skipped [1]"),
        ("also saved", "holds"),
    )
    assert report.n_held == 2 and len(report.notes) == 1 and "model: tiny here" in report.notes[0]
    text = str(report)
    assert text.splitlines()[0] == "3 claims: 2 hold, 1 skipped (not the saved run)"
    assert "skipped [1]  measured on the saved run" in text and "[1] skipped 1 claim(s)" in text
    page = report._repr_html_()
    assert page.count("<tr>") == 4 and "✓ holds" in page


def test_check_claims_lists_every_failing_claim_and_those_that_raise():
    with pytest.raises(AssertionError) as info:
        claims.check_claims({"ok": True, "false": False, "raises": lambda: 1 / 0, "also false": 0})
    message = str(info.value)
    assert message.startswith("3 claim(s) do not hold")
    assert "  - false" in message and "  - also false" in message
    assert "raises (raised ZeroDivisionError" in message and "  - ok" not in message


def test_check_claims_escapes_html_in_claims():
    report = claims.check_claims({"p < q & r > s": True})
    assert "p &lt; q &amp; r &gt; s" in report._repr_html_()
