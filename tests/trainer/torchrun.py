"""Run a two-process ``torchrun`` job from a test: a free local port, one process group, killed
whole on timeout (torchrun and its workers), output returned for the assertion message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_torchrun(
    args: list[str], timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """``torchrun --nproc_per_node=2 ARGS`` with one CPU thread per worker; its output. Fails the
    test if it runs past ``timeout_s`` or exits non-zero (with the end of its output)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={free_port()}", *args,
    ]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        command, cwd=cwd, env=full_env | (env or {}), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its two workers share this group
        proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout_s} s")
    assert proc.returncode == 0, output[-3000:]
    return output
