"""The package docstring's module -> notebook map names every module of kl_helpers."""

import pkgutil

import kl_helpers


def test_package_docstring_lists_every_module():
    modules = pkgutil.iter_modules(kl_helpers.__path__)
    names = [m.name for m in modules if not m.name.startswith("_")]
    missing = [name for name in names if f"``{name}``" not in kl_helpers.__doc__]
    assert names and not missing, missing
