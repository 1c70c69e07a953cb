"""Append events to a local file, one per line (JSON for ECS, the CEF line for CEF), durably."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from connector.errors import SinkError


class FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"file sink {path}: cannot open: {exc.strerror or exc}", permanent=True) from None

    def write_lines(self, lines: Iterable[str]) -> None:
        """Write and fsync: once this returns, the events survive a crash of the connector or the host."""
        try:
            for line in lines:
                self._handle.write(line + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise SinkError(f"file sink {self.path}: write failed: {exc.strerror or exc}") from None

    def close(self) -> None:
        self._handle.close()
