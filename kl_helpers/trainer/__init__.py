"""The regulariser as a ``transformers.Trainer``: notebook 12.

- ``kl_trainer``: ``KLTrainer`` and ``KLTrainingArguments``
- ``utils``: causal-LM detection, the reference under accelerate / FSDP / DeepSpeed, LoRA,
  reference logits computed once
- ``cli``: the command line, ``python -m kl_helpers.trainer`` (``__main__``)
"""
