"""Shared CLI plumbing: consoles, the one-line error exit, loading catalog and mappings, delivery reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, TextIO, cast

import typer
from rich.console import Console
from rich.markup import escape

from connector.core.catalog import Catalog, load_catalog
from connector.core.logsetup import redact
from connector.delivery.pipeline import Pipeline
from connector.normalise import Normaliser, Runtime
from connector.runtime.config import Config
from connector.runtime.state import StateStore


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


def report_delivery(pipeline: Pipeline, timeout: float, quiet: bool) -> bool:
    """Wait for the sinks, then say what did not arrive; True when every event reached every sink."""
    pending = pipeline.drain(timeout)
    rejected = pipeline.rejected_since_start()
    if any(pending.values()):
        waiting = ", ".join(f"{name}: {count}" for name, count in pending.items() if count)
        console_err.print(f"[yellow]not yet delivered after {timeout:g}s[/yellow] ({escape(waiting)}); the events "
                          f"stay in {pipeline.spool.path} and are sent by the next run (`connector spool status`)")
    if any(rejected.values()):
        refused = ", ".join(f"{name}: {count}" for name, count in rejected.items() if count)
        console_err.print(f"[red]rejected by the receiver[/red] ({escape(refused)}); kept as dead letters: "
                          "`connector spool status --dead-letters`, then `connector spool replay`")
    complete = not any(pending.values()) and not any(rejected.values())
    if complete and not quiet:
        console_err.print(f"delivered to {', '.join(sink.name for sink in pipeline.sinks)}")
    return complete


def load_catalog_and_normaliser(mappings: Path | None, observer_name: str | None = None) -> tuple[Catalog, Normaliser]:
    catalog = load_catalog(mappings / "rules" if mappings else None)
    normaliser = Normaliser.load(catalog, mappings, Runtime(name=observer_name))
    return catalog, normaliser


def open_state(config: Config, what: str) -> StateStore:
    """The state store for reading beside a running collector; ``what`` names what is missing when it is absent."""
    path = config.state_dir / "state.sqlite"
    if not path.exists():
        fail(f"no {what} yet in {config.state_dir}: `connector run` or `connector scan -c` records it")
    return StateStore(path, exclusive=False)
