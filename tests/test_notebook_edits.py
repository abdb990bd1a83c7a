"""A reader's edits, injected: notebooks 06, 07, 08, 10 and 11 run top to bottom with edited
parameters.

Each edit cell is tagged ``parameters`` (papermill's convention); papermill inserts the edited
values right after it, exactly as a reader's edit would, and executes the notebook in a fresh
kernel: quick mode, the bundled MiniLM, a temporary results folder. Slow (minutes), so it is
marked ``edits`` and left out of the default run; ``make edits`` runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.edits

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CASES = {
    # 06: the edit its edit cell suggests, then another β list with another seed and shown β
    "06-suggested": ("06_bert_experiment.ipynb", {"BETAS": [0.05, 2.0]}),
    "06-other": ("06_bert_experiment.ipynb", {"BETAS": [1.5, 0.2], "SEED": 3, "SHOW_BETA": 1.5}),
    # 07 (quick mode): the same suggestion, then another β list with another seed
    "07-suggested": ("07_beta_strength.ipynb", {"BETAS": [0.05, 2.0]}),
    "07-other": ("07_beta_strength.ipynb", {"BETAS": [0.2, 1.5], "SEEDS": [3]}),
    # 08 (quick mode): another β list and seed, with the replay KL in both directions
    "08-other": (
        "08_forgetting.ipynb",
        {"BETAS": [1.0], "SEEDS": [1], "REPLAY_METHODS": ["forward", "reverse"]},
    ),
    # 10 (quick mode, bundled SmolLM2): the suggested βs (the comparison β becomes their middle),
    # another seed, and one seed per sweep point (no spread over seeds to show)
    "10-suggested": ("10_rlhf.ipynb", {"BETAS": [0.05, 2.0], "SEED": 1, "SWEEP_SEEDS": 1}),
    # 11 (quick mode): its first exercise's nucleus, and fewer Best-of-N sizes over the pool
    "11-exercise": ("11_best_of_n.ipynb", {"SHORT_TOP_P": 0.5, "BON_NS": [1, 2]}),
}


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A fresh results folder shared by the cases, or $KL_EDITS_RESULTS (e.g. a warm cache)."""
    chosen = os.environ.get("KL_EDITS_RESULTS")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("edits-results")


@pytest.mark.parametrize("case", list(CASES))
def test_edited_notebook_runs_every_cell(case, results_dir, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    name, parameters = CASES[case]
    for var, value in {
        "KL_MODEL": "minilm",
        "KL_LLM": "bundled",
        "KL_QUICK": "1",
        "KL_NO_PROGRESS": "1",
        "KL_RESULTS": str(results_dir),
    }.items():
        monkeypatch.setenv(var, value)
    out = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(out),
        parameters=parameters,
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        kernel_name="python3",
    )
    import nbformat

    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in cells]
    assert any("parameters" in t for t in tags), "the edit cell is tagged `parameters`"
    assert any("injected-parameters" in t for t in tags), "papermill injected the edit"
    assert all(c.execution_count is not None for c in cells), "every code cell ran"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
