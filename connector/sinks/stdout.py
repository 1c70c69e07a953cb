"""Print events on standard output, one per line: for pipes, containers that collect stdout, and debugging."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from connector.sinks.base import EventFormat, SendOutcome, Sink, SinkSettings, TransientSinkError
from connector.sinks.file import encode_line
from connector.spool import SpooledEvent


class StdoutSettings(SinkSettings):
    type: Literal["stdout"] = "stdout"
    format: Literal["ecs", "cef"] = "ecs"


class StdoutSink(Sink):
    type_name = "stdout"
    settings_model = StdoutSettings

    def __init__(self, settings: SinkSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, StdoutSettings)
        self.format = settings.format

    @property
    def formats(self) -> frozenset[EventFormat]:
        return frozenset({self.format})

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        try:
            sys.stdout.buffer.write(b"".join(encode_line(event, self.format) for event in events))
            sys.stdout.buffer.flush()
        except (OSError, ValueError) as exc:
            raise TransientSinkError(f"cannot write to stdout: {exc}") from None
        return SendOutcome()


SINK = StdoutSink
