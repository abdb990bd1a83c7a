"""environment.yml and the Makefile install the same thing, so conda and make cannot drift; the
dependency floors are met by Colab's image, so the Colab cell upgrades nothing Colab has."""

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pip_section() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return pip[0]


LOCAL_EXTRAS = "test,notebook"  # what `make` and conda install: tests, and jupyter for `make run`


def test_environment_installs_this_package_with_the_local_extras():
    assert f"-e .[{LOCAL_EXTRAS}]" in _pip_section()


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


def test_makefile_installs_the_extras_that_pyproject_defines():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(LOCAL_EXTRAS.split(",")) <= set(project["optional-dependencies"])
    assert f"-e '.[{LOCAL_EXTRAS}]'" in (ROOT / "Makefile").read_text()


def test_jupyter_is_an_extra_for_local_runs_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {Requirement(r).name for r in project["dependencies"]}
    assert "jupyter" not in names
    notebook = {Requirement(r).name for r in project["optional-dependencies"]["notebook"]}
    assert "jupyter" in notebook
    assert "$(BIN)/jupyter nbconvert" in (ROOT / "Makefile").read_text()  # make run needs it


COLAB = ROOT / "constraints" / "colab-gpu-2026-08.txt"


def _colab_pins() -> dict[str, str]:
    pins = {}
    for line in COLAB.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_colab_constraints_name_their_source_and_pin_python_313_packages():
    text = COLAB.read_text()
    assert "googlecolab/backend-info" in text and "2026-08-19" in text
    pins = _colab_pins()
    assert {"torch", "transformers", "ipywidgets", "numpy"} <= set(pins)


def test_every_floor_is_met_by_colabs_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _colab_pins()
    checked = []
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name in pins:
            assert requirement.specifier.contains(pins[name]), (line, pins[name])
            checked.append(name)
    assert {"torch", "transformers", "ipywidgets", "datasets", "peft"} <= set(checked)


def test_colab_check_uses_python_313_and_the_constraints():
    make = (ROOT / "Makefile").read_text()
    assert "colab-check:" in make and "python3.13" in make
    assert f"COLAB_CONSTRAINTS := constraints/{COLAB.name}" in make
    assert "-c $(COLAB_CONSTRAINTS) ." in make  # the package as the Colab cell installs it


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_every_install_path_installs_the_no_deps_wheels():
    assert "-m kl_helpers.assets" in (ROOT / "Makefile").read_text()
    # the conda route, on the page the README links for running the series
    assert "python -m kl_helpers.assets" in (ROOT / "docs" / "running.md").read_text()
    assert "python -m kl_helpers.assets" in (ROOT / "environment.yml").read_text()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        # setup_notebook(name) installs only what that notebook needs, in Colab
        # (tests/notebook/test_setup.py checks the whole cell and that call)
        assert f'setup_notebook(\\"{notebook.stem}\\")' in notebook.read_text(), notebook.name


COLAB_URL = (
    "https://colab.research.google.com/github/kl-regularization/kl-regularization/blob/main/"
)


def test_readme_lists_every_notebook_with_its_colab_badge():
    readme = (ROOT / "README.md").read_text()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        path = f"notebooks/{notebook.name}"
        assert f"(./{path})" in readme, f"no link to {path} in the README's table"
        assert f"]({COLAB_URL}{path})" in readme, f"no Colab badge for {path} in the README"


def test_readme_and_docs_links_point_to_files_that_exist():
    """Relative links of the README (the web book's landing page) and of the pages under docs/
    resolve on GitHub: the file is in the repository."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\((?!https?://|#)([^)\s]+)\)", page.read_text()):
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which is missing"
    assert "(./docs/notation.md)" in (ROOT / "README.md").read_text()
