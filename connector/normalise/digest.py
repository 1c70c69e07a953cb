"""Owners' digests (core.lifecycle.Digest) as ECS documents and CEF lines.

``event.kind: event``, ``event.action`` digest-daily or digest-weekly, dataset ``postern.digest``, one per owner and
period. It carries ``rule.id`` digest.<period>, ``postern.asset.owner`` and a fingerprint per owner and period, so
a SIEM alert on it and the routine playbook (playbooks/routine-daily-digest.yaml) treat it like a finding: the
playbook mails the owner the lists under ``postern.digest`` (opened, resolved, overdue), rendered by its template.
"""

from __future__ import annotations

from typing import Any

import orjson

from connector.core.events import NewEvent
from connector.core.lifecycle import Digest, DigestEntry
from connector.normalise.cef import escape_extension, escape_header
from connector.normalise.coded import ECS_VERSION, observer, timestamp

DATASET = "postern.digest"
DIGEST_ECS_FIELDS = {"postern.digest.period": "keyword", "postern.digest.start": "date", "postern.digest.end": "date",
                     "postern.digest.opened_count": "long", "postern.digest.resolved_count": "long",
                     "postern.digest.overdue_count": "long", "postern.digest.opened": "flattened",
                     "postern.digest.resolved": "flattened", "postern.digest.overdue": "flattened"}


def digest_message(digest: Digest) -> str:
    return (f"{digest.period} digest for {digest.owner}: {len(digest.opened)} opened, {len(digest.resolved)} "
            f"resolved, {len(digest.overdue)} past their SLA")


def digest_ecs(digest: Digest, connector: dict[str, str]) -> dict[str, Any]:
    return {
        "@timestamp": timestamp(digest.end),
        "message": digest_message(digest),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "module": "postern", "dataset": DATASET, "id": digest.event_id,
                  "category": ["configuration"], "type": ["info"], "action": f"digest-{digest.period}",
                  "start": timestamp(digest.start), "end": timestamp(digest.end)},
        "rule": {"id": f"digest.{digest.period}", "name": f"{digest.period} digest", "category": "digest"},
        "observer": observer(connector),
        "postern": {
            "fingerprint": digest.fingerprint,
            "severity": "info",
            "asset": {"owner": digest.owner},
            "digest": {"period": digest.period, "start": timestamp(digest.start), "end": timestamp(digest.end),
                       "opened_count": len(digest.opened), "resolved_count": len(digest.resolved),
                       "overdue_count": len(digest.overdue), "opened": [_entry(e) for e in digest.opened],
                       "resolved": [_entry(e) for e in digest.resolved],
                       "overdue": [_entry(e) for e in digest.overdue]},
        },
    }


def digest_cef(digest: Digest, connector: dict[str, str]) -> str:
    action = f"digest-{digest.period}"
    header = "|".join(escape_header(part) for part in (
        "Postern", "Posture Connector", connector["version"], action, digest_message(digest)[:512], 1))
    extension = {"rt": int(digest.end.timestamp() * 1000), "start": int(digest.start.timestamp() * 1000),
                 "end": int(digest.end.timestamp() * 1000), "act": action, "dvchost": connector["hostname"],
                 "externalId": digest.event_id, "cs2": digest.owner, "cs2Label": "assetOwner",
                 "cn1": len(digest.opened), "cn1Label": "opened", "cn2": len(digest.resolved), "cn2Label": "resolved",
                 "cn3": len(digest.overdue), "cn3Label": "overdue"}
    return f"CEF:0|{header}|" + " ".join(f"{key}={escape_extension(value)}" for key, value in extension.items())


def digest_spool_event(digest: Digest, connector: dict[str, str], formats: frozenset[str]) -> NewEvent:
    action = f"digest-{digest.period}"
    meta = {"time": digest.end.timestamp(), "host": "", "asset": "", "category": "digest", "rule": action,
            "severity": "info", "status": action, "check": "digest", "action": action}
    return NewEvent(
        event_id=digest.event_id,
        meta=orjson.dumps(meta).decode(),
        ecs=orjson.dumps(digest_ecs(digest, connector)) if "ecs" in formats else None,
        cef=digest_cef(digest, connector) if "cef" in formats else None,
    )


def _entry(entry: DigestEntry) -> dict[str, Any]:
    fields = {"fingerprint": entry.fingerprint, "asset": entry.asset_id, "rule": entry.rule_id,
              "severity": entry.severity.value, "opened_at": timestamp(entry.opened_at),
              "resolved_at": timestamp(entry.resolved_at) if entry.resolved_at else None,
              "due": timestamp(entry.due) if entry.due else None}
    return {key: value for key, value in fields.items() if value is not None}
