"""``connector splunk setup|verify`` and ``connector elastic setup|render``: prepare and check the SIEM side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer

from connector.cli import app
from connector.cli._common import fail
from connector.delivery.sinks.base import SinkSettings
from connector.delivery.sinks.elasticsearch import assets as elastic
from connector.delivery.sinks.elasticsearch.sink import ElasticsearchSettings, make_client
from connector.delivery.sinks.splunk_hec import setup as splunk
from connector.delivery.sinks.splunk_hec.sink import SplunkHecSettings
from connector.runtime.config import Config, load_config
from connector.runtime.state import StateStore

splunk_app = typer.Typer(help="Create or check the Splunk index and HEC input; verify events arrived.",
                         no_args_is_help=True)
elastic_app = typer.Typer(help="Install the Elasticsearch templates, ILM policy and ingest pipeline.",
                          no_args_is_help=True)
app.add_typer(splunk_app, name="splunk")
app.add_typer(elastic_app, name="elastic")
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration.")]
SettingsT = TypeVar("SettingsT", bound=SinkSettings)
SinkOption = Annotated[str | None, typer.Option("--sink", help="Which sink, when several of this type exist.")]


def _sink(config: Config, kind: type[SettingsT], name: str | None) -> SettingsT:
    candidates = [s for s in config.sink_settings if isinstance(s, kind) and (name is None or s.name == name)]
    if not candidates:
        fail(f"no {kind.model_fields['type'].default} sink{f' named {name}' if name else ''} in the configuration")
    if len(candidates) > 1:
        fail(f"several {kind.model_fields['type'].default} sinks: choose one with --sink")
    return candidates[0]


@splunk_app.command("setup")
def splunk_setup(config: ConfigOption, sink: SinkOption = None) -> None:
    """Create the index and the HEC input if missing, and check they match the sink's configuration."""
    settings = _sink(load_config(config), SplunkHecSettings, sink)
    steps, token = splunk.setup(settings)
    for step in steps:
        typer.echo(f"{step.what}: {step.outcome}")
    if token:
        typer.echo(f"new HEC token: {token}  (put it where the sink's token is read from)")


@splunk_app.command("verify")
def splunk_verify(
    config: ConfigOption,
    sink: SinkOption = None,
    scan_id: Annotated[list[str] | None, typer.Option("--scan-id", help="Scan(s) to look for (default: latest).")]
    = None,
) -> None:
    """Search Splunk for the events of the latest scan of each asset and compare with what was sent."""
    loaded = load_config(config)
    settings = _sink(loaded, SplunkHecSettings, sink)
    state = StateStore(loaded.state_dir / "state.sqlite", exclusive=False)  # reads while the sidecar runs
    expected = state.latest_scans()
    state.close()
    wanted = {scan: expected.get(scan, 0) for scan in scan_id} if scan_id else expected
    if not wanted:
        fail("no scan recorded yet: run `connector scan -c CONFIG` or the sidecar first")
    found = splunk.count_events(settings, list(wanted))
    missing = False
    for scan, count in wanted.items():
        got = found.get(scan, 0)
        status = "complete" if got >= count else "MISSING EVENTS"
        missing |= got < count
        typer.echo(f"scan {scan}: sent {count}, found {got} in Splunk: {status}")
    raise typer.Exit(1 if missing else 0)


@elastic_app.command("setup")
def elastic_setup(config: ConfigOption, sink: SinkOption = None) -> None:
    """Install the ILM policy, ingest pipeline, component templates and index template (idempotent)."""
    loaded = load_config(config)
    settings = _sink(loaded, ElasticsearchSettings, sink)
    client = make_client(settings)
    try:
        steps = elastic.setup(client, settings.data_stream, loaded.mappings_dir)
    finally:
        client.close()
    for step in steps:
        typer.echo(f"{step.what}: {step.outcome}")


@elastic_app.command("render")
def elastic_render(mappings: Annotated[Path | None, typer.Option(help="Mappings directory.")] = None) -> None:
    """Re-render mappings/elastic/component-mappings.json from mappings/ecs.yaml after editing it."""
    path, fields = elastic.write_rendered(mappings)
    typer.echo(f"wrote {path} ({fields} fields)")
