"""Observation drift (core.lifecycle.Drift) as ECS documents and CEF lines.

A drift is a change, not a state: ``event.kind: event``, ``event.category: [configuration]``, ``event.type:
[change]``, ``event.action`` drift-<kind>, with a message that says what changed in words an analyst reads ("A
record of shop.example.com changed from 192.0.2.1 to 192.0.2.7"). The before and after, and when each was
observed, are under ``postern.drift``: ``last_good_at`` and ``detected_at`` bound when the change happened, which
``bound_seconds`` measures (time to detect, as data). ``rule.id`` drift.<kind> and a fingerprint per asset, kind
and subject let SIEM alerts suppress on it and playbooks act on it as on a finding. The fields are fixed, so they
are written here rather than in a mapping file; host, server, url, dns and tls fields are set where the kind has
them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from connector.core.events import NewEvent
from connector.core.lifecycle import Drift
from connector.normalise.cef import escape_extension, escape_header
from connector.normalise.coded import ECS_VERSION, observer, timestamp

DATASET = "postern.drift"
# the ECS fields a drift event carries beyond those of findings, with their types, for the Elasticsearch mappings
DRIFT_ECS_FIELDS = {"event.action": "keyword", "host.name": "keyword", "server.address": "keyword",
                    "server.port": "long", "url.full": "wildcard", "url.scheme": "keyword", "url.domain": "keyword",
                    "url.path": "wildcard", "url.port": "long", "dns.question.name": "keyword",
                    "dns.question.type": "keyword", "dns.resolved_ip": "ip", "tls.server.hash.sha256": "keyword",
                    "tls.server.issuer": "keyword", "tls.server.not_after": "date", "tags": "keyword"}
# before and after are objects in the event (postern.drift.before/after are flattened fields): a bare list is
# named by what it holds
_LIST_KEY = {"dns": "records", "headers": "headers", "ports": "open", "redirects": "hops"}
_PORTED = ("certificate", "tls")
_ROUTED = ("headers", "redirects")


def drift_message(drift: Drift) -> str:
    host, subject, before, after = drift.asset.host, drift.subject, drift.before, drift.after
    if drift.kind == "dns":
        return f"{subject} record of {host} changed from {_listed(before)} to {_listed(after)}"
    if drift.kind == "certificate":
        return (f"certificate of {host}:{subject} replaced (issuer {after['issuer']}, "
                f"notAfter {str(after['not_after'])[:10]})")
    if drift.kind == "tls":
        changes = _differences(before["protocols"] + _classes(before), after["protocols"] + _classes(after),
                               "now accepts", "no longer accepts")
        return f"accepted TLS of {host}:{subject} changed: {changes}"
    if drift.kind == "headers":
        return f"security headers of {subject} changed: {_differences(before, after, 'added', 'removed')}"
    if drift.kind == "ports":
        return f"open ports of {host} changed: {_differences(before, after, 'opened', 'closed')}"
    if drift.kind == "redirects":
        return f"redirect chain of {subject} changed from {_chain(before)} to {_chain(after)}"
    return f"{drift.kind} of {host} ({subject}) changed"


def drift_ecs(drift: Drift, connector: dict[str, str]) -> dict[str, Any]:
    asset = drift.asset
    document: dict[str, Any] = {
        "@timestamp": timestamp(drift.detected_at),
        "message": drift_message(drift),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "module": "postern", "dataset": DATASET, "id": drift.event_id,
                  "category": ["configuration"], "type": ["change"], "action": f"drift-{drift.kind}"},
        "rule": {"id": f"drift.{drift.kind}", "name": f"{drift.kind} drift", "category": "drift"},
        "host": {"name": asset.host},
        "tags": list(asset.tags),
        "observer": observer(connector),
        "postern": {
            "fingerprint": drift.fingerprint,
            "severity": "info",  # a change, not a failure: playbooks match it by rule.id drift.<kind>
            "drift": {"kind": drift.kind, "subject": drift.subject, "before": _shaped(drift.kind, drift.before),
                      "after": _shaped(drift.kind, drift.after), "detected_at": timestamp(drift.detected_at),
                      "last_good_at": timestamp(drift.last_good_at), "bound_seconds": _bound(drift)},
            "asset": {"id": asset.id, "criticality": asset.criticality.value, "tags": list(asset.tags),
                      **({"owner": asset.owner} if asset.owner else {})},
            "scan_id": drift.scan_id,
        },
    }
    if drift.kind in _PORTED or drift.kind == "ports":
        document["server"] = {"address": asset.host, **({"port": int(drift.subject)} if drift.kind in _PORTED
                                                         else {})}
    if drift.kind in _ROUTED:
        document["url"] = _url_fields(drift.subject)
    if drift.kind == "dns":
        document["dns"] = {"question": {"name": asset.host, "type": drift.subject}}
        if drift.subject in ("A", "AAAA") and drift.after:
            document["dns"]["resolved_ip"] = list(drift.after)
    if drift.kind == "certificate":
        document["tls"] = {"server": {"hash": {"sha256": drift.after["sha256"]}, "issuer": drift.after["issuer"],
                                      "not_after": drift.after["not_after"]}}
    return document


def drift_cef(drift: Drift, connector: dict[str, str]) -> str:
    asset = drift.asset
    action = f"drift-{drift.kind}"
    header = "|".join(escape_header(part) for part in (
        "Postern", "Posture Connector", connector["version"], action, drift_message(drift)[:512], 3))
    extension: dict[str, Any] = {
        "rt": _epoch_ms(drift.detected_at), "start": _epoch_ms(drift.last_good_at), "end": _epoch_ms(drift.detected_at),
        "act": action, "cat": "drift", "externalId": drift.event_id, "dhost": asset.host,
        "dpt": int(drift.subject) if drift.kind in _PORTED else None,
        "request": drift.subject if drift.kind in _ROUTED else None, "dvchost": connector["hostname"],
        "cs1": drift.subject, "cs1Label": "driftSubject", "cs2": asset.owner, "cs2Label": "assetOwner",
        "cs3": asset.criticality.value, "cs3Label": "assetCriticality",
        "cs4": drift.fingerprint, "cs4Label": "findingFingerprint",
        "cs5": _compact(drift.before), "cs5Label": "driftBefore",
        "cs6": _compact(drift.after), "cs6Label": "driftAfter",
        "cn1": _bound(drift), "cn1Label": "boundSeconds", "PosternPostureScanId": drift.scan_id,
    }
    if extension["cs2"] is None:
        del extension["cs2Label"]
    return f"CEF:0|{header}|" + " ".join(f"{key}={escape_extension(value)}" for key, value in extension.items()
                                         if value is not None)


def drift_spool_event(drift: Drift, connector: dict[str, str], formats: frozenset[str]) -> NewEvent:
    action = f"drift-{drift.kind}"
    meta = {"time": drift.detected_at.timestamp(), "host": drift.asset.host, "asset": drift.asset.id,
            "category": "drift", "rule": action, "severity": "info", "status": action, "check": drift.kind,
            "scan_id": drift.scan_id, "action": action}
    return NewEvent(
        event_id=drift.event_id,
        meta=orjson.dumps(meta).decode(),
        ecs=orjson.dumps(drift_ecs(drift, connector)) if "ecs" in formats else None,
        cef=drift_cef(drift, connector) if "cef" in formats else None,
    )


def _shaped(kind: str, value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {_LIST_KEY.get(kind, "value"): value}


def _listed(values: list[str]) -> str:
    return ", ".join(values) if values else "none"


def _classes(value: dict[str, Any]) -> list[str]:
    return [f"{name} suites" for name in value["weak_classes"]]


def _differences(before: list[Any], after: list[Any], added: str, removed: str) -> str:
    gained = [str(item) for item in after if item not in before]
    lost = [str(item) for item in before if item not in after]
    parts = ([f"{added} {', '.join(gained)}"] if gained else []) + ([f"{removed} {', '.join(lost)}"] if lost else [])
    return "; ".join(parts) or "reordered"


def _chain(hops: list[str]) -> str:
    return ", ".join(hops) if hops else "no redirect"


def _url_fields(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    fields: dict[str, Any] = {"full": url, "scheme": parts.scheme, "domain": parts.hostname, "path": parts.path or "/"}
    if parts.port:
        fields["port"] = parts.port
    return fields


def _bound(drift: Drift) -> float:
    return round(max(0.0, (drift.detected_at - drift.last_good_at).total_seconds()), 3)


def _compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()[:4000]


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
