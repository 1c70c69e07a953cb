"""Polling for a condition that another thread or process makes true."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float = 15.0, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
