"""Audit records (core.audit) to ECS documents and CEF lines, so the SOAR half's trail reaches the SIEM as events.

A finding is a state (``event.kind: state``); what the responder did is an event (``event.kind: event``,
``event.category: [configuration]``, ``event.type: [change]`` for a step, ``[access]`` for a callback), keyed by
``event.action`` (callback-accepted, playbook-step-queued...) and ``event.outcome``. The few fields are fixed, so
they are written here rather than in a mapping file; the observer fields match the findings' own.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from connector.core.audit import AuditRecord, Outcome
from connector.core.events import NewEvent
from connector.normalise.cef import escape_extension, escape_header
from connector.normalise.coded import ECS_VERSION, observer, timestamp

# the ECS fields an audit event carries beyond those of findings, with their ECS types, for the Elasticsearch mappings
AUDIT_ECS_FIELDS = {"event.action": "keyword", "event.outcome": "keyword", "event.reason": "keyword",
                    "source.ip": "ip", "http.response.status_code": "long"}
DATASET = "postern.audit"
_CEF_SEVERITY = {Outcome.SUCCESS: 1, Outcome.UNKNOWN: 3, Outcome.FAILURE: 5}


def audit_ecs(record: AuditRecord, connector: dict[str, str]) -> dict[str, Any]:
    callback = record.action.startswith("callback-")
    document: dict[str, Any] = {
        "@timestamp": timestamp(record.at),
        "message": f"{record.action}: {record.reason}",
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "module": "postern", "dataset": DATASET, "id": audit_event_id(record),
                  "category": ["web"] if callback else ["configuration"],
                  "type": ["access"] if callback else ["change"],
                  "action": record.action, "outcome": record.outcome.value, "reason": record.reason},
        "observer": observer(connector),
        "postern": {"audit": {key: value for key, value in record.details.items() if value is not None}},
    }
    client = record.details.get("client")
    if client:
        document["source"] = {"ip": client}
    status = record.details.get("status")
    if isinstance(status, int):
        document["http"] = {"response": {"status_code": status}}
    return document


def audit_cef(record: AuditRecord, connector: dict[str, str]) -> str:
    header = "|".join(escape_header(part) for part in (
        "Postern", "Posture Connector", connector["version"], record.action, record.reason[:512],
        _CEF_SEVERITY[record.outcome]))
    extension = {"rt": int(record.at.timestamp() * 1000), "outcome": record.outcome.value,
                 "dvchost": connector["hostname"], "externalId": audit_event_id(record)}
    if record.details.get("client"):
        extension["src"] = record.details["client"]
    labelled = [("cs1", "source", record.details.get("source")), ("cs2", "playbook", record.details.get("playbook")),
                ("cs3", "job", record.details.get("job")), ("cs4", "fingerprint", record.details.get("fingerprint"))]
    for key, label, value in labelled:
        if value is not None:
            extension[key], extension[f"{key}Label"] = value, label
    return f"CEF:0|{header}|" + " ".join(f"{key}={escape_extension(value)}" for key, value in extension.items())


def audit_spool_event(record: AuditRecord, connector: dict[str, str], formats: frozenset[str]) -> NewEvent:
    meta = {"time": record.at.timestamp(), "host": connector["hostname"], "category": "audit",
            "rule": record.action, "severity": "info", "status": record.outcome.value, "check": "respond"}
    return NewEvent(
        event_id=audit_event_id(record),
        meta=orjson.dumps(meta).decode(),
        ecs=orjson.dumps(audit_ecs(record, connector)) if "ecs" in formats else None,
        cef=audit_cef(record, connector) if "cef" in formats else None,
    )


def audit_event_id(record: AuditRecord) -> str:
    """Deterministic, so a record re-spooled after a crash is one event to every sink."""
    details = orjson.dumps(dict(record.details), option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(b"|".join([record.action.encode(), record.at.isoformat().encode(), details])).hexdigest()[:32]
