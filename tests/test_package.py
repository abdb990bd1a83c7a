"""The package's map: every module is named in its folder's docstring, and every folder says
which notebook introduces it."""

import importlib
import pkgutil
import re

import pytest

import kl_helpers

PACKAGES = ["kl_helpers"] + [
    f"kl_helpers.{m.name}" for m in pkgutil.iter_modules(kl_helpers.__path__) if m.ispkg
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_module_is_named_in_its_folder_docstring(name):
    package = importlib.import_module(name)
    modules = [m.name for m in pkgutil.iter_modules(package.__path__)]
    missing = [m for m in modules if not m.startswith("_") and f"``{m}``" not in package.__doc__]
    assert modules and not missing, missing


@pytest.mark.parametrize("name", [p for p in PACKAGES if p not in ("kl_helpers",)])
def test_every_family_names_its_notebooks(name):
    doc = importlib.import_module(name).__doc__
    assert doc and (
        re.search(r"\b(0[1-9]|1[0-2])\b", doc) or name.endswith(("notebook", "plotting"))
    )
