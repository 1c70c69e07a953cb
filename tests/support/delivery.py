"""The delivery pipeline for tests: built as the sidecar builds it, with fast backoff, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connector.core.catalog import Catalog
from connector.core.model import Finding
from connector.delivery.pipeline import Pipeline
from connector.normalise import Normaliser
from connector.runtime.config import Config


def make_pipeline(tmp_path: Path, catalog: Catalog, sinks: list[dict[str, object]], **spool: object) -> Pipeline:
    """A real normaliser -> spool -> shippers pipeline with fast backoff, as the sidecar builds it."""
    config = Config.model_validate({"assets": [{"host": "unused.test"}], "sinks": sinks,
                                    "state_dir": str(tmp_path / "state"), "spool": spool or {}})
    return Pipeline(config.sink_settings, config.spool, config.state_dir, catalog, Normaliser.load(catalog),
                    initial_backoff=0.02, max_backoff=0.2)


@contextmanager
def running(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline's shippers at work for the block, stopped however it ends."""
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def ship(pipeline: Pipeline, findings: list[Finding], timeout: float = 20.0) -> dict[str, int]:
    """Start the shippers, spool ``findings``, wait for delivery; returns what is still pending per sink."""
    with running(pipeline):
        pipeline.publish(findings)
        return pipeline.drain(timeout)
