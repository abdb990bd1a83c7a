"""Every public function of the token-KL, RL and regulariser modules that takes paired tensors
refuses mismatched shapes with a ValueError naming both shapes: no silent broadcasting (issue 20,
part 5). The walk enumerates the modules with ``inspect``; a new public function must be added to
``CASES`` or to ``EXEMPT`` with a reason."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

from kl_helpers import regularizer
from kl_helpers.llm import token_kl
from kl_helpers.llm.model import build_tiny_causal_lm
from kl_helpers.rl import forward as rl_forward
from kl_helpers.rl import loop as rl_loop
from kl_helpers.rl import loss as rl
from kl_helpers.theory import rlhf

# the prefix each name below is written with -> the module it walks
MODULES = {
    "token_kl": token_kl,
    "rl": rl,
    "rlhf": rlhf,
    "rl_loop": rl_loop,
    "rl_forward": rl_forward,
    "regularizer": regularizer,
}


def t(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def m(*shape: int) -> torch.Tensor:
    return torch.ones(*shape, dtype=torch.bool)


def ids(*shape: int) -> torch.Tensor:
    return torch.ones(*shape, dtype=torch.long)


def probs(n: int) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=torch.float64)


def model():
    return build_tiny_causal_lm(vocab_size=6)


# name -> (call with mismatched shapes, the two shapes its message must name)
CASES = {
    "token_kl.blend_landscape": (
        lambda: token_kl.blend_landscape(t(5), t(4), t(5), [0.5], [1.0], "forward"),
        [(5,), (4,)],
    ),
    "token_kl.chain_rule_sum": (lambda: token_kl.chain_rule_sum(t(4), t(3, 2)), [(3, 2), (4,)]),
    "token_kl.cosine": (lambda: token_kl.cosine(t(4), t(1)), [(4,), (1,)]),
    "token_kl.estimator_moments": (
        lambda: token_kl.estimator_moments(t(2, 3, 5), t(2, 1, 5)),
        [(2, 3, 5), (2, 1, 5)],
    ),
    "token_kl.exact_token_kl": (
        lambda: token_kl.exact_token_kl(t(2, 3, 5), t(2, 3, 5), m(2, 1)),
        [(2, 1), (2, 3)],
    ),
    "token_kl.k1_in_loss_surrogate": (
        lambda: token_kl.k1_in_loss_surrogate(t(2, 3), t(2, 1)),
        [(2, 3), (2, 1)],
    ),
    "token_kl.k1_in_reward_surrogate": (
        lambda: token_kl.k1_in_reward_surrogate(t(2, 3), t(2, 1)),
        [(2, 3), (2, 1)],
    ),
    "token_kl.k2_in_loss_surrogate": (
        lambda: token_kl.k2_in_loss_surrogate(t(2, 3), t(2, 3), m(2, 1)),
        [(2, 1), (2, 3)],
    ),
    "token_kl.k3_in_loss_surrogate": (
        lambda: token_kl.k3_in_loss_surrogate(t(2, 1), t(2, 3)),
        [(2, 1), (2, 3)],
    ),
    "token_kl.landscape_minima": (
        lambda: token_kl.landscape_minima(t(2, 3), [0.1, 0.9], [1.0, 2.0]),
        [(2, 3), (2, 2)],
    ),
    "token_kl.mixture_log_probs": (lambda: token_kl.mixture_log_probs(t(5), t(1)), [(5,), (1,)]),
    "token_kl.relative_error": (lambda: token_kl.relative_error(t(3), t(1)), [(3,), (1,)]),
    "token_kl.sequence_kl": (
        lambda: token_kl.sequence_kl(probs(4).log(), probs(2).log()),
        [(4,), (2,)],
    ),
    "token_kl.sequence_log_probs": (
        lambda: token_kl.sequence_log_probs(t(2, 3, 5), ids(2, 4)),
        [(2, 3, 5), (2, 4)],
    ),
    "token_kl.shift": (
        lambda: token_kl.shift(t(2, 4, 5), ids(2, 4), attention_mask=ids(2, 1)),
        [(2, 1), (2, 4)],
    ),
    "token_kl.token_estimates": (
        lambda: token_kl.token_estimates(t(2, 3), t(2, 3), m(2, 1)),
        [(2, 1), (2, 3)],
    ),
    "token_kl.token_log_probs": (
        lambda: token_kl.token_log_probs(t(2, 3, 5), ids(2, 3), m(2, 1)),
        [(2, 1), (2, 3)],
    ),
    "token_kl.tree_sequences": (
        lambda: token_kl.tree_sequences([t(1, 5)], [t(1, 4)], [ids(1, 2)]),
        [(1, 5), (1, 4)],
    ),
    "rl.rl_loss": (
        lambda: rl.rl_loss(t(4, 3), t(4, 3), m(4, 1), t(4), 0.1, num_generations=2),
        [(4, 1), (4, 3)],
    ),
    "rlhf.estimator_repetitions": (
        lambda: rlhf.estimator_repetitions(probs(3), probs(4), 2, 2),
        [(3,), (4,)],
    ),
    "rlhf.estimator_table": (lambda: rlhf.estimator_table(probs(3), probs(4), 2, 2), [(3,), (4,)]),
    "rlhf.exact_estimator_moments": (
        lambda: rlhf.exact_estimator_moments(probs(3), probs(4)),
        [(3,), (4,)],
    ),
    "rlhf.fit_policy": (
        lambda: rlhf.fit_policy(probs(3), t(3).double(), 1.0, steps=1, init_logits=t(4)),
        [(4,), (3,)],
    ),
    "rlhf.kl_estimates": (
        lambda: rlhf.kl_estimates(probs(3), probs(4), torch.tensor([0])),
        [(3,), (4,)],
    ),
    "rlhf.kl_regularised_reward": (
        lambda: rlhf.kl_regularised_reward(t(3), t(3), t(1), 1.0),
        [(1,), (3,)],
    ),
    "rlhf.optimal_policy": (lambda: rlhf.optimal_policy(probs(3), t(1), 1.0), [(1,), (3,)]),
    "rlhf.optimal_value": (lambda: rlhf.optimal_value(probs(3), t(2), 1.0), [(2,), (3,)]),
    "rl_forward.check_pairs": (
        lambda: rl_forward.check_pairs(ids(2, 3), ids(2, 3), ids(2, 4), m(2, 3)),
        [(2, 4), (2, 3)],
    ),
    "rl_forward.reference_logits": (
        lambda: rl_forward.reference_logits(
            model(), ids(2, 3), ids(2, 3), ids(2, 4), m(2, 1), 1.0, model()
        ),  # fmt: skip
        [(2, 4), (2, 1)],
    ),
    "rl_forward.response_kl": (
        lambda: rl_forward.response_kl(t(2, 3, 5), t(2, 3, 5), m(2, 1)),
        [(2, 1), (2, 3)],
    ),
    "rl_forward.response_logits": (
        lambda: rl_forward.response_logits(model(), ids(2, 3), ids(2, 1), ids(2, 4), m(2, 4)),
        [(2, 3), (2, 1)],
    ),
    "rl_loop.sample_responses": (
        lambda: rl_loop.sample_responses(
            model(), ids(2, 3), ids(1, 3), rl.RLConfig(max_new_tokens=1), 1, 0, 0
        ),
        [(2, 3), (1, 3)],
    ),
    "regularizer.divergence_from_logits": (
        lambda: regularizer.divergence_from_logits(t(2, 5), t(1, 5)),
        [(2, 5), (1, 5)],
    ),
    "regularizer.generalised_js_from_logits": (
        lambda: regularizer.generalised_js_from_logits(t(2, 5), t(1, 5)),
        [(2, 5), (1, 5)],
    ),
    "regularizer.masked_mean": (
        lambda: regularizer.masked_mean(t(2, 1), m(2, 3)),
        [(2, 3), (2, 1)],
    ),
    "regularizer.masked_sum": (lambda: regularizer.masked_sum(t(2, 1), m(2, 3)), [(2, 3), (2, 1)]),
    "regularizer.per_token_divergence": (
        lambda: regularizer.per_token_divergence(t(2, 3, 5), t(2, 3, 5), m(2, 1)),
        [(2, 1), (2, 3)],
    ),
    "regularizer.regularised_terms": (
        lambda: regularizer.regularised_terms(t(4, 3), t(4, 3), ids(2)),
        [(2,), (4, 3)],
    ),
    "regularizer.token_mask": (
        lambda: regularizer.token_mask(t(2, 3, 5), ids(2, 1), shift=True),
        [(2, 3, 5), (2, 1)],
    ),
}

# A second mismatch for functions with several pairs, including the (B, T) mask with
# (B, 1) log-probs.
MORE_CASES = {
    "token_kl.token_estimates (ref)": (
        lambda: token_kl.token_estimates(t(2, 3), t(2, 1)),
        [(2, 3), (2, 1)],
    ),
    "token_kl.token_log_probs (logits)": (
        lambda: token_kl.token_log_probs(t(2, 3, 5), ids(2, 1)),
        [(2, 3, 5), (2, 1)],
    ),
    "token_kl.shift (prompt_len)": (
        lambda: token_kl.shift(t(2, 4, 5), ids(2, 4), prompt_len=torch.tensor([1, 2, 3])),
        [(3,), (2, 4)],
    ),
    "rl.rl_loss (mask (B, T), logp (B, 1))": (
        lambda: rl.rl_loss(t(4, 1), t(4, 1), m(4, 3), t(4), 0.1, num_generations=2),
        [(4, 3), (4, 1)],
    ),
    "rl.rl_loss (rewards)": (
        lambda: rl.rl_loss(t(4, 3), t(4, 3), m(4, 3), t(4, 1), 0.1, num_generations=2),
        [(4, 1), (4, 3)],
    ),
    "rl_forward.response_logits (rows)": (
        lambda: rl_forward.response_logits(model(), ids(2, 3), ids(2, 3), ids(3, 4), m(3, 4)),
        [(2, 3), (3, 4)],
    ),
    "rl_forward.response_logits (rows, shared prompts)": (
        lambda: rl_forward.response_logits(
            model(), ids(2, 3), ids(2, 3), ids(5, 4), m(5, 4), num_generations=2
        ),
        [(2, 3), (5, 4)],
    ),
    "regularizer.masked_sum (mask (B, T), values (B, 1))": (
        lambda: regularizer.masked_sum(t(4, 1), m(4, 3)),
        [(4, 3), (4, 1)],
    ),
    "regularizer.regularised_terms (ref)": (
        lambda: regularizer.regularised_terms(t(2, 3, 5), t(2, 2, 5), ids(2, 3)),
        [(2, 2, 5), (2, 3, 5)],
    ),
}

EXEMPT = {
    "token_kl.all_sequences": "takes integers only",
    "token_kl.flat_grad": "one tensor and a parameter list (autograd checks the pairing)",
    "token_kl.per_sequence_grads": "one tensor and a parameter list (autograd checks the pairing)",
    "rl.group_advantages": "one tensor (rewards) and a group size, checked together",
    "rl.rloo_advantages": "one tensor (rewards) and a group size, checked together",
    "rl.response_mask": "one tensor",
    "rlhf.optimise_logits": "one tensor and a callable",
    "rlhf.sample_responses": "one tensor and a generator",
    "rl_loop.add_lora": "a model and a config, no tensors",
    "rl_loop.evaluate_policy": "texts in; the tensors it pairs are its own (checked downstream)",
    "rl_loop.rl_step": "texts in; the tensors it pairs are its own (checked downstream)",
    "rl_loop.rollout": "texts in; the tensors it pairs are its own (checked downstream)",
    "rl_loop.train_policy": "texts in; the tensors it pairs are its own (checked downstream)",
    "regularizer.check_direction": "takes a string",
    "regularizer.check_js_weight": "takes a number",
}


def public_functions() -> set[str]:
    names = set()
    for short, module in MODULES.items():
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                names.add(f"{short}.{name}")
    return names


def test_every_public_function_is_walked_or_exempt():
    public = public_functions()
    assert not set(CASES) & set(EXEMPT)
    assert public - set(CASES) - set(EXEMPT) == set(), "add new functions to CASES or EXEMPT"
    assert set(CASES) | set(EXEMPT) <= public, "stale names in CASES or EXEMPT"


@pytest.mark.parametrize("name", list(CASES) + list(MORE_CASES))
def test_mismatched_shapes_raise_a_value_error_naming_both(name):
    torch.set_num_threads(1)
    call, shapes = {**CASES, **MORE_CASES}[name]
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    for shape in shapes:
        assert re.search(re.escape(str(tuple(shape))), message), f"{shape} not in {message!r}"
