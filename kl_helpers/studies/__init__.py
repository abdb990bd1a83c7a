"""The studies of notebooks 07-08: how strong β should be, and what the penalty keeps.

- ``metrics``: accuracy, NLL, calibration, entropy and KL to a reference (07)
- ``beta_sweep``: the 3-seed β sweep, its plan, tables and Pareto frontier (07)
- ``heldout``: held-out scores with standard errors and the constant baselines (08)
- ``retention``: the fine-tuned reference and the runs regularised towards it (08)
- ``retention_scores``: the runs' scores against the reference and the "keeps" rule (08)
"""
