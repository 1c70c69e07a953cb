"""Print events on standard output, one per line: for pipes, containers that collect stdout, and debugging."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from connector.core.events import SpooledEvent, encode_line
from connector.delivery.sinks.base import EventFormat, SendOutcome, Sink, SinkSettings, TransientSinkError


class StdoutSettings(SinkSettings):
    type: Literal["stdout"] = "stdout"
    format: Literal["ecs", "cef"] = "ecs"


class StdoutSink(Sink[StdoutSettings]):
    type_name = "stdout"
    settings_model = StdoutSettings

    @property
    def formats(self) -> frozenset[EventFormat]:
        return frozenset({self.settings.format})

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        try:
            sys.stdout.buffer.write(b"".join(encode_line(event, self.settings.format) for event in events))
            sys.stdout.buffer.flush()
        except (OSError, ValueError) as exc:
            raise TransientSinkError(f"cannot write to stdout: {exc}") from None
        return SendOutcome()


SINK = StdoutSink
