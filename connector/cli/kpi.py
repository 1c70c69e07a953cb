"""``connector kpi``, ``connector digest`` and ``connector findings mark``: the program's numbers for people, the
owners' roll-ups of routine findings, and the analysts' verdicts that the false-positive rate is computed from."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connector.cli import app
from connector.cli._common import console_err, fail, load_catalog_and_normaliser, open_state, report_delivery
from connector.core.clock import utc_now
from connector.core.events import encode_line
from connector.core.units import parse_duration
from connector.inventory.digest import digests, period_end
from connector.inventory.kpi import SCOPE_KINDS, Kpis, measurement
from connector.respond.verdicts import Verdict, VerdictStore
from connector.runtime.collector import build_pipeline
from connector.runtime.config import load_config
from connector.runtime.kpis import VERDICTS_FILE, current_kpis, history

findings_app = typer.Typer(help="Analysts' verdicts: false positives, accepted risks.",
                           no_args_is_help=True)
app.add_typer(findings_app, name="findings")
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration (its state_dir).")]


class Period(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@app.command("kpi")
def kpi_command(
    config: ConfigOption,
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help="overall, owner, criticality or tag (repeatable; default: overall).")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, json (one object per scope and line) "
                                                                   "or csv.")] = Format.TABLE,
) -> None:
    """KPIs per scope: posture, MTTD, compliance, risk, remediation."""
    kinds = scope or ["overall"]
    unknown = [kind for kind in kinds if kind not in SCOPE_KINDS]
    if unknown:
        fail(f"--scope must be one of {', '.join(SCOPE_KINDS)}, not {', '.join(unknown)}")
    loaded = load_config(config)
    catalog, _ = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    store = open_state(loaded, "history")
    try:
        figures = current_kpis(loaded, store, catalog, utc_now(), kinds)
    finally:
        store.close()
    if output_format is Format.JSON:
        for kpis in figures:
            sys.stdout.write(json.dumps(kpis.as_dict()) + "\n")
    elif output_format is Format.CSV:
        rows = [{"scope": str(kpis.scope), **measurement(kpis).values} for kpis in figures]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["scope"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        _table(figures)


@app.command("digest")
def digest_command(
    config: ConfigOption,
    period: Annotated[Period, typer.Option(help="daily or weekly.")] = Period.DAILY,
    end: Annotated[str | None, typer.Option(
        help="The period's end, as a UTC date (2026-12-07: that midnight); default: the last complete period.")]
    = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the events here; default: stdout.")]
    = None,
    ship_timeout: Annotated[float, typer.Option(help="With sinks in the config: seconds to wait for delivery.")]
    = 120.0,
) -> None:
    """Owners' digests of a day or week: opened, resolved, past SLA."""
    loaded = load_config(config)
    catalog, normaliser = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    until = _period_end(period.value, end)
    store = open_state(loaded, "history")
    try:
        rolled = digests(history(loaded, store), loaded.kpi, period.value, until)
    finally:
        store.close()
    stream = output.open("wb") if output is not None and str(output) != "-" else sys.stdout.buffer
    try:
        for digest in rolled:
            stream.write(encode_line(normaliser.change_event(digest, frozenset({"ecs"})), "ecs"))
        stream.flush()
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    delivered = True
    if loaded.sinks:
        pipeline = build_pipeline(loaded, catalog, normaliser)
        pipeline.start()
        try:
            pipeline.publish([], rolled)
            delivered = report_delivery(pipeline, ship_timeout, quiet=True)
        finally:
            pipeline.stop()
    console_err.print(f"{len(rolled)} {period.value} digest(s) for the period ending {until:%Y-%m-%d %H:%M} UTC")
    raise typer.Exit(0 if delivered else 3)


