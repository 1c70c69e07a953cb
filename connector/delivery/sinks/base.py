"""What a sink is: config, encoding, and one ``send`` that reports per event what happened.

Sinks do not retry, queue or acknowledge; the shipper (connector/delivery/shipping.py) owns those guarantees for all of
them. A sink says, for each event of a batch, delivered, rejected for good (with the reason), or retry later;
or raises TransientSinkError when the whole batch failed and may succeed later.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.errors import ConnectorError
from connector.core.events import SpooledEvent

EventFormat = Literal["ecs", "cef"]


class TransientSinkError(ConnectorError):
    """The receiver is unreachable, busy, or answered something unusable: keep the events and retry.

    ``retry_after``: the receiver asked for this many seconds' rest (429/503 Retry-After); the shipper waits at
    least that long, within its ceiling."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is rare from collectors and read as absent)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86_400 else None


@dataclass
class SendOutcome:
    """Per-event verdicts for one batch; events in neither set were delivered."""

    rejected: dict[int, str] = field(default_factory=dict)  # seq -> why the receiver will never accept it
    retry: set[int] = field(default_factory=set)  # seq -> try again after a backoff
    note: str = ""  # why events are being retried, for the log


class SinkSettings(BaseModel):
    """Fields every sink configuration shares."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str = ""
    batch_events: int = Field(default=500, ge=1, le=100_000)
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _default_name(self) -> SinkSettings:
        if not self.name:
            self.name = self.type
        return self


SettingsT = TypeVar("SettingsT", bound=SinkSettings)


@dataclass(frozen=True)
class SetupStep:
    """One thing a SIEM-side setup command installed or checked, as printed to the user."""

    what: str
    outcome: str


class Sink(ABC, Generic[SettingsT]):
    """One destination, typed by its settings model. One module (or package) per sink under
    connector/delivery/sinks/, registered through ``SINK``."""

    type_name: ClassVar[str]
    settings_model: ClassVar[type[SinkSettings]] = SinkSettings

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings
        self.name = settings.name
        self.stopping = threading.Event()  # set on shutdown: long waits inside send() should end early

    @property
    def formats(self) -> frozenset[EventFormat]:
        """The encodings this sink sends; the normaliser spools only what some sink needs."""
        return frozenset({"ecs"})

    def open(self) -> None:
        """Connect or check health before the first batch; raise TransientSinkError if not ready yet."""

    @abstractmethod
    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        """Deliver ``events`` (in order); raise TransientSinkError if the whole batch failed transiently."""

    def health(self) -> str:
        """A one-line health report for ``connector doctor``; raise ConnectorError if unhealthy."""
        return "ok"

    def close(self) -> None:
        """Release connections."""


def describe_error(exc: BaseException) -> str:
    """A one-line, bounded description of a client library's exception, for logs and dead-letter reasons."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")[:300]


def meta(event: SpooledEvent) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(event.meta)
    return value


