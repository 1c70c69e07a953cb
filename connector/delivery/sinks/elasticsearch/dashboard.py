"""The Kibana posture dashboard, as saved objects (a data view, Lens panels, the dashboard) for
``POST /api/saved_objects/_import``: the same panels as TA-postern's dashboard, over the sink's data stream.

Built in code rather than kept as an exported NDJSON file, so that every panel names a field the connector emits
(tests check it against ``assets.field_types``) and the data view follows the sink's dataset and namespace.
Object ids are fixed, so an import with ``overwrite=true`` updates the dashboard instead of adding a copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DASHBOARD_ID = "postern-posture"
DATA_VIEW_ID = "postern-events"
_KPI = 'event.dataset : "postern.kpi" and postern.kpi.scope.kind : "overall"'
_FRAMEWORKS = ("pci_dss_4_0", "soc2", "iso27001_2022", "hipaa", "gdpr", "cis_v8")


@dataclass(frozen=True)
class Column:
    label: str
    operation: str  # last_value, count, date_histogram, terms
    field: str | None = None


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    kind: str  # lnsMetric, lnsXY (bar_stacked, area_stacked, bar_horizontal), lnsDatatable
    query: str
    metrics: tuple[Column, ...]
    buckets: tuple[Column, ...] = ()
    series: str = "bar_stacked"
    width: int = 12
    height: int = 8


PANELS = (
    Panel("postern-kpi-risk", "Risk score", "lnsMetric", _KPI,
          (Column("Risk score", "last_value", "postern.kpi.risk_score"),), width=8),
    Panel("postern-kpi-https", "HTTPS routes served correctly (%)", "lnsMetric", _KPI,
          (Column("HTTPS routes (%)", "last_value", "postern.kpi.https_routes_pct"),), width=8),
    Panel("postern-kpi-headers", "Pages meeting the header baseline (%)", "lnsMetric", _KPI,
          (Column("Header baseline (%)", "last_value", "postern.kpi.header_baseline_pct"),), width=8),
    Panel("postern-kpi-certificates", "Valid certificates (%)", "lnsMetric", _KPI,
          (Column("Valid certificates (%)", "last_value", "postern.kpi.valid_certificates_pct"),), width=8),
    Panel("postern-kpi-expiry", "Days to the next certificate expiry", "lnsMetric", _KPI,
          (Column("Days to expiry", "last_value", "postern.kpi.next_expiry_days"),), width=8),
    Panel("postern-kpi-mttd", "MTTD, median (s)", "lnsMetric", _KPI,
          (Column("MTTD median (s)", "last_value", "postern.kpi.mttd.median_seconds"),), width=8),
    Panel("postern-kpi-compliance", "Compliance score per framework", "lnsXY", _KPI,
          tuple(Column(framework, "last_value", f"postern.kpi.compliance.{framework}.score")
                for framework in _FRAMEWORKS), series="bar_horizontal", width=24, height=12),
    Panel("postern-kpi-open", "Open findings by severity", "lnsXY", _KPI,
          tuple(Column(severity, "last_value", f"postern.kpi.open.{severity}")
                for severity in ("critical", "high", "medium", "low")),
          (Column("Day", "date_histogram", "@timestamp"),), series="area_stacked", width=24, height=12),
    Panel("postern-drift", "Drift over time", "lnsXY", 'event.dataset : "postern.drift"',
          (Column("Changes", "count"),),
          (Column("Hour", "date_histogram", "@timestamp"), Column("Kind", "terms", "postern.drift.kind")),
          width=24, height=12),
    Panel("postern-certificate-expiry", "Certificate expiry (days left)", "lnsDatatable",
          'event.kind : "state" and rule.id : "cert.expired"',
          (Column("Days left", "last_value", "postern.certificate.days_left"),),
          (Column("Host", "terms", "host.name"),), width=24, height=12),
)


def saved_objects(data_stream_pattern: str) -> list[dict[str, Any]]:
    """The data view over ``data_stream_pattern`` (e.g. logs-postern.findings-*), the panels and the dashboard."""
    data_view = {"type": "index-pattern", "id": DATA_VIEW_ID, "attributes": {
        "title": data_stream_pattern, "name": "Postern events", "timeFieldName": "@timestamp"}, "references": []}
    return [data_view, *(_lens(panel) for panel in PANELS), _dashboard()]


def fields_used() -> set[str]:
    return {column.field for panel in PANELS for column in (*panel.metrics, *panel.buckets) if column.field}


def _lens(panel: Panel) -> dict[str, Any]:
    columns = {f"m{index}": _column(column) for index, column in enumerate(panel.metrics)}
    columns |= {f"b{index}": _column(column) for index, column in enumerate(panel.buckets)}
    order = [f"b{index}" for index in range(len(panel.buckets))] + [f"m{index}" for index in range(len(panel.metrics))]
    return {
        "type": "lens", "id": panel.id,
        "attributes": {
            "title": panel.title, "visualizationType": panel.kind,
            "state": {
                "datasourceStates": {"formBased": {"layers": {"layer1": {
                    "columns": columns, "columnOrder": order, "incompleteColumns": {}}}}},
                "visualization": _visualization(panel),
                "query": {"query": panel.query, "language": "kuery"},
                "filters": [],
            },
        },
        "references": [{"type": "index-pattern", "id": DATA_VIEW_ID, "name": "indexpattern-datasource-layer-layer1"}],
    }


def _column(column: Column) -> dict[str, Any]:
    if column.operation == "count":
        return {"label": column.label, "dataType": "number", "operationType": "count", "sourceField": "___records___",
                "isBucketed": False}
    if column.operation == "date_histogram":
        return {"label": column.label, "dataType": "date", "operationType": "date_histogram",
                "sourceField": column.field, "isBucketed": True, "params": {"interval": "auto"}}
    if column.operation == "terms":
        return {"label": column.label, "dataType": "string", "operationType": "terms", "sourceField": column.field,
                "isBucketed": True, "params": {"size": 20, "orderBy": {"type": "alphabetical"},
                                               "orderDirection": "asc"}}
    return {"label": column.label, "dataType": "number", "operationType": "last_value", "sourceField": column.field,
            "isBucketed": False, "params": {"sortField": "@timestamp"}}


def _visualization(panel: Panel) -> dict[str, Any]:
    metrics = [f"m{index}" for index in range(len(panel.metrics))]
    if panel.kind == "lnsMetric":
        return {"layerId": "layer1", "layerType": "data", "metricAccessor": metrics[0]}
    if panel.kind == "lnsDatatable":
        return {"layerId": "layer1", "layerType": "data",
                "columns": [{"columnId": f"b{index}"} for index in range(len(panel.buckets))]
                + [{"columnId": metric} for metric in metrics]}
    layer: dict[str, Any] = {"layerId": "layer1", "layerType": "data", "seriesType": panel.series,
                             "accessors": metrics}
    if panel.buckets:
        layer["xAccessor"] = "b0"
        if len(panel.buckets) > 1:
            layer["splitAccessor"] = "b1"
    return {"preferredSeriesType": panel.series, "legend": {"isVisible": True, "position": "right"},
            "layers": [layer]}


def _dashboard() -> dict[str, Any]:
    panels, x, y, row_height = [], 0, 0, 0
    for index, panel in enumerate(PANELS):
        if x + panel.width > 48:
            x, y, row_height = 0, y + row_height, 0
        panels.append({"type": "lens", "panelIndex": f"p{index}", "panelRefName": f"panel_p{index}",
                       "gridData": {"x": x, "y": y, "w": panel.width, "h": panel.height, "i": f"p{index}"},
                       "embeddableConfig": {"enhancements": {}}})
        x, row_height = x + panel.width, max(row_height, panel.height)
    return {
        "type": "dashboard", "id": DASHBOARD_ID,
        "attributes": {
            "title": "Postern posture",
            "description": "KPIs, compliance per framework, open findings by severity, drift and certificate expiry",
            "panelsJSON": json.dumps(panels), "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
            "timeRestore": True, "timeFrom": "now-30d", "timeTo": "now",
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                      "filter": []})},
        },
        "references": [{"type": "lens", "id": panel.id, "name": f"panel_p{index}"}
                       for index, panel in enumerate(PANELS)],
    }
