"""What the SOAR half did, as records the SIEM receives like findings: every callback, plan and step.

They live here, below both halves, so respond/ can emit them without knowing the spool, and the normaliser can
encode them without knowing respond/. The runtime injects the pipeline as the ``Auditor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from connector.core.clock import utc_now


class Outcome(StrEnum):
    """ECS event.outcome."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class AuditRecord:
    """``action`` is ECS event.action (callback-accepted, playbook-step-skipped...); ``details`` go to postern.audit."""

    action: str
    outcome: Outcome
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utc_now)


class Auditor(Protocol):
    """Commits audit records durably for delivery (the pipeline implements it)."""

    def audit(self, records: list[AuditRecord]) -> None: ...
