"""The ``connector`` command: scan, run (sidecar), validate, rules, and the admin commands of later stages.

Every command turns ConnectorError into one red line on stderr and exit code 2 (an unexpected error into one
line and exit code 70); no traceback reaches the user.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.markup import escape

from connector import __version__
from connector.cli._common import console_err, fail
from connector.core.errors import ConnectorError
from connector.core.limits import raise_open_files_limit
from connector.core.logsetup import configure

app = typer.Typer(
    name="connector",
    help="Security-posture connector: scan a web estate, ship ECS/CEF findings to your SIEM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"connector {__version__}")
        raise typer.Exit


@app.callback()
def _global(
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
    log_json: Annotated[bool, typer.Option(help="Log JSON lines (for collecting the connector's own logs).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")]
    = False,
) -> None:
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    configure(log_level, log_json)


def _register() -> None:
    from connector.cli import admin, delivery, respond, run, scan, siem  # noqa: F401, PLC0415  (importing registers them)


def main() -> None:
    _register()
    raise_open_files_limit()  # probes budget their sockets below this limit: the higher, the more run at once
    try:
        app()
    except ConnectorError as exc:
        console_err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console_err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line for the user, the traceback only in debug logs
        logging.getLogger("connector").debug("unexpected error", exc_info=True)
        console_err.print(f"[red]internal error:[/red] {escape(repr(exc))} (run with --log-level debug for "
                          "the traceback; please report it)", highlight=False)
        sys.exit(70)
