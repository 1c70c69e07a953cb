"""``connector scan``: run every check once against targets, write events, summarise, set the exit code."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.cli import app
from connector.cli._common import console_err, fail, load_catalog_and_normaliser, report_delivery
from connector.core.catalog import Catalog
from connector.core.clock import utc_now
from connector.core.errors import format_validation_error
from connector.core.events import encode_line
from connector.core.lifecycle import Change, Drift, StateChange, Transition
from connector.core.model import Asset, Criticality, Finding, Severity, Status, without_password
from connector.delivery.pipeline import Pipeline
from connector.inventory.discovery import Discovery
from connector.normalise import Normaliser
from connector.normalise.sarif import junit_report, sarif_log
from connector.runtime.collector import build_pipeline, collect, planned_assets, register_inventory
from connector.runtime.config import Config, load_config
from connector.runtime.kpis import measurements
from connector.runtime.state import StateStore
from connector.scan.context import ScanContext, ScanSettings
from connector.scan.engine import ScanPlan, build_checks

_SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def _assets_from_targets(
    targets: list[str], resolve: list[str], http_port: int | None, no_http: bool, criticality: Criticality
) -> list[Asset]:
    pins: dict[str, str] = {}
    for entry in resolve:
        host, sep, address = entry.partition("=")
        if not sep or not host or not address:
            fail(f"--resolve takes HOST=ADDRESS, got {entry!r}")
        pins[host.lower().rstrip(".")] = address
    assets = []
    for target in targets:
        overrides: dict[str, object] = {"criticality": criticality}
        if no_http:
            overrides["http_port"] = None
        elif http_port is not None:
            overrides["http_port"] = http_port
        try:
            asset = Asset.from_target(target, **overrides)
            if asset.host in pins:
                asset = Asset.model_validate({**asset.model_dump(), "address": pins[asset.host]})
        except ValidationError as exc:
            fail(f"target {without_password(target)!r}: {format_validation_error(exc)}")
        except ValueError as exc:
            fail(str(exc))
        assets.append(asset)
    return _distinct_names(assets)


def _distinct_names(assets: list[Asset]) -> list[Asset]:
    """Targets on one host but different ports become distinct assets named host:port."""
    hosts = Counter(asset.host for asset in assets)
    named = []
    for asset in assets:
        if hosts[asset.host] > 1 and asset.name is None:
            named.append(asset.model_copy(update={"name": f"{asset.host}:{asset.https_port}"}))
        else:
            named.append(asset)
    ids = Counter(asset.id for asset in named)
    duplicates = sorted(asset_id for asset_id, count in ids.items() if count > 1)
    if duplicates:
        fail(f"targets repeat the same asset: {', '.join(duplicates)}")
    return named


EVENT_FORMATS = ("ecs", "cef")
DOCUMENT_FORMATS = ("sarif", "junit")  # one document written at the end, not events


@app.command("scan")
def scan_command(
    targets: Annotated[list[str] | None, typer.Argument(help="host, host:port or URL; several allowed.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take assets and settings from a config.")]
    = None,
    checks: Annotated[str | None, typer.Option(help="Comma-separated checks to run (default: all).")] = None,
    output_format: Annotated[str, typer.Option(
        "--format", help="ecs (JSON lines), cef, sarif (SARIF 2.1.0, for code scanning) or junit (JUnit XML).")]
    = "ecs",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write events to this file ('-' for stdout). Default: stdout unless it is a terminal.")]
    = None,
    fail_on: Annotated[str | None, typer.Option(
        help="Exit 1 if a failing finding is at least this severe. Advisories (failing at info severity: CAA "
             "absent, DMARC without rua...) count only with --fail-on info.")]
    = None,
    fail_on_error: Annotated[bool, typer.Option(help="Also exit 1 when a check could not run.")] = False,
    only_failed: Annotated[bool, typer.Option(help="Write events only for failing and errored rules.")] = False,
    resolve: Annotated[list[str] | None, typer.Option(help="HOST=ADDRESS: connect there, keep HOST for SNI.")]
    = None,
    http_port: Annotated[int | None, typer.Option(help="Plain-HTTP port checked for redirects (default 80).")]
    = None,
    http: Annotated[bool, typer.Option("--http/--no-http", help="Check plain HTTP (the redirect to HTTPS).")]
    = True,
    ca_bundle: Annotated[Path | None, typer.Option(help="PEM roots to trust instead of the system store.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per connection (default 5).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Targets probed at once (default 32).")] = None,
    dns_server: Annotated[list[str] | None, typer.Option(
        help="Resolver for the DNS and e-mail checks: ADDRESS or ADDRESS:PORT (repeatable; default: the system's).")]
    = None,
    criticality: Annotated[Criticality, typer.Option(help="Criticality given to command-line targets.")]
    = Criticality.MEDIUM,
    state: Annotated[Path | None, typer.Option(
        help="SQLite file remembering findings across runs: first-seen times, and opened/resolved events.")]
    = None,
    mappings: Annotated[Path | None, typer.Option(help="Directory with rules/, ecs.yaml, cef.yaml.")] = None,
    ship_timeout: Annotated[float, typer.Option(help="With sinks in the config: seconds to wait for delivery.")]
    = 120.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")] = False,
) -> None:
    """Scan targets once with every check and write ECS or CEF events."""
    if output_format not in (*EVENT_FORMATS, *DOCUMENT_FORMATS):
        fail(f"--format must be ecs, cef, sarif or junit, not {output_format!r}")
    threshold = _severity(fail_on) if fail_on else None
    loaded: Config | None = load_config(config) if config else None
    assets = _assets_from_targets(targets or [], resolve or [], http_port, not http, criticality)
    if not assets and loaded is not None:
        assets = list(loaded.assets)
    if not assets:
        fail("nothing to scan: give targets or a config with assets")
    base = loaded.scan if loaded else ScanSettings()
    settings = _settings(base, {"ca_bundle": ca_bundle, "connect_timeout": timeout, "concurrency": concurrency,
                                "dns": _resolvers(base, dns_server or [])})
    only = [name.strip() for name in checks.split(",") if name.strip()] if checks else None
    catalog, normaliser = load_catalog_and_normaliser(
        mappings or (loaded.mappings_dir if loaded else None), loaded.observer_name if loaded else None
    )
    plan = ScanPlan(assets, build_checks(loaded.checks if loaded else {}, only),
                    loaded.overrides(catalog) if loaded else {})
    if state is None and loaded is not None:
        state = loaded.state_dir / "state.sqlite"
    document = output_format in DOCUMENT_FORMATS
    writer = _EventWriter(normaliser, "ecs" if document else output_format, only_failed)
    with ExitStack() as stack:
        store = StateStore(state) if state else None  # before the spool: a second process stops here
        if store is not None:
            stack.callback(store.close)
        pipeline = build_pipeline(loaded, catalog, normaliser) if loaded is not None and loaded.sinks else None
        stream = _document_stream(output, stack) if document else _event_stream(output, loaded, stack)
        writer.stream = None if document else stream
        if pipeline is not None:
            pipeline.start()
        try:
            discovery = None
            if store is not None and loaded is not None and not targets:  # the configuration's assets: register
                discovery = loaded.discovery(store, catalog)
                register_inventory(store, loaded, discovery, lambda entered: _publish_changes(entered, pipeline,
                                                                                                writer))
                plan.assets = assets = planned_assets(loaded, store)  # discovered ones too, with auto_scan
            findings, changes = asyncio.run(_scan(plan, catalog, settings, store, pipeline, writer, quiet, loaded,
                                                  discovery))
            if store is not None and loaded is not None and not targets:  # the estate's KPIs, as of now
                _publish_changes(measurements(loaded, store, catalog, utc_now()), pipeline, writer)
            if document and stream is not None:
                stream.write(_document(output_format, findings, catalog))
                stream.flush()
            delivered = report_delivery(pipeline, ship_timeout, quiet) if pipeline is not None else True
        finally:
            if pipeline is not None:
                pipeline.stop()
    if not quiet:
        _summary(findings, assets, catalog, changes if store is not None else None)
    code = _exit_code(findings, threshold, fail_on_error)
    raise typer.Exit(code or (0 if delivered else 3))


def _publish_changes(changes: Sequence[StateChange], pipeline: Pipeline | None, writer: _EventWriter) -> None:
    if pipeline is not None:
        pipeline.publish([], changes)
    writer.write([], list(changes))


def _document(output_format: str, findings: list[Finding], catalog: Catalog) -> bytes:
    if output_format == "sarif":
        return json.dumps(sarif_log(findings, catalog), indent=2).encode() + b"\n"
    return junit_report(findings)


def _document_stream(output: Path | None, stack: ExitStack) -> BinaryIO:
    """The --output file, else stdout; a report document goes there even at a terminal: it is what was asked
    for."""
    if output is None or str(output) == "-":
        return sys.stdout.buffer
    try:
        return stack.enter_context(output.open("wb"))
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


def _event_stream(output: Path | None, loaded: Config | None, stack: ExitStack) -> BinaryIO | None:
    """Where events go: the --output file, or stdout when it is not a terminal (or a stdout sink writes there)."""
    stdout_sink = loaded is not None and any(entry.type == "stdout" for entry in loaded.sink_settings)
    if output is None and (sys.stdout.isatty() or stdout_sink):
        # a person at a terminal wants the summary, not JSON; pipes and files get events, unless a configured
        # stdout sink already writes them there
        return None
    return _document_stream(output, stack)


class _EventWriter:
    """Writes findings as event lines through the same encoder as the file and stdout sinks."""

    def __init__(self, normaliser: Normaliser, output_format: str, only_failed: bool) -> None:
        self.normaliser = normaliser
        self.output_format = output_format
        self.formats = frozenset({output_format})
        self.only_failed = only_failed
        self.stream: BinaryIO | None = None

    def write(self, findings: list[Finding], changes: list[StateChange]) -> None:
        """The state events, then what changed (always written: each one is news)."""
        if self.stream is None:
            return
        for finding in findings:
            if self.only_failed and finding.status in (Status.PASS, Status.NOT_APPLICABLE):
                continue
            self.stream.write(encode_line(self.normaliser.spool_event(finding, self.formats), self.output_format))
        for change in changes:
            self.stream.write(encode_line(self.normaliser.change_event(change, self.formats), self.output_format))
        self.stream.flush()


def _severity(value: str) -> Severity:
    try:
        return Severity(value.lower())
    except ValueError:
        fail(f"--fail-on must be one of {', '.join(s.value for s in Severity)}, not {value!r}")


def _settings(base: ScanSettings, updates: dict[str, object]) -> ScanSettings:
    """The configured scan settings with the command line's overrides (options left unset are None)."""
    given = {name: value for name, value in updates.items() if value is not None}
    try:
        return ScanSettings.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        fail(format_validation_error(exc))


