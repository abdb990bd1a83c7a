"""Device choice, seeding, CPU threads, quick mode, progress bars and quiet logging.

Shared by the engine, the RL loop and the Trainer; ``notebook.setup.setup_notebook`` calls them
in every notebook's first cell.
"""

from __future__ import annotations

import numbers
import os
import random
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

DEVICE_ENV = "KL_DEVICE"  # force a device, e.g. KL_DEVICE=cpu on a GPU machine
THREADS_ENV = "KL_THREADS"  # CPU threads for torch; fixed so reductions repeat run to run


@dataclass(frozen=True)
class RuntimeInfo:
    """What runs where: device, seed, CPU threads and library versions."""

    device: torch.device
    seed: int
    threads: int
    python: str
    torch: str

    def summary(self) -> str:
        """One line for a notebook's first output."""
        return (
            f"device={self.device} | seed={self.seed} | cpu threads={self.threads} | "
            f"python {self.python} | torch {self.torch}"
        )


def pick_device(prefer: str | None = None) -> torch.device:
    """cuda → mps → cpu, unless ``prefer`` or $KL_DEVICE names one."""
    prefer = prefer or os.environ.get(DEVICE_ENV)
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU).

    ValueError, before anything is seeded, unless ``seed`` is an integer in ``[0, 2**32)`` (the
    seeds NumPy takes)."""
    if not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_cpu_threads(threads: int | None = None) -> int:
    """Fix torch's intra-op CPU threads ($KL_THREADS, else all cores up to 8); return the count."""
    if threads is None:
        threads = int(os.environ.get(THREADS_ENV, min(os.cpu_count() or 1, 8)))
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def quiet_libraries() -> None:
    """Silence what makes notebook outputs unstable: HF load reports, progress bars, forks.

    transformers' weight "load report" lists keys in random order with absolute paths; it is
    logged at warning level, so raising the log level to error removes it.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")


def in_colab() -> bool:
    """True inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


QUICK_ENV = "KL_QUICK"

_TRUE = {"1", "true", "yes", "on"}

_FALSE = {"0", "false", "no", "off"}


def quick_mode(environ: dict[str, str] | None = None) -> bool:
    """True when $KL_QUICK says so, else when $CI is set to a true value (CI=true in CI)."""
    env = os.environ if environ is None else environ
    quick = env.get(QUICK_ENV, "").strip().lower()
    if quick in _TRUE:
        return True
    if quick in _FALSE:
        return False
    return env.get("CI", "").strip().lower() in _TRUE


NO_PROGRESS_ENVS = ("CI", "KL_NO_PROGRESS")  # any of these set (non-empty) hides progress bars


def show_progress(progress: bool | None) -> bool:
    """Progress bars on unless ``progress`` is False or $CI / $KL_NO_PROGRESS is set."""
    if progress is not None:
        return progress
    return not any(os.environ.get(name) for name in NO_PROGRESS_ENVS)


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    progress: bool | None = None,
):
    """A ``tqdm.auto`` bar, on or off as :func:`show_progress` says, that stays when done.

    In a notebook, tqdm draws a widget whose plain-text copy (what GitHub, nbval and a notebook
    without widget state show) is written once, when the bar appears ("0/13"). This bar rewrites
    its display when it closes, so a saved notebook reads as finished ("13/13"). Elsewhere it is
    tqdm's text bar. Use it as tqdm: iterate, ``update``, ``set_postfix``; close it (a loop over
    the bar closes it at the end).
    """
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as notebook_tqdm

    disable = not show_progress(progress)
    if disable or not issubclass(tqdm, notebook_tqdm):  # tqdm.auto picked its text bar
        return tqdm(iterable, desc=desc, total=total, disable=disable)
    return _finished_notebook_bar()(iterable, desc=desc, total=total)


def _finished_notebook_bar() -> type:
    """tqdm's notebook bar, displayed with an id so that ``close`` can redraw it (see above)."""
    from IPython.display import display
    from tqdm.notebook import tqdm as notebook_tqdm

    class FinishedNotebookBar(notebook_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, display=False, **kwargs)
            self._handle = display(self.container, display_id=True)
            self.displayed = True

        def close(self) -> None:
            super().close()
            if getattr(self, "_handle", None) is not None:
                self._handle.update(self.container)
                self._handle = None

    return FinishedNotebookBar
