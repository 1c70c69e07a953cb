"""``connector assets``: the inventory of configured and discovered assets, read from the state directory."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connector.cli import app
from connector.cli._common import console_err, fail, open_state
from connector.core.lifecycle import AssetRecord
from connector.runtime.config import load_config
from connector.runtime.state import StateStore

assets_app = typer.Typer(help="The asset inventory: classification, source, when each was seen and scanned.",
                         no_args_is_help=True)
app.add_typer(assets_app, name="assets")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration (its state_dir).")]
COLUMNS = ("id", "host", "source", "seen_from", "criticality", "data_sensitivity", "business_impact", "owner", "tags",
           "first_seen", "last_seen", "last_scanned", "removed_at", "open_findings")
DEPENDENCY_COLUMNS = ("name", "asset", "seen_from", "reported_at")


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@assets_app.command("list")
def assets_list(
    config: ConfigOption,
    output_format: Annotated[Format, typer.Option("--format", help="table, json (one object per line) or csv.")]
    = Format.TABLE,
    source: Annotated[str | None, typer.Option(help="Only assets from this source: config or discovered.")] = None,
    removed: Annotated[bool, typer.Option("--removed", help="Include assets removed from the configuration.")]
    = False,
) -> None:
    """One row per asset: classification, source, first and last seen, last scanned, open findings."""
    rows = [row for row in _rows(config, removed) if source is None or row["source"] == source]
    _write(rows, output_format)


@assets_app.command("show")
def assets_show(config: ConfigOption, asset_id: Annotated[str, typer.Argument(help="The asset's id.")]) -> None:
    """Everything the inventory knows of one asset, as JSON, with its open findings."""
    store = _open(config)
    try:
        record = store.assets.record(asset_id)
        if record is None:
            fail(f"no asset {asset_id!r} in the inventory (see `connector assets list`)")
        open_findings = store.findings.open_findings(asset_id)
    finally:
        store.close()
    shown = _row(record, len(open_findings)) | {
        "declaration": record.asset.model_dump(mode="json", exclude_none=True),
        "open": [{"rule": f.rule_id, "severity": f.severity.value, "subject": f.subject, "message": f.message,
                  "first_seen": f.first_seen.isoformat()} for f in open_findings]}
    typer.echo(json.dumps(shown, indent=2))


@assets_app.command("export")
def assets_export(
    config: ConfigOption,
    output_format: Annotated[Format, typer.Option("--format", help="json or csv.")] = Format.CSV,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default: stdout.")] = None,
) -> None:
    """Every asset, removed ones included, for a CMDB or a spreadsheet."""
    if output_format is Format.TABLE:
        fail("export writes json or csv")
    rows = _rows(config, True)
    if output is None:
        _write(rows, output_format)
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as handle:
            _write(rows, output_format, handle)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    console_err.print(f"wrote {len(rows)} asset(s) to {escape(str(output))}")


@assets_app.command("dependencies")
def assets_dependencies(
    config: ConfigOption,
    output_format: Annotated[Format, typer.Option("--format", help="table, json (one object per line) or csv.")]
    = Format.TABLE,
) -> None:
    """Third-party names the scans revealed outside the scope (never probed): where each was first seen, and when."""
    store = _open(config)
    try:
        rows = [{"name": name, "asset": asset_id, "seen_from": seen_from, "reported_at": reported_at}
                for name, asset_id, seen_from, reported_at in store.third_parties()]
    finally:
        store.close()
    _write(rows, output_format, columns=DEPENDENCY_COLUMNS, title="third-party dependenc(ies)")


def _open(config: Path) -> StateStore:
    return open_state(load_config(config), "inventory")


def _rows(config: Path, include_removed: bool) -> list[dict[str, Any]]:
    store = _open(config)
    try:
        counts = store.findings.open_counts()
        return [_row(record, counts.get(record.asset.id, 0))
                for record in store.assets.records(include_removed=include_removed)]
    finally:
        store.close()


def _row(record: AssetRecord, open_findings: int) -> dict[str, Any]:
    asset = record.asset
    return {"id": asset.id, "host": asset.host, "source": record.source, "seen_from": record.seen_from,
            "criticality": asset.criticality.value,
            "data_sensitivity": asset.data_sensitivity.value if asset.data_sensitivity else None,
            "business_impact": asset.business_impact.value if asset.business_impact else None,
            "owner": asset.owner, "tags": list(asset.tags), "first_seen": record.first_seen.isoformat(),
            "last_seen": record.last_seen.isoformat(),
            "last_scanned": record.last_scanned.isoformat() if record.last_scanned else None,
            "removed_at": record.removed_at.isoformat() if record.removed_at else None,
            "open_findings": open_findings}


def _write(rows: list[dict[str, Any]], output_format: Format, stream: TextIO | None = None, *,
           columns: tuple[str, ...] = COLUMNS, title: str = "asset(s)") -> None:
    out = stream or sys.stdout
    if output_format is Format.JSON:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif output_format is Format.CSV:
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "tags": ";".join(row["tags"])} if "tags" in row else row for row in rows)
    elif columns is COLUMNS:
        table = Table(title=f"{len(rows)} {title}", title_justify="left")
        for column in ("id", "source", "criticality", "owner", "last scanned", "open"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(escape(row["id"]), escape(row["source"] + (f" ({row['seen_from']})" if row["seen_from"]
                                                                     else "")),
                          row["criticality"], escape(row["owner"] or ""), row["last_scanned"] or "never",
                          str(row["open_findings"]))
        Console(file=out).print(table)
    else:
        table = Table(title=f"{len(rows)} {title}", title_justify="left")
        for column in columns:  # the name whole, however narrow the terminal: it is what one greps for
            table.add_column(column.replace("_", " "), overflow="fold", no_wrap=column == columns[0])
        for row in rows:
            table.add_row(*(escape(str(row[column] or "")) for column in columns))
        Console(file=out).print(table)
