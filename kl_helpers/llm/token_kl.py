"""KL between language models token by token: log-probs of responses, exact per-token KL along
prefixes, notebook 05's k1/k2/k3 per token, the chain rule, and the estimators' gradients; nats.

Conventions: ``logits`` is (B, T, V) and already aligned with ``tokens`` (B, T), i.e. ``logits[:,
t]`` is the distribution that produced ``tokens[:, t]`` (see :func:`shift`). ``mask`` (B, T) is True
on response tokens (prompt and padding False). The policy is π (the samples come from it), the
reference π_ref is detached, and log ρ = log π_ref − log π. Introduced in notebook 09.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from kl_helpers._validate import check_same_shape
from kl_helpers.divergences import result_dtype, upcast_half
from kl_helpers.regularizer import masked_sum, per_token_divergence
from kl_helpers.theory.rlhf import KL_ESTIMATORS


def _check_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    if mask.shape != like.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have shape {tuple(like.shape)}")
    return mask.to(torch.bool)


def _check_logits(logits: torch.Tensor, tokens: torch.Tensor) -> None:
    if logits.ndim != tokens.ndim + 1 or logits.shape[:-1] != tokens.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be tokens' shape {tuple(tokens.shape)} + (V,)"
        )


def shift(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask=None, prompt_len=0):
    """Align a causal LM's outputs with the tokens they predict: (logits[:, :-1], ids[:, 1:], mask).

    The mask is True where the predicted token is a response token: position ≥ ``prompt_len``
    (an int, or a (B,) tensor or list of prompt lengths) and not padding (``attention_mask`` ==
    1). Raises ValueError naming the shapes if prompt lengths are not one per row.
    """
    if logits.ndim != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match ids {tuple(input_ids.shape)}")
    if attention_mask is not None:
        check_same_shape(attention_mask, input_ids, ("attention_mask", "input_ids"))
    lengths = torch.as_tensor(prompt_len)
    if lengths.ndim and lengths.shape != input_ids.shape[:1]:
        raise ValueError(
            f"prompt_len {tuple(lengths.shape)} must be (B,) for ids {tuple(input_ids.shape)}"
        )
    targets = input_ids[:, 1:]
    positions = torch.arange(1, input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    prompt = torch.as_tensor(prompt_len, device=input_ids.device).reshape(-1, 1)
    mask = positions >= prompt
    if attention_mask is not None:
        mask = mask & attention_mask[:, 1:].to(torch.bool)
    return logits[:, :-1], targets, mask.expand_as(targets)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, mask=None) -> torch.Tensor:
    """log p(tokens[b, t] | prefix) from aligned logits (B, T, V); (B, T), 0 where ``mask`` is
    False; nats, float32 for half-precision logits (bf16 log-softmax is off by ~0.05 nats).
    Masked-out tokens may hold anything (−100, a pad id past the vocabulary); a token where
    ``mask`` is True must be in [0, V), else ValueError naming it."""
    _check_logits(logits, tokens)
    mask = _check_mask(mask, tokens)
    vocab = logits.shape[-1]
    bad = mask & ((tokens < 0) | (tokens >= vocab))
    if bad.any():
        raise ValueError(
            f"tokens must be ids in [0, {vocab}) where mask is True, got {tokens[bad][0].item()}"
        )
    tokens = torch.where(mask, tokens, torch.zeros_like(tokens))
    safe = torch.where(mask.unsqueeze(-1), logits, torch.zeros_like(logits))
    logp = F.log_softmax(upcast_half(safe), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, logp, torch.zeros_like(logp))


def sequence_log_probs(logits: torch.Tensor, tokens: torch.Tensor, mask=None) -> torch.Tensor:
    """log p(response) = Σ_t log p(y_t | y_<t) over the masked tokens; shape (B,), nats."""
    mask = _check_mask(mask, tokens)
    return masked_sum(token_log_probs(logits, tokens, mask), mask)


def exact_token_kl(policy_logits, ref_logits, mask=None, direction: str = "reverse"):
    """KL at every masked prefix, summed over the whole vocabulary; (B, T), nats.

    ``reverse`` = KL(π‖π_ref), the RLHF penalty; ``forward`` = KL(π_ref‖π).
    """
    return per_token_divergence(policy_logits, ref_logits, mask, direction)


def token_estimates(policy_logp, ref_logp, mask=None) -> dict[str, torch.Tensor]:
    """Per-token k1, k2, k3 (notebook 05's estimators of KL(π‖π_ref)) of sampled tokens; (B, T)."""
    check_same_shape(policy_logp, ref_logp, ("policy_logp", "ref_logp"))
    mask = _check_mask(mask, policy_logp)
    log_rho = torch.where(mask, ref_logp.detach() - policy_logp, torch.zeros_like(policy_logp))
    return {name: fn(log_rho) for name, fn in KL_ESTIMATORS.items()}


def estimator_moments(policy_logits, ref_logits, mask=None) -> dict[str, tuple]:
    """Exact mean and variance of each per-token estimator over the next token y ~ π(·|prefix).

    Computed in float64, returned in ``divergences.result_dtype`` of the logits.
    Returns ``{name: (mean, variance)}``, each (B, T) and 0 where ``mask`` is False: the bias of
    k_i at a prefix is its mean minus :func:`exact_token_kl` (reverse) there.
    """
    check_same_shape(policy_logits, ref_logits, ("policy_logits", "ref_logits"))
    mask = _check_mask(mask, policy_logits[..., 0])
    keep = mask.unsqueeze(-1)
    dtype = result_dtype(policy_logits, ref_logits)  # float64 inside: the means are tiny KLs
    policy_logits, ref_logits = policy_logits.double(), ref_logits.double()
    log_p = F.log_softmax(torch.where(keep, policy_logits, torch.zeros_like(policy_logits)), -1)
    log_r = F.log_softmax(torch.where(keep, ref_logits, torch.zeros_like(ref_logits)), -1)
    p = log_p.exp()
    log_rho = torch.where(p > 0, log_r - log_p, torch.zeros_like(log_p))
    out = {}
    for name, fn in KL_ESTIMATORS.items():
        k = fn(log_rho)
        mean = (p * k).sum(-1)
        var = (p * (k - mean.unsqueeze(-1)) ** 2).sum(-1)
        out[name] = ((mean * mask).to(dtype), (var * mask).to(dtype))
    return out


# ---------------------------------------------------------------------------------------------
# The chain rule: KL(π(y_1..T)‖π_ref(y_1..T)) = E_π[Σ_t KL(π(·|y_<t)‖π_ref(·|y_<t))].
# ---------------------------------------------------------------------------------------------


def all_sequences(vocab_size: int, length: int) -> torch.Tensor:
    """Every sequence of ``length`` tokens from ``vocab_size`` tokens; shape (V^length, length)."""
    if vocab_size < 1 or length < 1:
        raise ValueError(f"need vocab_size >= 1 and length >= 1, got {vocab_size}, {length}")
    if vocab_size**length > 1_000_000:
        raise ValueError(f"{vocab_size}^{length} sequences are too many to enumerate")
    return torch.tensor(list(itertools.product(range(vocab_size), repeat=length)))


def sequence_kl(policy_seq_logp: torch.Tensor, ref_seq_logp: torch.Tensor) -> torch.Tensor:
    """KL(π‖π_ref) between two distributions given on every sequence (log-probs, (N,)); nats."""
    check_same_shape(policy_seq_logp, ref_seq_logp, ("policy_seq_logp", "ref_seq_logp"))
    p = policy_seq_logp.exp()
    if not torch.isclose(p.sum(), torch.ones((), dtype=p.dtype), atol=1e-6):
        raise ValueError(f"policy probabilities sum to {p.sum().item():.6f}, not 1: enumerate all")
    log_ratio = torch.where(p > 0, policy_seq_logp - ref_seq_logp, torch.zeros_like(p))
    return (p * log_ratio).sum()


def chain_rule_sum(policy_seq_logp: torch.Tensor, token_kl: torch.Tensor, mask=None):
    """E_π[Σ_t KL_t] over an enumerated set: Σ_y π(y)·Σ_t token_kl[y, t]; nats."""
    if policy_seq_logp.ndim != 1 or token_kl.shape[:1] != policy_seq_logp.shape:
        raise ValueError(
            f"token_kl {tuple(token_kl.shape)} must be (N, T) for policy_seq_logp "
            f"{tuple(policy_seq_logp.shape)} (N,)"
        )
    return (policy_seq_logp.exp() * masked_sum(token_kl, mask)).sum()


# ---------------------------------------------------------------------------------------------
# Value vs gradient. Each surrogate gives one number per sampled response (B,); the gradient (not
# the value) of their mean over responses drawn from π is the estimator's gradient.
# ---------------------------------------------------------------------------------------------


def k1_in_reward_surrogate(policy_logp, ref_logp, mask=None) -> torch.Tensor:
    """REINFORCE with the sequence's k1 (Σ_t log π/π_ref, detached) as a cost: PPO/RLOO style.

    Its gradient Σ_t ∇log π(y_t)·k1(y) is unbiased for ∇KL(π‖π_ref) over sequences.
    """
    check_same_shape(policy_logp, ref_logp, ("policy_logp", "ref_logp"))
    mask = _check_mask(mask, policy_logp)
    k1 = masked_sum((policy_logp - ref_logp).detach(), mask)
    return k1 * masked_sum(policy_logp, mask)


def k3_in_loss_surrogate(policy_logp, ref_logp, mask=None) -> torch.Tensor:
    """Σ_t k3 differentiated through π (GRPO style): its expected gradient is that of the
    forward KL(π_ref‖π) at each sampled prefix, not of the reverse KL."""
    return masked_sum(token_estimates(policy_logp, ref_logp, mask)["k3"], mask)


def k2_in_loss_surrogate(policy_logp, ref_logp, mask=None) -> torch.Tensor:
    """Σ_t k2 differentiated through π: its expected gradient is that of the reverse KL at each
    sampled prefix, holding the prefix fixed (what an exact per-token KL in the loss gives)."""
    return masked_sum(token_estimates(policy_logp, ref_logp, mask)["k2"], mask)


def k1_in_loss_surrogate(policy_logp, ref_logp, mask=None) -> torch.Tensor:
    """Σ_t k1 differentiated through π: its gradient Σ_t ∇log π has expectation 0."""
    return masked_sum(token_estimates(policy_logp, ref_logp, mask)["k1"], mask)


SURROGATES = {
    "k1 in reward": k1_in_reward_surrogate,
    "k2 in loss": k2_in_loss_surrogate,
    "k3 in loss": k3_in_loss_surrogate,
    "k1 in loss": k1_in_loss_surrogate,
}


def flat_grad(value: torch.Tensor, params) -> torch.Tensor:
    """Gradient of scalar ``value`` w.r.t. ``params`` as one flat vector (the graph is kept), on
    the parameters' device."""
    params = list(params)
    grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for p, g in zip(params, grads, strict=True)
        ]
    )


