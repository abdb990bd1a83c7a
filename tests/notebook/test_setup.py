"""Every notebook's Colab badge and set-up cell agree with the one source,
``kl_helpers.notebook.setup``;
the cell's Colab branch, run here with a fake ``google.colab`` and a fake pip, stops with a message
when the install fails and installs the notebook's own wheels when it succeeds."""

import json
import re
import sys
import types
from pathlib import Path

import pytest

from kl_helpers.notebook import setup
from tests.fake_pip import fake_python

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _first_cells(path: Path) -> tuple[str, str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = next(c for c in cells if c["cell_type"] == "markdown")
    code = next(c for c in cells if c["cell_type"] == "code")
    return "".join(markdown["source"]), "".join(code["source"])


def _later_code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    return "\n".join("".join(c["source"]) for c in code[1:])


def test_the_asset_table_names_every_notebook():
    assert NOTEBOOKS
    assert {p.stem for p in NOTEBOOKS} == set(setup.NOTEBOOK_USES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_opens_this_notebook(path):
    markdown, _ = _first_cells(path)
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", markdown)
    assert links == [setup.colab_url(path.stem)]
    assert links[0].endswith(f"/blob/main/notebooks/{path.name}")
    assert setup.colab_badge(path.stem) in markdown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_is_the_one_the_module_renders(path):
    _, code = _first_cells(path)
    assert code == setup.setup_cell(path.stem)
    lines = code.splitlines()
    assert lines[0] == "# NBVAL_IGNORE_OUTPUT"
    assert f'    SOURCE = "{setup.INSTALL_SOURCE}"' in lines
    assert f'    install_notebook_assets("{path.stem}")' in lines
    for line in (
        "from kl_helpers.notebook.setup import setup_notebook",
        "RUNTIME = setup_notebook(seed=0)",
        "print(RUNTIME.summary())",
    ):
        assert line in lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_asset_table_matches_what_the_notebook_uses(path):
    uses = setup.NOTEBOOK_USES[path.stem]
    text = path.read_text(encoding="utf-8").lower()
    assert ("reviews" in uses) == ("reviews" in text), "the drug reviews"
    code = _later_code(path)
    uses_llm = "resolve_llm" in code or "from kl_helpers import llm" in code
    assert ("llm" in uses) == uses_llm, "SmolLM2 through kl_helpers.llm.model"


def test_contributing_shows_the_cell_and_the_badge():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert setup.setup_cell("NN_name") in text
    assert setup.colab_badge("NN_name") in text


def _run_cell_in_fake_colab(monkeypatch, tmp_path, path, exit_code, message=""):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "executable", fake_python(tmp_path, exit_code, message))
    installed: list[str] = []
    monkeypatch.setattr(setup, "install_notebook_assets", installed.append)
    summary = types.SimpleNamespace(summary=lambda: "fake runtime")
    monkeypatch.setattr(setup, "setup_notebook", lambda seed: summary)
    _, code = _first_cells(path)
    namespace: dict = {}
    try:
        exec(compile(code, path.name, "exec"), namespace)
    finally:
        args = (tmp_path / "args").read_text().splitlines()
    return installed, args, namespace


@pytest.mark.parametrize("path", NOTEBOOKS[:1] + NOTEBOOKS[-3:], ids=lambda p: p.stem)
def test_failed_install_stops_the_cell_with_what_to_do(monkeypatch, tmp_path, path):
    with pytest.raises(RuntimeError) as info:
        _run_cell_in_fake_colab(monkeypatch, tmp_path, path, 1, "ERROR: network is unreachable")
    message = str(info.value)
    assert f"pip install '{setup.INSTALL_SOURCE}'" in message
    assert "exit code 1" in message and "run this cell again" in message
    assert "ERROR: network is unreachable" in message


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_successful_install_then_the_notebooks_own_assets(monkeypatch, tmp_path, path):
    installed, args, namespace = _run_cell_in_fake_colab(monkeypatch, tmp_path, path, 0)
    assert args == ["-m", "pip", "install", "-q", setup.INSTALL_SOURCE]
    assert installed == [path.stem]
    assert namespace["RUNTIME"].summary() == "fake runtime"


def test_outside_colab_the_cell_installs_nothing(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    monkeypatch.setattr(setup, "setup_notebook", lambda seed: types.SimpleNamespace(summary=str))
    _, code = _first_cells(NOTEBOOKS[0])
    exec(compile(code, NOTEBOOKS[0].name, "exec"), {})
