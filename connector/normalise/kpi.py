"""KPI snapshots (core.lifecycle.Measurement) as ECS ``event.kind: metric`` documents and CEF lines.

One event per scope (overall, each owner, criticality and tag) after each scan cycle, dataset ``postern.kpi``,
with typed fields under ``postern.kpi``: dashboards chart the series, and a threshold alert (compliance below 90,
a certificate expiring within 14 days) needs no search over findings. The fields are fixed, so they are written
here; KPI_ECS_FIELDS gives their types to the Elasticsearch template and the Splunk TA.
"""

from __future__ import annotations

from typing import Any

import orjson

from connector.core.catalog import Compliance
from connector.core.events import NewEvent
from connector.core.lifecycle import Measurement
from connector.normalise.cef import escape_extension, escape_header
from connector.normalise.coded import ECS_VERSION, observer, timestamp

DATASET = "postern.kpi"
FRAMEWORKS = tuple(Compliance.model_fields)  # pci_dss_4_0, soc2, iso27001_2022, hipaa, gdpr, cis_v8
_COUNTS = ("assets", "next_expiry_days", "mttd.detections", "remediation.within_sla", "remediation.decided",
           "errored_checks", "ciphers.strong", "ciphers.acceptable", "ciphers.weak", "open.critical", "open.high",
           "open.medium", "open.low", "open.info",
           *(f"compliance.{f}.{part}" for f in FRAMEWORKS for part in ("passing", "evaluated", "not_evaluated")))
_RATIOS = ("https_routes_pct", "header_baseline_pct", "valid_certificates_pct", "risk_score", "risk_per_asset",
           "mttd.median_seconds", "mttd.p95_seconds", "false_positive_rate", "detection_accuracy",
           "remediation.rate_pct", *(f"compliance.{f}.score" for f in FRAMEWORKS))
# every field a metric event carries, with its Elasticsearch type
KPI_ECS_FIELDS = {"postern.kpi.scope.kind": "keyword", "postern.kpi.scope.value": "keyword",
                  "postern.kpi.oldest_tls_protocol": "keyword",
                  **{f"postern.kpi.{name}": "long" for name in _COUNTS},
                  **{f"postern.kpi.{name}": "float" for name in _RATIOS}}


def kpi_ecs(measurement: Measurement, connector: dict[str, str]) -> dict[str, Any]:
    values = measurement.values
    scope = (measurement.scope_kind if measurement.scope_kind == "overall"
             else f"{measurement.scope_kind} {measurement.scope_value}")
    kpi: dict[str, Any] = {"scope": {"kind": measurement.scope_kind, "value": measurement.scope_value}}
    for name, value in values.items():
        if value is None:
            continue  # not evaluated: absent, so that averages and thresholds ignore it
        parent = kpi
        *path, leaf = name.split(".")
        for part in path:
            parent = parent.setdefault(part, {})
        parent[leaf] = value
    return {
        "@timestamp": timestamp(measurement.at),
        "message": (f"KPIs of {scope}: {values.get('assets')} asset(s), risk {values.get('risk_score')}, "
                    f"{values.get('open.critical')} critical and {values.get('open.high')} high open"),
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "metric", "module": "postern", "dataset": DATASET, "id": measurement.event_id,
                  "type": ["info"]},
        "observer": observer(connector),
        "postern": {"kpi": kpi},
    }


def kpi_cef(measurement: Measurement, connector: dict[str, str]) -> str:
    values = measurement.values
    header = "|".join(escape_header(part) for part in (
        "Postern", "Posture Connector", connector["version"], "kpi",
        f"KPIs of {measurement.scope_kind} {measurement.scope_value}", 1))
    extension = {"rt": int(measurement.at.timestamp() * 1000), "act": "kpi", "dvchost": connector["hostname"],
                 "externalId": measurement.event_id, "cs1": f"{measurement.scope_kind}:{measurement.scope_value}",
                 "cs1Label": "kpiScope", "cn1": values.get("assets"), "cn1Label": "assets",
                 "cn2": values.get("open.critical"), "cn2Label": "openCritical",
                 "cn3": values.get("open.high"), "cn3Label": "openHigh",
                 "cfp1": values.get("risk_score"), "cfp1Label": "riskScore",
                 "cfp2": values.get("compliance.pci_dss_4_0.score"), "cfp2Label": "pciDssScore"}
    return f"CEF:0|{header}|" + " ".join(f"{key}={escape_extension(value)}" for key, value in extension.items()
                                         if value is not None)


def kpi_spool_event(measurement: Measurement, connector: dict[str, str], formats: frozenset[str]) -> NewEvent:
    meta = {"time": measurement.at.timestamp(), "host": "", "asset": "", "category": "kpi",
            "rule": "kpi", "severity": "info", "status": "kpi", "check": "kpi", "action": "kpi"}
    return NewEvent(
        event_id=measurement.event_id,
        meta=orjson.dumps(meta).decode(),
        ecs=orjson.dumps(kpi_ecs(measurement, connector)) if "ecs" in formats else None,
        cef=kpi_cef(measurement, connector) if "cef" in formats else None,
    )