_RESOLVER = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](:(?P<port6>\d+))?|(?P<v4>[^:]+)(:(?P<port>\d+))?|(?P<bare>.+)")


def _resolvers(base: ScanSettings, servers: list[str]) -> dict[str, object] | None:
    """``--dns-server 10.0.0.53`` / ``127.0.0.1:5353`` / ``[::1]:5353``: resolvers for the DNS and e-mail checks."""
    if not servers:
        return None
    addresses, ports = [], set()
    for server in servers:
        match = _RESOLVER.fullmatch(server)
        assert match is not None  # the last alternative takes anything
        addresses.append(match["v6"] or match["v4"] or match["bare"])
        ports.add(int(match["port6"] or match["port"] or 53))
    if len(ports) > 1:
        fail("--dns-server: every resolver must use the same port")
    return {**base.dns.model_dump(), "nameservers": addresses, "port": ports.pop()}


async def _scan(
    plan: ScanPlan,
    catalog: Catalog,
    settings: ScanSettings,
    state: StateStore | None,
    pipeline: Pipeline | None,
    writer: _EventWriter,
    quiet: bool,
    loaded: Config | None,
    discovery: Discovery | None,
) -> tuple[list[Finding], Counter[str]]:
    findings: list[Finding] = []
    changes: Counter[str] = Counter()
    show_progress = not quiet and len(plan.assets) > 1
    progress = Progress(
        TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=console_err, transient=True, disable=not show_progress,
    )
    with progress:
        task = progress.add_task("", total=len(plan.assets))
        async for run in collect(plan, catalog, ScanContext(settings), scan_id=secrets.token_hex(10), state=state,
                                 publisher=pipeline, drift=loaded.drift if loaded else None, discovery=discovery):
            if run.not_spooled is not None:
                raise run.not_spooled
            findings.extend(run.report.findings)
            changes.update(change.change.value for change in run.changes if isinstance(change, Transition))
            changes["drift"] += sum(1 for change in run.changes if isinstance(change, Drift))
            writer.write(run.report.findings, run.changes)
            progress.update(task, advance=1, description=run.report.asset.id)
    return findings, changes


