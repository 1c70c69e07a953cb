"""Append events to a local file, one per line (ECS JSON or CEF), fsynced per batch, rotated by size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from connector.core.events import SpooledEvent, encode_line
from connector.delivery.sinks.base import EventFormat, SendOutcome, Sink, SinkSettings, TransientSinkError


class FileSettings(SinkSettings):
    type: Literal["file"] = "file"
    path: Path
    format: Literal["ecs", "cef"] = "ecs"
    rotate_bytes: int = Field(default=100 * 1024 * 1024, ge=0, description="rotate past this size; 0: never")
    keep: int = Field(default=5, ge=1, le=1000, description="rotated files kept: path.1 (newest) .. path.N")


class FileSink(Sink[FileSettings]):
    type_name = "file"
    settings_model = FileSettings

    @property
    def formats(self) -> frozenset[EventFormat]:
        return frozenset({self.settings.format})

    def open(self) -> None:
        try:
            self.settings.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransientSinkError(f"cannot create {self.settings.path.parent}: {exc.strerror or exc}") from None

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        """Write and fsync: once this returns, the events survive a crash of the connector or the host."""
        lines = b"".join(encode_line(event, self.settings.format) for event in events)
        path = self.settings.path
        try:
            limit = self.settings.rotate_bytes
            if limit and path.exists() and path.stat().st_size + len(lines) > limit:
                self._rotate()
            with path.open("ab") as handle:
                start = handle.tell()
                try:
                    handle.write(lines)
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    # a half-written batch (disk full) would leave a torn line that breaks JSON-lines readers;
                    # cut it off so the retry appends whole lines only
                    handle.truncate(start)
                    raise
        except OSError as exc:
            raise TransientSinkError(f"cannot write {path}: {exc.strerror or exc}") from None
        return SendOutcome()

    def _rotate(self) -> None:
        path = self.settings.path
        oldest = path.with_name(f"{path.name}.{self.settings.keep}")
        oldest.unlink(missing_ok=True)
        for index in range(self.settings.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                older.rename(path.with_name(f"{path.name}.{index + 1}"))
        path.rename(path.with_name(f"{path.name}.1"))

    def health(self) -> str:
        directory = self.settings.path.parent
        if not os.access(directory if directory.exists() else directory.parent, os.W_OK):
            raise TransientSinkError(f"{directory} is not writable")
        return f"writing to {self.settings.path}"


SINK = FileSink
