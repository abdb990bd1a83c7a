"""Models other than the saved ones, built offline from the bundled ones: MiniLM and SmolLM2 with
fewer layers, saved as local folders that ``KL_MODEL`` / ``KL_LLM`` accept (``make other-models``).

They stand in for "a model the saved outputs were not measured on" (bert-base-uncased or the
Hub's SmolLM2 in Colab): a notebook must run top to bottom on them, skipping its saved-run claims
and failing none of the claims it asserts for any model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kl_helpers import models
from kl_helpers.llm import model as llm

MINILM_LAYERS = 3  # of 6
SMOLLM2_LAYERS = 10  # of 30
LAYERS_ENV = "KL_OTHER_LAYERS"  # "MINILM SMOLLM2", e.g. "5 20": a second depth (make other-models)


def layers(environ=None) -> tuple[int, int]:
    """The depths of the two cut models: $KL_OTHER_LAYERS ("MINILM SMOLLM2") or the defaults."""
    value = (os.environ if environ is None else environ).get(LAYERS_ENV, "").split()
    if not value:
        return MINILM_LAYERS, SMOLLM2_LAYERS
    if len(value) != 2 or not all(v.isdigit() for v in value):
        raise ValueError(f"{LAYERS_ENV} must be two layer counts, e.g. '5 20', got {value!r}")
    minilm, smollm2 = map(int, value)
    if not (1 <= minilm < 6 and 1 <= smollm2 < 30):
        raise ValueError(f"cut MiniLM to 1-5 of 6 layers and SmolLM2 to 1-29 of 30, got {value!r}")
    return minilm, smollm2


def truncated_minilm(folder: Path, layers: int = MINILM_LAYERS) -> Path:
    """The bundled all-MiniLM-L6-v2 cut to its first ``layers`` encoder layers, in ``folder``."""
    from transformers import AutoModel, AutoTokenizer

    source = models.bundled_minilm_path()
    model = AutoModel.from_pretrained(source, local_files_only=True)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(folder)
    return folder


def truncated_smollm2(folder: Path, layers: int = SMOLLM2_LAYERS) -> Path:
    """The bundled SmolLM2-135M-Instruct (GGUF, dequantised to float32) with its first ``layers``
    decoder layers, saved in ``folder`` as plain float32 safetensors."""
    choice = llm.resolve_llm("bundled")
    model = llm.load_causal_lm(choice)
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    for marker in ("quantization_config",):  # the GGUF origin: the saved weights are plain fp32
        if hasattr(model.config, marker):
            delattr(model.config, marker)
    model.hf_quantizer, model.is_quantized = None, False
    model.save_pretrained(folder)
    llm.load_tokenizer(choice).save_pretrained(folder)
    return folder


def build(root: Path, depths: tuple[int, int] | None = None) -> dict[str, Path]:
    """Both folders under ``root`` (reused when already built): {"KL_MODEL": …, "KL_LLM": …}, cut to
    ``depths`` = (MiniLM layers, SmolLM2 layers), by default :func:`layers`."""
    minilm, smollm2 = depths or layers()
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for var, name, build_one, n in (
        ("KL_MODEL", f"minilm-{minilm}-layers", truncated_minilm, minilm),
        ("KL_LLM", f"smollm2-{smollm2}-layers", truncated_smollm2, smollm2),
    ):
        folder = root / name
        if not (folder / "config.json").is_file():
            build_one(folder, n)
        out[var] = folder
    return out


if __name__ == "__main__":
    for var, folder in build(
        Path(sys.argv[1] if len(sys.argv) > 1 else "build/other-models")
    ).items():
        print(f"{var}={folder}")
