"""``connector spool status|replay|purge`` and ``connector doctor``: see and repair what the sinks have not taken."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connector.cli import app
from connector.cli._common import console_err, fail, load_catalog_and_normaliser
from connector.core.errors import ConnectorError
from connector.delivery.pipeline import open_spool
from connector.delivery.sinks import build_sink
from connector.delivery.spool import Spool
from connector.runtime.config import Config, load_config

spool_app = typer.Typer(help="Inspect the on-disk spool and its dead letters; replay or purge them.",
                        no_args_is_help=True)
app.add_typer(spool_app, name="spool")
console = Console(width=160)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration.")]


def _open_spool(config: Config, sink: str | None = None) -> Spool:
    """The existing spool, read-only as to cursors: a running sidecar owns those."""
    spool = open_spool(config.spool, config.state_dir, None)
    if sink is not None and sink not in spool.sinks():
        spool.close()
        fail(f"--sink {sink}: the spool has no such sink (known: {', '.join(spool.sinks()) or 'none'})")
    return spool


@spool_app.command("status")
def spool_status(config: ConfigOption, dead_letters: Annotated[bool, typer.Option(help="List dead letters.")] = False,
                 ) -> None:
    """Pending events per sink, the oldest pending age, delivered and dead-lettered counts, disk use."""
    spool = _open_spool(load_config(config))
    status = spool.status()
    table = Table(title=f"spool {status.path} ({status.file_bytes / 1024 / 1024:.1f} MiB on disk, "
                        f"{status.events} events, {status.dropped} dropped by overflow, "
                        f"{status.dead_letters_discarded} dead letters discarded over the bound)",
                  title_justify="left")
    for column in ("sink", "pending", "oldest pending", "delivered", "dead letters"):
        table.add_column(column)
    for sink in status.sinks:
        age = f"{sink.oldest_pending_age:.0f}s" if sink.oldest_pending_age is not None else "-"
        table.add_row(sink.sink, str(sink.pending), age, str(sink.delivered), str(sink.dead_letters))
    console.print(table)
    if dead_letters:
        letters = Table(title="dead letters", title_justify="left")
        for column in ("id", "sink", "event id", "failed at", "reason"):
            letters.add_column(column, overflow="fold")
        for ident, sink_name, event_id, reason, failed_at in spool.dead_letters(limit=1000):
            when = datetime.fromtimestamp(failed_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            letters.add_row(str(ident), sink_name, event_id, when, escape(reason))
        console.print(letters)
    if status.orphaned_dead_letters:
        console_err.print(f"[yellow]{status.orphaned_dead_letters} dead letter(s) belong to sinks no longer "
                          "configured[/yellow]; inspect with --dead-letters, remove with `connector spool purge`")
    spool.close()


@spool_app.command("replay")
def spool_replay(
    config: ConfigOption,
    sink: Annotated[str | None, typer.Option(help="Only this sink's dead letters.")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these dead letters (repeatable).")] = None,
) -> None:
    """Queue dead letters again for the sink that rejected them (after fixing the cause)."""
    spool = _open_spool(load_config(config), sink)
    count, orphaned = spool.replay(sink, ids or [])
    spool.close()
    typer.echo(f"{count} dead letter(s) queued again; a running connector sends them now, otherwise the next run")
    if orphaned:
        console_err.print(f"[yellow]{orphaned} dead letter(s) not replayed: their sink is no longer configured"
                          "[/yellow]")
        raise typer.Exit(1)


@spool_app.command("purge")
def spool_purge(
    config: ConfigOption,
    sink: Annotated[str | None, typer.Option(help="Only this sink.")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these dead letters (repeatable).")] = None,
    backlog: Annotated[bool, typer.Option(help="Also skip every event the sink has not delivered yet.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters (or, with --backlog, a sink's undelivered events): they will never be delivered."""
    if backlog and sink is None:
        fail("--backlog needs --sink: the backlog to skip is one sink's")
    spool = _open_spool(load_config(config), sink)
    what = f"the undelivered backlog of sink {sink}" if backlog else "dead letters"
    if not yes and not typer.confirm(f"Delete {what}? They will never reach the SIEM.", err=True):
        spool.close()
        raise typer.Exit(1)
    count = spool.purge(sink, ids or [], backlog=backlog)
    spool.close()
    typer.echo(f"purged {count} event(s)")


@app.command("doctor")
def doctor(config: ConfigOption) -> None:
    """Check the configuration, every sink's reachability and health, and the spool."""
    loaded = load_config(config)
    load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    typer.echo(f"configuration {config}: valid ({len(loaded.assets)} assets, {len(loaded.sink_settings)} sinks)")
    healthy = True
    for settings in loaded.sink_settings:
        started = time.monotonic()
        sink = build_sink(settings)
        try:
            report = sink.health()
        except ConnectorError as exc:
            healthy = False
            console_err.print(f"[red]sink {escape(settings.name)}: {escape(str(exc))}[/red]")
        else:
            typer.echo(f"sink {settings.name}: {report} ({(time.monotonic() - started) * 1000:.0f} ms)")
        finally:
            sink.close()
    try:
        spool = open_spool(loaded.spool, loaded.state_dir, None)
    except ConnectorError as exc:
        typer.echo(f"spool: {exc}")
    else:
        for status in spool.status().sinks:
            if status.pending or status.dead_letters:
                typer.echo(f"spool: {status.sink} has {status.pending} pending and {status.dead_letters} "
                           "dead letter(s)")
        spool.close()
    raise typer.Exit(0 if healthy else 1)
