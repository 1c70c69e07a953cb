"""Shared CLI plumbing: consoles, the one-line error exit, and loading catalog and mappings."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from connector.catalog import Catalog, load_catalog
from connector.normalise import Normaliser, Runtime

console_err = Console(stderr=True, highlight=False)
if not console_err.is_terminal:
    console_err.width = 160  # CI logs: do not fold the summary table to 80 columns


def fail(message: str, code: int = 2) -> NoReturn:
    console_err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def load_catalog_and_normaliser(mappings: Path | None, observer_name: str | None = None) -> tuple[Catalog, Normaliser]:
    catalog = load_catalog(mappings / "rules" if mappings else None)
    normaliser = Normaliser.load(catalog, mappings, Runtime(name=observer_name))
    return catalog, normaliser
