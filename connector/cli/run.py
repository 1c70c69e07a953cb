"""``connector run``: the sidecar collector."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import start_http_server

from connector.cli import app
from connector.cli._common import load_catalog_and_normaliser
from connector.config import load_config
from connector.errors import ConfigError
from connector.sidecar import Sidecar, install_stop_signals
from connector.state import StateStore


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML configuration.")],
    once: Annotated[bool, typer.Option(help="Scan every asset once now, then exit (for cron or a first test).")]
    = False,
) -> None:
    """Run as a long-lived collector: scan assets on their schedule until SIGTERM."""
    loaded = load_config(config)
    catalog, normaliser = load_catalog_and_normaliser(loaded.mappings_dir, loaded.observer_name)
    if loaded.metrics_port:
        try:
            start_http_server(loaded.metrics_port, addr=loaded.metrics_address)
        except OSError as exc:
            raise ConfigError(f"metrics_port {loaded.metrics_port}: {exc.strerror or exc}") from None
    state = StateStore(loaded.state_dir / "state.sqlite")
    sidecar = Sidecar(loaded, catalog, normaliser, state)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await sidecar.run(stop, once=once)

    try:
        asyncio.run(main())
    finally:
        sidecar.close()
        state.close()
