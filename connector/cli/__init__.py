"""The ``connector`` command: scan, run (sidecar), validate, rules, and the admin commands of later stages.

Every command turns ConnectorError into one red line on stderr and exit code 2 (an unexpected error into one
line and exit code 70); no traceback reaches the user.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from connector import __version__

if TYPE_CHECKING:
    from rich.console import Console

# Where each command lives and its one-line help, so that `connector --help` and `--version` import no command
# module (and none of the network, SIEM and crypto libraries they pull in). tests/cli keep the lines equal to
# the commands' own help.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "rules": ("admin", "List the rule catalog: id, severity, category, title and compliance controls."),
    "validate": ("admin", "Check a configuration (and the rule catalog and mappings it uses) without scanning "
                          "anything."),
    "doctor": ("delivery", "Check the configuration, every sink's reachability and health, and the spool."),
    "run": ("run", "Run as a long-lived collector: scan on schedule, answer callbacks, until SIGTERM."),
    "scan": ("scan", "Scan targets once with every check and write ECS or CEF events."),
    "spool": ("delivery", "Inspect the on-disk spool and its dead letters; replay or purge them."),
    "splunk": ("siem", "Create or check the Splunk index and HEC input; verify events arrived."),
    "elastic": ("siem", "Install Elasticsearch templates, ILM and pipeline; Kibana connector, rules, dashboard."),
    "respond": ("respond", "The SOAR callback receiver, its playbooks and its action queue."),
    "playbooks": ("respond", "Check, list and dry-run playbooks."),
    "assets": ("assets", "The asset inventory: classification, source, when each was seen and scanned."),
    "kpi": ("kpi", "KPIs per scope: posture, MTTD, compliance, risk, remediation."),
    "digest": ("kpi", "Owners' digests of a day or week: opened, resolved, past SLA."),
    "findings": ("kpi", "Analysts' verdicts: false positives, accepted risks."),
    "report": ("report", "The posture report (HTML, JSON, CSV): KPI trends, compliance, certificates, risk."),
}


class _LazyGroup(TyperGroup):
    """Lists commands from LAZY_COMMANDS and imports a command's module only when that command is invoked."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name, (_module, short_help) in LAZY_COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name, help=short_help))

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:  # typer's vendored click types are private
        if args and args[0] in LAZY_COMMANDS:
            self.commands[args[0]] = load_command(args[0])
        return super().resolve_command(ctx, args)


def load_command(name: str) -> Any:
    """The real command: importing its module registers it on ``app``, then typer builds it."""
    importlib.import_module(f"connector.cli.{LAZY_COMMANDS[name][0]}")
    group = typer.main.get_command(app)
    if not isinstance(group, TyperGroup):
        raise TypeError(f"typer built {type(group).__name__} for the connector app, not a group")
    return group.commands[name]


app = typer.Typer(
    name="connector",
    help="Security-posture connector: scan a web estate, ship ECS/CEF findings to your SIEM.",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"max_content_width": 120},  # click's default of 80 cuts the command list's help short
    rich_markup_mode=None,  # plain click help: rendering it with rich costs 0.3 s of imports per --help
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
    from connector.core.logsetup import configure  # noqa: PLC0415  (lazy: see LAZY_COMMANDS)

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        from connector.cli._common import fail  # noqa: PLC0415

        fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    configure(log_level, log_json)


def main() -> None:
    from connector.core.limits import raise_open_files_limit  # noqa: PLC0415  (lazy: see LAZY_COMMANDS)

    raise_open_files_limit()  # probes budget their sockets below this limit: the higher, the more run at once
    try:
        app()
    except KeyboardInterrupt:
        _console_err().print("interrupted")
        sys.exit(130)
    except Exception as exc:
        from rich.markup import escape  # noqa: PLC0415  (lazy: see LAZY_COMMANDS)

        from connector.core.errors import ConnectorError  # noqa: PLC0415

        if isinstance(exc, ConnectorError):
            _console_err().print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
            sys.exit(2)
        # a bug: one line for the user, the traceback only in debug logs
        logging.getLogger("connector").debug("unexpected error", exc_info=True)
        _console_err().print(f"[red]internal error:[/red] {escape(repr(exc))} (run with --log-level debug for "
                             "the traceback; please report it)", highlight=False)
        sys.exit(70)


def _console_err() -> Console:
    from connector.cli._common import console_err  # noqa: PLC0415  (lazy: see LAZY_COMMANDS)

    return console_err
