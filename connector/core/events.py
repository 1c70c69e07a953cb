"""Events as the delivery side sees them, and the one way a producer hands findings over.

They live here, below both, so the normaliser can build events without knowing the spool, sinks can read them
without knowing the normaliser, and the SOAR half can publish without importing delivery at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from connector.core.lifecycle import StateChange
from connector.core.model import Finding


@dataclass(frozen=True)
class NewEvent:
    """A normalised event ready to spool; ``meta`` is the small JSON object sinks route on."""

    event_id: str
    meta: str
    ecs: bytes | None
    cef: str | None


@dataclass(frozen=True)
class SpooledEvent:
    """An event as read back from the spool: ``seq`` orders it and moves each sink's cursor."""

    seq: int
    event_id: str
    created: float
    meta: str
    ecs: bytes | None
    cef: str | None


class Publisher(Protocol):
    """Commits findings, and what changed with them (finding transitions, drift, inventory changes), durably for
    delivery; returns once they are safe (the pipeline implements it)."""

    def publish(self, findings: Sequence[Finding], changes: Sequence[StateChange] = ()) -> None: ...


@dataclass(frozen=True)
class RescanResult:
    """What a rescan of one check on one asset found: the rule statuses, by finding fingerprint."""

    scan_id: str
    statuses: dict[str, str]


class Rescanner(Protocol):
    """Runs one check on one configured asset now and publishes the result (the runtime implements it)."""

    def rescan(self, asset_id: str, check: str) -> RescanResult: ...


def encode_line(event: NewEvent | SpooledEvent, output_format: str) -> bytes:
    """One event as a line of a file or stream; every writer (file and stdout sinks, ``scan -o``) uses this."""
    if output_format == "cef":
        return (event.cef or "").encode() + b"\n"
    return (event.ecs or b"{}") + b"\n"