@findings_app.command("mark")
def findings_mark(
    config: ConfigOption,
    fingerprint: Annotated[str, typer.Argument(help="The finding's postern.fingerprint.")],
    false_positive: Annotated[bool, typer.Option("--false-positive", help="The finding is wrong.")] = False,
    accepted_risk: Annotated[bool, typer.Option("--accepted-risk", help="Right, and accepted as it is.")] = False,
    fixed: Annotated[bool, typer.Option("--fixed", help="Fixed: lifts an earlier verdict.")] = False,
    acknowledged: Annotated[bool, typer.Option("--acknowledged",
                                               help="Someone is on it: re-issued notices stop.")] = False,
    reason: Annotated[str, typer.Option(help="Why: kept with the verdict.")] = "",
    analyst: Annotated[str | None, typer.Option(help="Who decided (default: $USER).")] = None,
    expires: Annotated[str | None, typer.Option(help="The verdict lapses after this long, e.g. 90d.")] = None,
) -> None:
    """Record an analyst's verdict: a false positive or accepted risk is suppressed from alerts and playbooks (until
    it expires) and still counted in the KPIs."""
    chosen = [name for name, given in (("false_positive", false_positive), ("accepted_risk", accepted_risk),
                                       ("fixed", fixed), ("acknowledged", acknowledged)) if given]
    if len(chosen) != 1:
        fail("give exactly one of --false-positive, --accepted-risk, --fixed and --acknowledged")
    if not reason and chosen[0] in ("false_positive", "accepted_risk"):
        fail("--reason is required: auditors ask why a finding was dismissed")
    lifetime: timedelta | None = None
    if expires:
        try:
            lifetime = parse_duration(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
    loaded = load_config(config)
    store = open_state(loaded, "history")
    try:
        known = {verdict.fingerprint: verdict for verdict in store.findings.verdicts()}
    finally:
        store.close()
    if fingerprint not in known:
        fail(f"no finding {fingerprint!r} in {loaded.state_dir} (the postern.fingerprint of a finding's events)")
    now = utc_now()
    verdicts = VerdictStore(loaded.state_dir / VERDICTS_FILE)
    try:
        verdicts.record(Verdict(fingerprint, chosen[0], analyst or _user(), reason, now,
                                now + lifetime if lifetime else None))
    finally:
        verdicts.close()
    finding = known[fingerprint]
    until = f" until {(now + lifetime):%Y-%m-%d}" if lifetime else ""
    typer.echo(f"{fingerprint}: {chosen[0].replace('_', ' ')}{until} ({finding.rule_id} on {finding.asset_id})")


def _period_end(period: str, end: str | None) -> datetime:
    if end is None:
        return period_end(period, utc_now())
    try:
        moment = datetime.fromisoformat(end)
    except ValueError:
        fail(f"--end must be a date or an ISO 8601 time, not {end!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _user() -> str:
    import getpass  # noqa: PLC0415 - only this command needs it

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}%"


def _table(figures: list[Kpis]) -> None:
    table = Table(title=f"KPIs over the last {figures[0].window_days:g} days" if figures else "KPIs",
                  title_justify="left")
    for column in ("scope", "assets", "HTTPS ok", "headers ok", "certs valid", "oldest TLS", "next expiry",
                   "open c/h/m/l", "risk", "MTTD p50/p95", "FP rate", "fixed in SLA", "PCI DSS", "errored"):
        table.add_column(column, overflow="fold")
    for kpis in figures:
        opened = kpis.open_by_severity
        mttd = ("n/a" if kpis.mttd_median_seconds is None
                else f"{kpis.mttd_median_seconds:g}/{kpis.mttd_p95_seconds:g} s")
        table.add_row(escape(str(kpis.scope)), str(kpis.assets), _percent(kpis.https_routes.percent),
                      _percent(kpis.header_baseline.percent), _percent(kpis.valid_certificates.percent),
                      kpis.oldest_tls_protocol or "n/a",
                      "n/a" if kpis.next_expiry_days is None else f"{kpis.next_expiry_days} d",
                      f"{opened['critical']}/{opened['high']}/{opened['medium']}/{opened['low']}",
                      f"{kpis.risk_score:g}", mttd,
                      "n/a" if kpis.false_positive_rate is None else f"{100 * kpis.false_positive_rate:.1f}%",
                      _percent(kpis.remediation.percent), _percent(kpis.compliance["pci_dss_4_0"].score),
                      str(kpis.errored_checks))
    Console(width=200).print(table)
