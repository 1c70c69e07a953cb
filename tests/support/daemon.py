"""What the harnesses for real daemons (Knot DNS, rsyslogd) share: finding the binary, a clean environment, and
stopping the process whatever happens to the test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

STOP_TIMEOUT = 5.0


def find_binary(name: str, candidates: Iterable[str]) -> Path | None:
    """A binary on PATH first (sbin is often missing from it for non-root users), then the usual places."""
    found = shutil.which(name)
    if found:
        return Path(found)
    return next((Path(candidate) for candidate in candidates if Path(candidate).is_file()), None)


def daemon_env() -> dict[str, str]:
    """The environment without systemd's notify and socket-activation variables, which daemons would act on."""
    drop = {"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the daemon does not exit in time. Also the finalizer when a test forgets ``with``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
