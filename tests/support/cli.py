"""Running the connector as users do: ``python -m connector ...`` in a child process, never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

COMMAND = (sys.executable, "-m", "connector")


def connector(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one command to completion; ``env`` adds to (does not replace) this process's environment."""
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, check=False, timeout=timeout,
                          env={**os.environ, **(env or {})})


@contextmanager
def connector_process(*args: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """A long-running command (the sidecar); stopped with SIGTERM, then SIGKILL, however the test ends."""
    process = subprocess.Popen([*COMMAND, *args], text=True, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
