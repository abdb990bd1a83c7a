"""The package's architecture contracts (pyproject.toml, ``make lint``) hold on the package and
each one fails on a deliberately wrong import; no module re-exports names from elsewhere."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kl_helpers

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(kl_helpers.__file__).resolve().parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# contract id -> (module file, the wrong import added to it)
WRONG_IMPORTS = {
    "layers": ("regularizer.py", "from kl_helpers.engine import config"),
    "theory": ("theory/optima.py", "from kl_helpers.studies import metrics"),
    "no-plotting": ("rl/loss.py", "from kl_helpers import plotting"),
    "independent": ("engine/losses.py", "from kl_helpers.data import article"),
    "rl-trainer": ("rl/loop.py", "from kl_helpers.trainer import utils"),
    "acyclic": ("rl/loss.py", "from kl_helpers.rl import loop"),
}


def lint_imports(package_parent: Path, contract: str | None = None):
    """Run import-linter with this repository's contracts on the package under
    ``package_parent``."""
    args = [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    if contract:
        args += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=package_parent)


def contract_ids() -> set[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"] for c in config["tool"]["importlinter"]["contracts"]}


pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists() or sys.version_info < (3, 11), reason="import-linter (test extra)"
)


def test_every_contract_has_a_wrong_import_that_breaks_it():
    assert contract_ids() == set(WRONG_IMPORTS)


def test_the_package_keeps_every_contract():
    done = lint_imports(PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("contract", sorted(WRONG_IMPORTS))
def test_a_wrong_import_breaks_the_contract(tmp_path, contract):
    relative, line = WRONG_IMPORTS[contract]
    copy = tmp_path / "kl_helpers"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / relative
    path.write_text(path.read_text() + f"\n{line}  # deliberately wrong\n")
    done = lint_imports(tmp_path, contract)
    assert done.returncode == 1 and "BROKEN" in done.stdout, done.stdout + done.stderr
    assert line.split()[1] in done.stdout  # the report names the imported module


def test_no_module_reexports_or_forwards_names():
    """Each name is imported from the module that defines it: no ``noqa: F401`` re-exports, no
    module-level ``__getattr__`` forwarding to another module."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        tree = ast.parse(text)
        top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "__getattr__" not in top, path
        for lineno, source in enumerate(text.splitlines(), 1):
            if "noqa: F401" in source:
                assert "google.colab" in source, f"{path}:{lineno}: {source.strip()}"
