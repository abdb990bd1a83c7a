"""Every notebook's Colab badge and set-up cell agree with the one source,
``kl_helpers.notebook.setup``;
the cell, run here as IPython runs it with a fake Colab shell and a fake pip, stops at a line that
says what to do when the install fails and sets up its own notebook when it succeeds."""

import json
import re
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

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
    assert len(lines) <= 4 and all(len(line) <= 104 for line in lines)
    assert f'    %pip install -q "{setup.INSTALL_SOURCE}"' in lines
    assert lines[-1].startswith(f'RUNTIME = setup_notebook("{path.stem}")')
    assert "NBVAL" not in code


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


class FakeShell:
    """IPython's shell as the set-up cell uses it: its name says whether it is Colab's, and
    ``%pip`` runs pip with ``python`` (IPython's own magic runs ``sys.executable -m pip``)."""

    def __init__(self, colab: bool, python: str):
        self.colab, self.python, self.pip_lines = colab, python, []

    def __str__(self) -> str:
        return "<google.colab._shell.Shell object>" if self.colab else "<ZMQInteractiveShell>"

    def run_line_magic(self, name: str, line: str) -> None:
        assert name == "pip"
        self.pip_lines.append(line)
        subprocess.run([self.python, "-m", "pip", *shlex.split(line)], check=False)


def _run_cell(monkeypatch, tmp_path, path, colab: bool, exit_code=0, message=""):
    """Run ``path``'s set-up cell as IPython would (its ``%pip`` line transformed by IPython),
    with a fake shell and pip; if pip fails, nothing is installed and kl_helpers cannot load."""
    shell = FakeShell(colab, fake_python(tmp_path, exit_code, message))
    calls: list[str] = []
    monkeypatch.setattr(setup, "setup_notebook", lambda notebook: calls.append(notebook) or "ran")
    if exit_code != 0:
        for name in [m for m in sys.modules if m == "kl_helpers" or m.startswith("kl_helpers.")]:
            monkeypatch.setitem(sys.modules, name, None)  # `import` raises ModuleNotFoundError
    _, code = _first_cells(path)
    python = TransformerManager().transform_cell(code)
    namespace: dict = {"get_ipython": lambda: shell}
    exec(compile(python, path.name, "exec"), namespace)
    return shell, calls, namespace


@pytest.mark.parametrize("path", NOTEBOOKS[:1] + NOTEBOOKS[-3:], ids=lambda p: p.stem)
def test_failed_install_stops_the_cell_at_a_line_that_says_what_to_do(monkeypatch, tmp_path, path):
    with pytest.raises(ModuleNotFoundError) as info:
        _run_cell(monkeypatch, tmp_path, path, colab=True, exit_code=1, message="ERROR: offline")
    line = traceback.extract_tb(info.tb)[-1]
    assert line.filename == path.name and "kl_helpers" in str(info.value)
    shown = setup.setup_cell(path.stem).splitlines()[line.lineno - 1]  # what the traceback shows
    assert shown.startswith("from kl_helpers") and "Rerun this cell" in shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_in_colab_the_cell_installs_the_package_then_sets_up_its_notebook(
    monkeypatch, tmp_path, path
):
    shell, calls, namespace = _run_cell(monkeypatch, tmp_path, path, colab=True)
    assert shell.pip_lines == [f'install -q "{setup.INSTALL_SOURCE}"']
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["-m", "pip", "install", "-q", setup.INSTALL_SOURCE]
    assert calls == [path.stem] and namespace["RUNTIME"] == "ran"


def test_outside_colab_the_cell_installs_nothing(monkeypatch, tmp_path):
    shell, calls, _ = _run_cell(monkeypatch, tmp_path, NOTEBOOKS[0], colab=False)
    assert shell.pip_lines == [] and not (tmp_path / "args").exists()
    assert calls == [NOTEBOOKS[0].stem]


def test_setup_notebook_installs_the_notebooks_own_assets_in_colab_only(monkeypatch):
    installed: list[str] = []
    monkeypatch.setattr(setup, "install_notebook_assets", installed.append)
    monkeypatch.setattr(setup, "in_colab", lambda: False)
    setup.setup_notebook("10_rlhf", plot_style=False, verbose=False)
    assert installed == []
    monkeypatch.setattr(setup, "in_colab", lambda: True)
    info = setup.setup_notebook("10_rlhf", plot_style=False, verbose=False)
    assert installed == ["10_rlhf"] and info.seed == 0


def test_failed_asset_install_says_what_to_do(tmp_path):
    python = fake_python(tmp_path, 1, "ERROR: network is unreachable")
    with pytest.raises(RuntimeError) as info:
        setup.install_notebook_assets("08_forgetting", python=python)
    message = str(info.value)
    assert "exited with code 1" in message and "run this cell again" in message
    assert "ERROR: network is unreachable" in message
