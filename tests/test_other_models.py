"""Notebooks 06-12 on models the saved outputs were not measured on (``make other-models``).

In Colab the notebooks run on bert-base-uncased and the Hub's SmolLM2, on ``cuda``; the saved
outputs come from the bundled MiniLM and SmolLM2 GGUF on a CPU. The stand-ins here are those
bundled models cut to fewer layers (``tests/other_models.py``: no network needed), passed through
``KL_MODEL`` / ``KL_LLM`` (docs/running.md). Each notebook must run top to bottom in quick
mode, skip its saved-run claims (its last cell says so) and fail none of those it asserts for any
model. Slow (about 10 minutes), so marked ``other_models`` and left out of the default run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import other_models

pytestmark = pytest.mark.other_models

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CASES = [
    "06_bert_experiment",
    "07_beta_strength",
    "08_forgetting",
    "09_llm_token_kl",
    "10_rlhf",
    "11_best_of_n",
    "12_trainer",
]
GATED = CASES[
    :6
]  # notebooks with claims about their saved run (kl_helpers.notebook.claims.SAVED_RUNS)


@pytest.fixture(scope="module")
def folders() -> dict[str, Path]:
    """The cut models, built once under build/other-models (reused across runs)."""
    return other_models.build(NOTEBOOKS.parent / "build" / "other-models")


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("other-models-results")


@pytest.mark.parametrize("name", CASES)
def test_notebook_runs_on_another_model(name, folders, results_dir, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    env = {"KL_QUICK": "1", "KL_NO_PROGRESS": "1", "KL_RESULTS": str(results_dir)}
    env |= {var: str(folder) for var, folder in folders.items()}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(NOTEBOOKS.parent), os.environ.get("PYTHONPATH", "")])
    )
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(out),
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        kernel_name="python3",
    )
    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in cells), "every code cell ran"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    if name in GATED:
        # the check cell's table: printed text, or the text/plain copy of its displayed report
        last = "".join(
            o.get("text", "") + o.get("data", {}).get("text/plain", "")
            for o in cells[-1].get("outputs", [])
        )
        assert "measured on the saved run" in last and "model: " in last, last
