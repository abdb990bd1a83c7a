"""environment.yml and the Makefile install the same thing, so conda and make cannot drift."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pip_section() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return pip[0]


def test_environment_installs_this_package_with_test_extra():
    assert "-e .[test]" in _pip_section()


def test_torch_pin_is_the_same_in_environment_and_makefile():
    make_pins = set(re.findall(r"pip install -q (torch==[\d.]+)", (ROOT / "Makefile").read_text()))
    env_pins = {line for line in _pip_section() if line.startswith("torch")}
    assert make_pins and make_pins == env_pins


def test_environment_python_satisfies_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minor = int(python.split("=")[1].split(".")[1])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = int(re.search(r">=3\.(\d+)", project["requires-python"]).group(1))
    assert minor >= floor


def test_makefile_installs_the_test_extra_that_pyproject_defines():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "test" in project["optional-dependencies"]
    assert "-e '.[test]'" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_every_install_path_installs_the_no_deps_wheels():
    assert "-m kl_helpers.assets" in (ROOT / "Makefile").read_text()
    assert "python -m kl_helpers.assets" in (ROOT / "README.md").read_text()
    assert "python -m kl_helpers.assets" in (ROOT / "environment.yml").read_text()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert "!python -m kl_helpers.assets" in notebook.read_text(), notebook.name
