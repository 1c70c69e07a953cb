"""Finding transitions (core.lifecycle) as ECS and CEF events.

A transition is its finding's own event (rule, asset, URL, remediation: everything a SIEM rule or a ticket
needs), re-kinded: ``event.kind: event``, ``event.category: [configuration]``, ``event.type`` creation, change or
deletion, and ``event.action`` finding-opened/-reopened/-changed/-resolved. The mapping files place the
``lifecycle`` source built here (the before and after, the time open) like any other field; the per-scan
``state`` documents stay what dashboards read for current posture.
"""

from __future__ import annotations

from typing import Any

from connector.core.lifecycle import Change, Transition
from connector.core.model import Finding
from connector.normalise.coded import timestamp

DATASET = "postern.lifecycle"
_EVENT_TYPE = {Change.OPENED: "creation", Change.REOPENED: "creation", Change.CHANGED: "change",
               Change.RESOLVED: "deletion"}
_VERB = {Change.OPENED: "opened", Change.REOPENED: "reopened", Change.CHANGED: "changed",
         Change.RESOLVED: "resolved"}


def lifecycle_context(transition: Transition) -> dict[str, Any]:
    """The ``lifecycle`` source of the mapping files."""
    return {
        "action": transition.change.value,
        "change": _VERB[transition.change],
        "reason": transition.reason,
        "opened_at": transition.opened_at,
        "open_seconds": round(transition.open_seconds, 3),
        "before": _verdict(transition.before) if transition.before is not None else None,
        "after": _verdict(transition.finding),
    }


def rekind(document: dict[str, Any], transition: Transition) -> dict[str, Any]:
    """The finding's ECS document as its transition's event."""
    event = document.setdefault("event", {})
    event.update(kind="event", dataset=DATASET, category=["configuration"],
                 type=[_EVENT_TYPE[transition.change]])
    document["message"] = f"finding {_VERB[transition.change]}: {document.get('message', '')}"
    return document


def _verdict(finding: Finding) -> dict[str, Any]:
    return {"status": finding.status.value, "severity": finding.severity.value, "message": finding.message,
            "evidence": finding.evidence or None,
            "observed_at": timestamp(finding.observed_at),
            "scan_id": finding.scan_id}
