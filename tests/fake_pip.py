"""A stand-in for the kernel's Python, to run pip commands that fail or succeed without pip."""

from pathlib import Path


def fake_python(tmp_path: Path, exit_code: int, message: str = "") -> str:
    """A script that writes its arguments (one a line) to ``tmp_path/args``, prints ``message`` to
    stderr and exits with ``exit_code``."""
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{tmp_path}/args"\n'
        f'echo "{message}" >&2\n'
        f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return str(script)