def per_sequence_grads(values: torch.Tensor, params) -> torch.Tensor:
    """Gradient of each entry of ``values`` (N,) w.r.t. ``params``: shape (N, n_params)."""
    return torch.stack([flat_grad(v, params) for v in values])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two flat vectors (same shape)."""
    check_same_shape(a, b, ("a", "b"))
    return F.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1)).item()


def relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    """‖estimate − exact‖ / ‖exact‖ (same shape)."""
    check_same_shape(estimate, exact, ("estimate", "exact"))
    return ((estimate - exact).norm() / exact.norm()).item()


def tree_sequences(policy_logits: list, ref_logits: list, supports: list) -> dict:
    """Sequence and per-token quantities of a truncated tree (see ``llm.truncated_tree``).

    Level t holds logits (k^t, V) and allowed tokens (k^t, k); tokens outside get logit −inf in
    both models. Returns the k^T sequences (``tokens``), their log-probs under both truncated
    models (``policy_logp``, ``ref_logp``, (N,)) and the exact reverse and forward KL at each of
    their prefixes (``reverse``, ``forward``, (N, T)); differentiable in the policy logits.
    """
    length, k = len(supports), supports[0].shape[-1]
    n = k**length
    seq = torch.arange(n)
    tokens, pol, ref, rev, fwd = [], [], [], [], []
    for t, (p_logits, r_logits, support) in enumerate(
        zip(policy_logits, ref_logits, supports, strict=True)
    ):
        prefix, child = seq // k ** (length - t), (seq // k ** (length - t - 1)) % k

        def truncate(logits, support=support):
            out = torch.full_like(logits, float("-inf"))
            return out.scatter(-1, support, logits.gather(-1, support))

        check_same_shape(p_logits, r_logits, (f"policy_logits[{t}]", f"ref_logits[{t}]"))
        if support.shape[:1] != p_logits.shape[:1]:
            raise ValueError(
                f"supports[{t}] {tuple(support.shape)} must have a row per prefix of "
                f"policy_logits[{t}] {tuple(p_logits.shape)}"
            )
        p_trunc, r_trunc = truncate(p_logits), truncate(r_logits.detach())
        tokens.append(support[prefix, child])
        pol.append(F.log_softmax(upcast_half(p_trunc), -1).gather(-1, support)[prefix, child])
        ref.append(F.log_softmax(upcast_half(r_trunc), -1).gather(-1, support)[prefix, child])
        rev.append(exact_token_kl(p_trunc[:, None], r_trunc[:, None], None, "reverse")[prefix, 0])
        fwd.append(exact_token_kl(p_trunc[:, None], r_trunc[:, None], None, "forward")[prefix, 0])
    stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
    return {
        "tokens": stack(tokens),
        "policy_logp": stack(pol).sum(1),
        "ref_logp": stack(ref).sum(1),
        "policy_token_logp": stack(pol),
        "ref_token_logp": stack(ref),
        "reverse": stack(rev),
        "forward": stack(fwd),
    }


# ---------------------------------------------------------------------------------------------
# Forward vs reverse on real next-token distributions (notebook 03's experiment, token level).
# ---------------------------------------------------------------------------------------------


def mixture_log_probs(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """log(½·softmax(a) + ½·softmax(b)) over the last dim: a two-mode next-token target."""
    check_same_shape(logits_a, logits_b, ("logits_a", "logits_b"))
    logits_a, logits_b = upcast_half(logits_a), upcast_half(logits_b)
    both = torch.stack([F.log_softmax(logits_a, -1), F.log_softmax(logits_b, -1)])
    return torch.logsumexp(both, dim=0) - torch.log(torch.tensor(2.0, dtype=both.dtype))


def blend_landscape(logits_a, logits_b, target_logp, alphas, taus, direction: str) -> torch.Tensor:
    """KL between the target and q = softmax((α·a + (1 − α)·b)/τ) on an (τ, α) grid; nats.

    ``forward`` = KL(target‖q) (weights: the target), ``reverse`` = KL(q‖target); shape
    (len(taus), len(alphas)). The family blends two contexts' logits, so it cannot hold both
    modes of the mixture at once: the two directions then disagree. Raises ValueError unless
    every τ > 0.
    """
    if not all(float(tau) > 0 for tau in taus):
        raise ValueError(f"taus must all be > 0, got {[float(tau) for tau in taus]}")
    check_same_shape(logits_a, logits_b, ("logits_a", "logits_b"))
    check_same_shape(target_logp, logits_a, ("target_logp", "logits_a"))
    alphas = torch.as_tensor(alphas, dtype=logits_a.dtype)
    out = torch.empty(len(taus), len(alphas), dtype=logits_a.dtype)
    target = target_logp.expand(len(alphas), -1)
    for i, tau in enumerate(taus):
        q_logits = (alphas[:, None] * logits_a + (1 - alphas[:, None]) * logits_b) / float(tau)
        out[i] = per_token_divergence(q_logits[None], target[None], None, direction)[0]
    return out


def landscape_minima(landscape: torch.Tensor, alphas, taus, split: float = 0.5) -> list[dict]:
    """The grid minimum with α < ``split`` and the one with α ≥ ``split`` (two basins); ValueError
    if no α lies on one side."""
    if landscape.shape != (len(taus), len(alphas)):
        raise ValueError(
            f"landscape {tuple(landscape.shape)} must be (len(taus), len(alphas)) = "
            f"{(len(taus), len(alphas))}"
        )
    alphas = torch.as_tensor(alphas)
    out = []
    for side in (alphas < split, alphas >= split):
        if not side.any():
            raise ValueError(f"no alpha on each side of split {split}: alphas {alphas.tolist()}")
        sub = landscape[:, side]
        i, j = divmod(int(sub.argmin()), sub.shape[1])
        out.append({"alpha": float(alphas[side][j]), "tau": float(taus[i]), "kl": float(sub[i, j])})
    return out
