"""``connector splunk setup|verify`` and ``connector elastic setup|render``: prepare and check the SIEM side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import SecretStr, TypeAdapter, ValidationError

from connector.cli import app
from connector.cli._common import fail
from connector.core.units import Secret
from connector.delivery.sinks.base import SinkSettings
from connector.delivery.sinks.elasticsearch import assets as elastic
from connector.delivery.sinks.elasticsearch import kibana
from connector.delivery.sinks.elasticsearch.sink import ElasticsearchSettings, make_client
from connector.delivery.sinks.splunk_hec import setup as splunk
from connector.delivery.sinks.splunk_hec.sink import SplunkHecSettings
from connector.respond.settings import AuthMethod, SourceKind
from connector.runtime.config import Config, load_config
from connector.runtime.state import StateStore

splunk_app = typer.Typer(help="Create or check the Splunk index and HEC input; verify events arrived.",
                         no_args_is_help=True)
elastic_app = typer.Typer(help="Install Elasticsearch templates, ILM and pipeline; Kibana connector, rules, dashboard.",
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
def elastic_setup(
    config: ConfigOption,
    sink: SinkOption = None,
    kibana_url: Annotated[str | None, typer.Option(
        "--kibana", help="Kibana's URL: also install the Webhook connector, detection rules and dashboard.")] = None,
    space: Annotated[str | None, typer.Option(help="Kibana space (default: the default space).")] = None,
    responder_url: Annotated[str | None, typer.Option(
        help="The responder's base URL as Kibana reaches it (default: respond.host and respond.port).")] = None,
    source: Annotated[str | None, typer.Option(
        help="Which respond source of kind elastic the connector authenticates as.")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="Kibana API key from this environment variable (default: the sink's credentials).")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="Kibana API key from this file.")] = None,
    kibana_user: Annotated[str | None, typer.Option(help="Kibana user (basic authentication).")] = None,
    password_env: Annotated[str | None, typer.Option(
        help="That user's password from this environment variable.")] = None,
    password_file: Annotated[Path | None, typer.Option(help="That user's password from this file.")] = None,
    kibana_ca_bundle: Annotated[Path | None, typer.Option(help="CA bundle to verify Kibana's certificate.")] = None,
    disable_rules: Annotated[bool, typer.Option(
        "--disable-rules", help="Install the detection rules disabled.")] = False,
    kibana_only: Annotated[bool, typer.Option(
        "--kibana-only", help="Skip the Elasticsearch assets (templates, ILM policy, pipeline).")] = False,
) -> None:
    """Install the ILM policy, ingest pipeline, component and index templates (idempotent); with --kibana, also
    the Webhook connector to the responder, the detection rules that call it, and the posture dashboard."""
    loaded = load_config(config)
    settings = _sink(loaded, ElasticsearchSettings, sink)
    if kibana_only and kibana_url is None:
        fail("--kibana-only needs --kibana URL")
    if not kibana_only:
        client = make_client(settings)
        try:
            steps = elastic.setup(client, settings.data_stream, loaded.mappings_dir)
        finally:
            client.close()
        for step in steps:
            typer.echo(f"{step.what}: {step.outcome}")
    if kibana_url is None:
        return
    target = _kibana_target(settings, kibana_url, space, api_key_env, api_key_file, kibana_user, password_env,
                            password_file, kibana_ca_bundle)
    responder = _responder(loaded, responder_url, source)
    try:
        steps = kibana.setup(target, responder, f"logs-{settings.dataset}-*", loaded.mappings_dir,
                             enable_rules=not disable_rules)
    except kibana.KibanaError as exc:
        fail(str(exc))
    for step in steps:
        typer.echo(f"{step.what}: {step.outcome}")


def _secret(value: dict[str, str], what: str) -> SecretStr:
    """A secret read like the configuration's ({env: NAME} or {file: PATH}), so it is redacted the same way."""
    try:
        return TypeAdapter(Secret).validate_python(value)
    except ValidationError as exc:
        fail(f"{what}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")


def _kibana_target(settings: ElasticsearchSettings, url: str, space: str | None, api_key_env: str | None,
                   api_key_file: Path | None, user: str | None, password_env: str | None,
                   password_file: Path | None, ca_bundle: Path | None) -> kibana.KibanaTarget:
    if not url.startswith(("http://", "https://")):
        fail(f"--kibana: an http:// or https:// URL, not {url!r}")
    base = kibana.KibanaTarget(url=url, space=space, ca_bundle=ca_bundle or settings.ca_bundle,
                               verify_tls=settings.verify_tls)
    if api_key_env or api_key_file:
        source = {"env": api_key_env} if api_key_env else {"file": str(api_key_file)}
        return replace(base, api_key=_secret(source, "--api-key-env/--api-key-file"))
    if user:
        if not (password_env or password_file):
            fail("--kibana-user needs --password-env or --password-file")
        source = {"env": password_env} if password_env else {"file": str(password_file)}
        return replace(base, username=user, password=_secret(source, "--password-env/--password-file"))
    # Kibana signs in with Elasticsearch's security: the sink's API key or user works if it has Kibana privileges
    return replace(base, api_key=settings.api_key, username=settings.username, password=settings.password)


def _responder(config: Config, url: str | None, name: str | None) -> kibana.ResponderAuth:
    respond = config.respond
    if respond is None:
        fail("the configuration has no respond: section; add a source with kind: elastic (auth: bearer or basic) "
             "for the Kibana Webhook connector to authenticate as")
    sources = [s for s in respond.sources if s.kind is SourceKind.ELASTIC and (name is None or s.name == name)]
    usable = [s for s in sources if s.auth in (AuthMethod.BEARER, AuthMethod.BASIC)]
    if not usable:
        fail(f"no respond source {'named ' + name + ' ' if name else ''}of kind elastic with auth bearer or basic "
             "(the Kibana Webhook connector can send neither a signature nor a client certificate)")
    if len(usable) > 1:
        fail("several respond sources of kind elastic: choose one with --source")
    chosen = usable[0]
    if url is None:
        host = respond.host if ":" not in respond.host else f"[{respond.host}]"
        url = f"{'https' if respond.tls else 'http'}://{host}:{respond.port}"
    callback = url.rstrip("/") + ("" if url.rstrip("/").endswith(kibana.CALLBACK_PATH) else kibana.CALLBACK_PATH)
    if chosen.auth is AuthMethod.BASIC:
        return kibana.ResponderAuth(callback, username=chosen.username, password=chosen.secret)
    return kibana.ResponderAuth(callback, token=chosen.secret)


@elastic_app.command("render")
def elastic_render(mappings: Annotated[Path | None, typer.Option(help="Mappings directory.")] = None) -> None:
    """Re-render mappings/elastic/component-mappings.json from mappings/ecs.yaml after editing it."""
    path, fields = elastic.write_rendered(mappings)
    typer.echo(f"wrote {path} ({fields} fields)")
