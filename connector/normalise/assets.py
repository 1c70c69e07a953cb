"""Inventory changes (core.lifecycle.AssetChange) as ECS ``event.kind: asset`` documents and CEF lines.

ECS 9 defines ``event.kind: asset`` for inventory data and the ``entity.*`` field set for the thing itself; the
host fields carry the name so that host-centric SIEM views find it. The classification that ECS has no fields for
(criticality, data sensitivity, business impact, where a discovered name was found) is under ``postern.asset``.
"""

from __future__ import annotations

from typing import Any

import orjson

from connector.core.events import NewEvent
from connector.core.lifecycle import AssetAction, AssetChange, AssetRecord
from connector.normalise.cef import escape_extension, escape_header
from connector.normalise.coded import ECS_VERSION, observer, timestamp

DATASET = "postern.assets"
_EVENT_TYPE = {AssetAction.CREATED: "creation", AssetAction.CHANGED: "change", AssetAction.REMOVED: "deletion"}
# the ECS fields an asset event carries beyond those of findings, with their types, for the Elasticsearch mappings
ASSET_ECS_FIELDS = {"entity.id": "keyword", "entity.name": "keyword", "entity.type": "keyword",
                    "entity.source": "keyword", "entity.last_seen_timestamp": "date", "host.name": "keyword"}


def asset_ecs(change: AssetChange, connector: dict[str, str]) -> dict[str, Any]:
    record = change.record
    asset = record.asset
    document: dict[str, Any] = {
        "@timestamp": timestamp(change.at),
        "message": f"{change.action.value}: {asset.id}" + (f" (found in {record.seen_from})"
                                                          if record.seen_from else ""),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "asset", "module": "postern", "dataset": DATASET, "id": change.event_id,
                  "category": ["configuration"], "type": [_EVENT_TYPE[change.action]], "action": change.action.value},
        "entity": {"id": asset.id, "name": asset.host, "type": ["host"], "source": record.source,
                   "last_seen_timestamp": timestamp(record.last_seen)},
        "host": {"name": asset.host},
        "tags": list(asset.tags),
        "observer": observer(connector),
        "postern": {"asset": _classification(record),
                    **({"asset_before": _classification(change.before)} if change.before else {})},
    }
    return document


def asset_cef(change: AssetChange, connector: dict[str, str]) -> str:
    asset = change.record.asset
    header = "|".join(escape_header(part) for part in (
        "Postern", "Posture Connector", connector["version"], change.action.value, f"{change.action.value}: {asset.id}",
        3 if change.action is AssetAction.CREATED and change.record.source == "discovered" else 1))
    extension = {"rt": int(change.at.timestamp() * 1000), "act": change.action.value, "dhost": asset.host,
                 "dvchost": connector["hostname"], "externalId": change.event_id,
                 "cs2": asset.owner, "cs2Label": "assetOwner", "cs3": asset.criticality.value,
                 "cs3Label": "assetCriticality", "cs1": change.record.source, "cs1Label": "assetSource"}
    return f"CEF:0|{header}|" + " ".join(f"{key}={escape_extension(value)}" for key, value in extension.items()
                                         if value is not None)


def asset_spool_event(change: AssetChange, connector: dict[str, str], formats: frozenset[str]) -> NewEvent:
    asset = change.record.asset
    meta = {"time": change.at.timestamp(), "host": asset.host, "asset": asset.id, "category": "asset",
            "rule": change.action.value, "severity": "info", "status": change.action.value, "check": "inventory"}
    return NewEvent(
        event_id=change.event_id,
        meta=orjson.dumps(meta).decode(),
        ecs=orjson.dumps(asset_ecs(change, connector)) if "ecs" in formats else None,
        cef=asset_cef(change, connector) if "cef" in formats else None,
    )


def _classification(record: AssetRecord) -> dict[str, Any]:
    asset = record.asset
    fields = {"id": asset.id, "criticality": asset.criticality.value, "owner": asset.owner, "tags": list(asset.tags),
              "data_sensitivity": asset.data_sensitivity.value if asset.data_sensitivity else None,
              "business_impact": asset.business_impact.value if asset.business_impact else None,
              "source": record.source, "seen_from": record.seen_from,
              "first_seen": timestamp(record.first_seen),
              "last_scanned": timestamp(record.last_scanned) if record.last_scanned else None}
    return {key: value for key, value in fields.items() if value is not None}

