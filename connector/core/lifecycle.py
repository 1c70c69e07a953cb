"""Finding lifecycle: each (asset, rule, subject) is open or resolved, and each move between them is an event.

A scan restates every rule (``event.kind: state``); a transition says what changed since the last complete scan,
so SIEM rules and playbooks alert once per change instead of once per scan. The inventory decides transitions,
the normaliser encodes them, and the spool carries them with the scan's findings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.core.model import Finding


class Change(StrEnum):
    """ECS ``event.action`` of a transition."""

    OPENED = "finding-opened"
    REOPENED = "finding-reopened"
    CHANGED = "finding-changed"
    RESOLVED = "finding-resolved"


@dataclass(frozen=True)
class Transition:
    """``finding`` is the verdict that caused it (the passing one for RESOLVED); ``before`` is the open episode's
    last failing verdict (None when opening); ``opened_at`` is when the current (or resolved) episode opened."""

    change: Change
    finding: Finding
    before: Finding | None
    opened_at: datetime
    reason: str

    @property
    def open_seconds(self) -> float:
        return max(0.0, (self.finding.observed_at - self.opened_at).total_seconds())

    @property
    def event_id(self) -> str:
        """Deterministic per scan, so a transition re-spooled after a crash is one event to every sink."""
        material = f"{self.finding.fingerprint}|{self.change.value}|{self.finding.scan_id}"
        return hashlib.sha256(material.encode()).hexdigest()[:32]
