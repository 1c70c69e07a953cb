"""``connector run``: the sidecar collector."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import start_http_server

from connector.cli import app
from connector.cli._common import load_catalog_and_normaliser, report_delivery
from connector.core.errors import ConfigError
from connector.runtime.collector import ConfiguredRescanner
from connector.runtime.config import load_config
from connector.runtime.respond import Responder
from connector.runtime.sidecar import Sidecar, install_stop_signals
from connector.runtime.state import StateStore


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration.")],
    once: Annotated[bool, typer.Option(help="Scan every asset once now, deliver, then exit (for cron or a first "
                                            "test). Exit code 3 if some events were not delivered or an asset "
                                            "could not be scanned to the end.")] = False,
    ship_timeout: Annotated[float, typer.Option(help="With --once: seconds to wait for delivery.")] = 120.0,
) -> None:
    """Run as a long-lived collector: scan on schedule, answer callbacks, until SIGTERM.

    Assets are scanned on their schedule; with a respond: section, SIEM and SOAR callbacks are received and their
    playbooks run."""
    loaded = load_config(config)
    catalog, normaliser = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    state = StateStore(loaded.state_dir / "state.sqlite")  # first: a second process stops here, holding nothing
    if loaded.metrics_port:
        try:
            start_http_server(loaded.metrics_port, addr=loaded.metrics_address)
        except OSError as exc:
            state.close()
            raise ConfigError(f"metrics_port {loaded.metrics_port}: {exc.strerror or exc}") from None
    sidecar = Sidecar(loaded, catalog, normaliser, state)
    responder = Responder(loaded.respond, loaded.state_dir, sidecar.pipeline,
                          ConfiguredRescanner(loaded, catalog, sidecar.pipeline)) \
        if loaded.respond and not once else None

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await sidecar.run(stop, once=once)

    delivered = True
    try:
        if responder is not None:
            responder.start()
        asyncio.run(main())
        if once and sidecar.pipeline.sinks:
            delivered = report_delivery(sidecar.pipeline, ship_timeout, quiet=True) and not sidecar.unspooled
        delivered = delivered and not (once and sidecar.unfinished)
    finally:
        if responder is not None:
            responder.stop()
        sidecar.close()
        state.close()
    raise typer.Exit(0 if delivered else 3)