def _summary(findings: list[Finding], assets: list[Asset], catalog: Catalog,
             changes: Counter[str] | None) -> None:
    failing = sorted((f for f in findings if f.is_failing), key=lambda f: (-f.severity.rank, f.asset.id))
    advisories = sum(1 for f in findings if f.is_advisory)
    not_applicable = sum(1 for f in findings if f.status is Status.NOT_APPLICABLE)
    errors = [f for f in findings if f.status is Status.ERROR]
    if failing:
        table = Table(title="Failing findings", title_justify="left", show_lines=False)
        for column in ("severity", "asset", "rule", "finding"):
            table.add_column(column, overflow="fold")
        for finding in failing:
            style = _SEVERITY_STYLE[finding.severity]
            table.add_row(f"[{style}]{finding.severity.value}[/{style}]", escape(str(finding.target)),
                          escape(finding.rule_id), escape(finding.message))
        console_err.print(table)
    if errors:
        table = Table(title="Could not evaluate", title_justify="left")
        for column in ("asset", "check or rule", "reason"):
            table.add_column(column, overflow="fold")
        for (target, reason), names in _group_errors(errors).items():
            table.add_row(escape(target), escape(", ".join(names)), escape(reason))
        console_err.print(table)
    counts = Counter(f.severity.value for f in failing)
    by_severity = ", ".join(f"{counts[s.value]} {s.value}" for s in reversed(Severity) if counts[s.value])
    passed = sum(1 for f in findings if f.status is Status.PASS)
    console_err.print(
        f"{len(assets)} asset(s): {len(failing)} failing" + (f" ({by_severity})" if by_severity else "")
        + f", {advisories} advisor{'y' if advisories == 1 else 'ies'}, {passed} passed"
        + f", {len(errors)} could not be evaluated"
        + (f", {not_applicable} not applicable" if not_applicable else "")
    )
    if changes is not None:
        console_err.print("since the last scan: " + ", ".join(
            f"{changes[change.value]} {change.value.removeprefix('finding-')}" for change in Change)
            + f", {changes['drift']} drifted")


def _group_errors(errors: list[Finding]) -> dict[tuple[str, str], list[str]]:
    """One row per asset and cause: an unreachable host is one line, not one per check."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for finding in errors:
        reason = finding.message.split(": ", 1)[1] if finding.rule_id == "scan.error" else finding.message
        name = finding.subject if finding.rule_id == "scan.error" and finding.subject else finding.rule_id
        grouped.setdefault((str(finding.target), reason), []).append(name)
    return grouped


def _exit_code(findings: list[Finding], threshold: Severity | None, fail_on_error: bool) -> int:
    """--fail-on counts failing findings at or above the threshold; advisories are info, so only ``info`` does."""
    if threshold is not None and any(
        f.status is Status.FAIL and f.severity.rank >= threshold.rank for f in findings
    ):
        return 1
    if fail_on_error and any(f.status is Status.ERROR for f in findings):
        return 1
    return 0
