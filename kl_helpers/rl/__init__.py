"""RLHF with a KL penalty (notebook 10); Best-of-N and the exact regularised optimum (notebook 11).

- ``loss``: ``RLConfig``, the response mask, RLOO / group baselines and the loss with the KL in
  the reward (k1) or in the loss (k3)
- ``forward``: log-probs under π and π_ref, each prompt run once for its responses
- ``loop``: LoRA policy, rollouts, one step, the training loop and its evaluations
- ``evaluation``: held-out metrics with standard errors, statistics over seeds
- ``plan``: the experiment's plan (full and quick) and the reward recipes' configs
- ``runs``: cached runs, the reference's pool of samples, one plan's runs (``PlanRuns``, 10 and 11)
- ``reward``: a classifier as the reward (proxy and gold)
- ``best_of_n``: Best-of-N's exact distribution and KL, on a discrete reference or a pool
- ``optimum``: the exact KL-regularised optimum on a discrete reference or a pool
"""
