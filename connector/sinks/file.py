"""Append events to a local file, one per line (ECS JSON or CEF), fsynced per batch, rotated by size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from connector.sinks.base import EventFormat, SendOutcome, Sink, SinkSettings, TransientSinkError
from connector.spool import SpooledEvent


class FileSettings(SinkSettings):
    type: Literal["file"] = "file"
    path: Path
    format: Literal["ecs", "cef"] = "ecs"
    rotate_bytes: int = Field(default=100 * 1024 * 1024, ge=0, description="rotate past this size; 0: never")
    keep: int = Field(default=5, ge=1, le=1000, description="rotated files kept: path.1 (newest) .. path.N")


class FileSink(Sink):
    type_name = "file"
    settings_model = FileSettings

    def __init__(self, settings: SinkSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, FileSettings)
        self.config = settings

    @property
    def formats(self) -> frozenset[EventFormat]:
        return frozenset({self.config.format})

    def open(self) -> None:
        try:
            self.config.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransientSinkError(f"cannot create {self.config.path.parent}: {exc.strerror or exc}") from None

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        """Write and fsync: once this returns, the events survive a crash of the connector or the host."""
        lines = b"".join(encode_line(event, self.config.format) for event in events)
        path = self.config.path
        try:
            limit = self.config.rotate_bytes
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
        path = self.config.path
        oldest = path.with_name(f"{path.name}.{self.config.keep}")
        oldest.unlink(missing_ok=True)
        for index in range(self.config.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                older.rename(path.with_name(f"{path.name}.{index + 1}"))
        path.rename(path.with_name(f"{path.name}.1"))

    def health(self) -> str:
        directory = self.config.path.parent
        if not os.access(directory if directory.exists() else directory.parent, os.W_OK):
            raise TransientSinkError(f"{directory} is not writable")
        return f"writing to {self.config.path}"


def encode_line(event: SpooledEvent, output_format: str) -> bytes:
    if output_format == "cef":
        return (event.cef or "").encode() + b"\n"
    return (event.ecs or b"{}") + b"\n"


SINK = FileSink
