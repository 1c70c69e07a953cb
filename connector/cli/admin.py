"""``connector rules`` and ``connector validate``: inspect the catalog, check a configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connector.cli import app
from connector.cli._common import console_err, fail, load_catalog_and_normaliser
from connector.core.catalog import load_catalog
from connector.core.errors import ConnectorError
from connector.runtime.config import load_config


@app.command("rules")
def rules_command(
    output_format: Annotated[str, typer.Option("--format", help="table, json or yaml.")] = "table",
    category: Annotated[str | None, typer.Option(help="Only rules of this category.")] = None,
    mappings: Annotated[Path | None, typer.Option(help="Directory with rules/ to list instead of the shipped one.")]
    = None,
) -> None:
    """List the rule catalog: id, severity, category, title and compliance controls."""
    catalog = load_catalog(mappings / "rules" if mappings else None)
    rules = [rule for rule in catalog if category is None or rule.category == category]
    if output_format == "json":
        typer.echo(json.dumps([rule.model_dump(mode="json") for rule in rules], indent=2))
    elif output_format == "yaml":
        typer.echo(yaml.safe_dump({"rules": [rule.model_dump(mode="json") for rule in rules]}, sort_keys=False))
    elif output_format == "table":
        table = Table(title=f"{catalog.name} {catalog.version}: {len(rules)} rules", title_justify="left")
        for column in ("id", "severity", "category", "title", "controls"):
            table.add_column(column, overflow="fold")
        for rule in rules:
            controls = ", ".join(rule.compliance.flattened())
            table.add_row(rule.id, rule.severity.value, rule.category, escape(rule.title), escape(controls))
        Console(width=max(120, Console().width)).print(table)
    else:
        fail(f"--format must be table, json or yaml, not {output_format!r}")


@app.command("validate")
def validate_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration to check.")],
) -> None:
    """Check a configuration (and the rule catalog and mappings it uses) without scanning anything."""
    try:
        loaded = load_config(config)
        catalog, _ = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
        loaded.overrides(catalog)
        checks = loaded.configured_checks()
    except ConnectorError as exc:
        console_err.print(f"[red]invalid:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    typer.echo(
        f"{config}: valid: {len(loaded.assets)} asset(s), {len(checks)} check(s) "
        f"({', '.join(c.check.name for c in checks)}), {len(loaded.sinks)} sink(s), {len(catalog)} rules"
    )
