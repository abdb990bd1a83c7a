"""Language models, token by token: notebook 09 (used by 10).

- ``model``: SmolLM2 resolved offline-first (the Hub, or the bundled GGUF), loaded and run;
  chat prompts; a tiny Llama built in code
- ``sampling``: the one sampler, exactly from softmax(logits / T), with a KV cache
- ``token_kl``: KL between two language models per token; the k1/k2/k3 estimators and their
  gradients
- ``config``: notebook 09's settings (full and quick)
"""
