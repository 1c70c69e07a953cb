"""The posture report as people and tools read it: one self-contained HTML page (inline CSS and SVG charts, no
script, no request of any kind), the whole model as JSON, or one CSV row per KPI per day.

A package of the delivery layer's rank (ARCHITECTURE.md): it reads the report model of ``inventory/report.py``
and draws it; it imports neither the runtime nor the state store, and the runtime hands it the model.
"""

from __future__ import annotations

import csv
import io
import json

from connector.inventory.report import PostureReport

FORMATS = ("html", "json", "csv")
CSV_COLUMNS = ("day", "at", "kpi", "value")


def render(report: PostureReport, output_format: str) -> bytes:
    """``html``, ``json`` (the whole model) or ``csv`` (one row per KPI per day of the window)."""
    if output_format == "html":
        from connector.report.html import html  # noqa: PLC0415 - matplotlib and Jinja2 only for the page

        return html(report).encode()
    if output_format == "json":
        return (json.dumps(report.as_dict(), indent=2, sort_keys=False) + "\n").encode()
    if output_format == "csv":
        return rows_csv(report).encode()
    raise ValueError(f"unknown report format {output_format!r}: one of {', '.join(FORMATS)}")


def rows_csv(report: PostureReport) -> str:
    """day, at, kpi, value: every KPI of each day (the metric event's field names, e.g. ``open.critical``,
    ``risk_score``, ``compliance.pci_dss_4_0.score``), plus ``opened`` and ``resolved`` that day; an empty value
    is a KPI that was not evaluated that day."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for point in report.days:
        for name, value in (*point.values.items(), ("opened", point.opened), ("resolved", point.resolved)):
            writer.writerow((point.day, point.at.isoformat(), name, "" if value is None else value))
    return out.getvalue()
