"""Shared CLI plumbing: consoles, the one-line error exit, and loading catalog and mappings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, TextIO, cast

import typer
from rich.console import Console
from rich.markup import escape

from connector.catalog import Catalog, load_catalog
from connector.logsetup import redact
from connector.normalise import Normaliser, Runtime


class _RedactingStream:
    """stderr as the CLI writes to it, with registered secrets replaced: error messages quote URLs and replies."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()


console_err = Console(file=cast(TextIO, _RedactingStream(sys.stderr)), highlight=False)
if not console_err.is_terminal:
    console_err.width = 160  # CI logs: do not fold the summary table to 80 columns


def fail(message: str, code: int = 2) -> NoReturn:
    console_err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def load_catalog_and_normaliser(mappings: Path | None, observer_name: str | None = None) -> tuple[Catalog, Normaliser]:
    catalog = load_catalog(mappings / "rules" if mappings else None)
    normaliser = Normaliser.load(catalog, mappings, Runtime(name=observer_name))
    return catalog, normaliser
