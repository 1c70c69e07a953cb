"""``connector report``: the posture report for auditors and managers, as a self-contained HTML page, JSON (the
whole report model) or CSV (one row per KPI per day)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from connector.cli import app
from connector.cli._common import console_err, fail, load_catalog_and_normaliser, open_state
from connector.cli.kpi import ConfigOption
from connector.core.clock import utc_now
from connector.core.units import parse_duration
from connector.inventory.kpi import SCOPE_KINDS, Scope
from connector.runtime.config import load_config
from connector.runtime.report import posture_report, render_report

MAX_WINDOW = timedelta(days=366)


class ReportFormat(StrEnum):
    HTML = "html"
    JSON = "json"
    CSV = "csv"


@app.command("report")
def report_command(
    config: ConfigOption,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here; default: stdout.")]
    = None,
    since: Annotated[str, typer.Option(help="The window the trends cover, ending now: 7d, 30d, 12w.")] = "30d",
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help="KIND:VALUE (owner:web, criticality:high, tag:pay) or overall; repeatable: the assets "
                        "of any of them (default: overall).")] = None,
    until: Annotated[str | None, typer.Option(
        help="The window's end, a UTC date or ISO 8601 time (the report as it stood then); default: now.")] = None,
    output_format: Annotated[ReportFormat, typer.Option("--format", help="html, json (the whole report model) or "
                                                                         "csv (one row per KPI per day).")]
    = ReportFormat.HTML,
) -> None:
    """The posture report (HTML, JSON, CSV): KPI trends, compliance, certificates, risk."""
    window = _window(since)
    end = _until(until)
    scopes = [_scope(text) for text in scope or ["overall"]]
    loaded = load_config(config)
    catalog, _ = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    store = open_state(loaded, "history")
    try:
        report = posture_report(loaded, store, catalog, end, window=window, scopes=scopes)
    finally:
        store.close()
    if not any(day.values.get("assets") for day in report.days):
        fail(f"no asset of {', '.join(report.scopes)} in the history of {loaded.state_dir} over the last "
             f"{since}: nothing to report", 1)
    body = render_report(report, output_format.value)
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    try:
        output.write_bytes(body)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    console_err.print(f"{output_format.value} report of {', '.join(report.scopes)} over {report.window_days} days "
                      f"written to {output} ({len(body) / 1024:.0f} KiB)")


def _window(since: str) -> timedelta:
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    if not timedelta(days=1) <= window <= MAX_WINDOW:
        raise typer.BadParameter(f"{since!r} is outside 1d to 366d", param_hint="--since")
    return window


def _until(text: str | None) -> datetime:
    if text is None:
        return utc_now()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date or an ISO 8601 time", param_hint="--until") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _scope(text: str) -> Scope:
    if text == "overall":
        return Scope("overall", "all")
    kind, _, value = text.partition(":")
    if kind not in SCOPE_KINDS or kind == "overall" or not value:
        raise typer.BadParameter(f"{text!r} is not KIND:VALUE with KIND one of owner, criticality, tag (or "
                                 "overall)", param_hint="--scope")
    return Scope(kind, value)
