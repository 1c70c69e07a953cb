"""Third-party dependencies (core.lifecycle.ThirdPartyDependency) as ECS events and CEF lines.

A name outside the declared scope that an asset depends on (a linked host, a CSP source, an alias target) is
news once: an ``event.kind: event`` document (``event.action: third-party-dependency``) with the name in
``related.hosts`` and, under ``postern.dependency``, where it was seen. The connector never connects to it.
"""

from __future__ import annotations

from typing import Any

import orjson

from connector.core.events import NewEvent
from connector.core.lifecycle import ThirdPartyDependency
from connector.normalise.cef import escape_extension, escape_header
from connector.normalise.coded import ECS_VERSION, observer, timestamp

ACTION = "third-party-dependency"
DATASET = "postern.assets"


def dependency_ecs(dependency: ThirdPartyDependency, connector: dict[str, str]) -> dict[str, Any]:
    asset = dependency.asset
    return {
        "@timestamp": timestamp(dependency.at),
        "message": f"{ACTION}: {dependency.name} (seen as {dependency.seen_from}); outside the scope, not scanned",
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "event", "module": "postern", "dataset": DATASET, "id": dependency.event_id,
                  "category": ["configuration"], "type": ["info"], "action": ACTION},
        **({"host": {"name": asset.host}} if asset is not None else {}),
        "related": {"hosts": [dependency.name, *([asset.host] if asset is not None else [])]},
        "observer": observer(connector),
        "postern": {"dependency": {"name": dependency.name, "seen_from": dependency.seen_from,
                                   **({"asset": asset.id} if asset is not None else {})}},
    }


def dependency_cef(dependency: ThirdPartyDependency, connector: dict[str, str]) -> str:
    header = "|".join(escape_header(part) for part in (
        "Postern", "Posture Connector", connector["version"], ACTION, f"{ACTION}: {dependency.name}", 1))
    extension = {"rt": int(dependency.at.timestamp() * 1000), "act": ACTION, "dhost": dependency.name,
                 "shost": dependency.asset.host if dependency.asset else None, "dvchost": connector["hostname"],
                 "externalId": dependency.event_id, "msg": f"seen as {dependency.seen_from}"}
    return f"CEF:0|{header}|" + " ".join(f"{key}={escape_extension(value)}" for key, value in extension.items()
                                         if value is not None)


def dependency_spool_event(dependency: ThirdPartyDependency, connector: dict[str, str],
                           formats: frozenset[str]) -> NewEvent:
    asset = dependency.asset
    meta = {"time": dependency.at.timestamp(), "host": asset.host if asset else dependency.name,
            "asset": asset.id if asset else None, "category": "asset", "rule": ACTION, "severity": "info",
            "status": ACTION, "check": "inventory"}
    return NewEvent(
        event_id=dependency.event_id,
        meta=orjson.dumps(meta).decode(),
        ecs=orjson.dumps(dependency_ecs(dependency, connector)) if "ecs" in formats else None,
        cef=dependency_cef(dependency, connector) if "cef" in formats else None,
    )
