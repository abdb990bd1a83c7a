"""The training engine of notebook 06 (used by 07, 08, 10's reward and 12).

- ``config``: ``ExperimentConfig``, one run's settings, and the article's protocol
- ``losses``: the article's SFT losses, named as the article names them
- ``training``: the regularised loss, one step, the loop
- ``experiment``: ``run_experiment`` / ``run_sweep``, seeded and cached
- ``results``: what a run saves, the results cache and its key
"""
