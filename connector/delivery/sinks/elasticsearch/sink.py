"""Elasticsearch: ECS documents into a data stream with the official client's bulk helper.

Every document is written with ``op_type: create`` and the deterministic event id as ``_id``, so a re-sent batch
is a no-op: a 409 means "already stored" and counts as delivered (Elasticsearch checks ``_id`` only within the
data stream's current write index, so a re-send after a rollover can store a second copy; dedupe on
``event.id`` in searches). Per-item 429 and 5xx are retried, mapping and other 4xx errors go to the dead-letter
store, and transport failures keep the whole batch for a retry. Errors that say the cluster, not the document,
is wrong (a closed or read-only index, missing privileges, a full write queue) keep the events too. A request
too large (413) is split in halves. The client's own retries are off: the shipper owns backoff for every sink.

Like Beats and Elastic Agent, the sink installs its index template and friends at start when they are
missing (``install_templates``), so the first documents never get dynamic mappings that later conflict.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, helpers
from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from connector.core.events import SpooledEvent
from connector.core.units import Secret
from connector.delivery.sinks.base import SendOutcome, Sink, SinkSettings, TransientSinkError, describe_error
from connector.delivery.sinks.elasticsearch import assets as elastic

log = logging.getLogger(__name__)

# errors about the target, not the document: retrying is right, dead-lettering would lose good events
_CLUSTER_ERRORS = {"cluster_block_exception", "index_closed_exception", "security_exception",
                   "index_not_found_exception", "invalid_index_name_exception", "es_rejected_execution_exception"}
_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # Elasticsearch's default http.max_content_length
_STREAM_PART = re.compile(r"^[a-z0-9_.]{1,100}$")  # no '-', no \\/*?"<>|,# or spaces (data stream naming scheme)


class ElasticsearchSettings(SinkSettings):
    type: Literal["elasticsearch"] = "elasticsearch"
    hosts: list[AnyHttpUrl] = Field(default_factory=list)
    cloud_id: str | None = None
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    ca_bundle: Path | None = None
    verify_tls: bool = True
    dataset: str = "postern.findings"
    namespace: str = "default"
    pipeline: str | None = Field(default=None, description="ingest pipeline per request (templates can set one)")
    request_timeout: float = Field(default=30.0, gt=0)
    batch_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    install_templates: bool = Field(default=True, description="install the index template etc. if missing")

    @field_validator("dataset", "namespace")
    @classmethod
    def _stream_part(cls, value: str) -> str:
        if not _STREAM_PART.match(value):
            raise ValueError(f"{value!r}: lower case letters, digits, '_' and '.' only, at most 100 characters")
        return value

    @model_validator(mode="after")
    def _where_and_who(self) -> ElasticsearchSettings:
        if bool(self.hosts) == bool(self.cloud_id):
            raise ValueError("give either hosts or cloud_id")
        if self.api_key is None and (self.username is None or self.password is None):
            raise ValueError("give api_key, or username and password")
        return self

    @property
    def data_stream(self) -> str:
        return f"logs-{self.dataset}-{self.namespace}"


def make_client(settings: ElasticsearchSettings) -> Elasticsearch:
    options: dict[str, Any] = {
        "request_timeout": settings.request_timeout,
        "max_retries": 0,
        "retry_on_timeout": False,
        "verify_certs": settings.verify_tls,
    }
    if settings.ca_bundle:
        options["ca_certs"] = str(settings.ca_bundle)
    if settings.api_key is not None:
        options["api_key"] = settings.api_key.get_secret_value()
    else:
        assert settings.username is not None and settings.password is not None
        options["basic_auth"] = (settings.username, settings.password.get_secret_value())
    if settings.cloud_id:
        return Elasticsearch(cloud_id=settings.cloud_id, **options)
    return Elasticsearch([str(host).rstrip("/") for host in settings.hosts], **options)


class ElasticsearchSink(Sink[ElasticsearchSettings]):
    type_name = "elasticsearch"
    settings_model = ElasticsearchSettings

    def __init__(self, settings: ElasticsearchSettings) -> None:
        super().__init__(settings)
        self.client = make_client(settings)
        self._stream_fields = orjson.dumps(
            {"data_stream": {"type": "logs", "dataset": settings.dataset, "namespace": settings.namespace}})[:-1]

    def open(self) -> None:
        self.health()
        if self.settings.install_templates:
            self._ensure_templates()

    def _ensure_templates(self) -> None:
        try:
            if elastic.templates_installed(self.client):
                return
        except ApiError as exc:
            if exc.status_code in (401, 403):
                log.warning("sink %s: not allowed to check the index template (%s); assuming `connector elastic "
                            "setup` installed it", self.name, describe_error(exc))
                return
            raise TransientSinkError(f"checking the index template: {describe_error(exc)}") from None
        except TransportError as exc:
            raise TransientSinkError(f"checking the index template: {describe_error(exc)}") from None
        steps = elastic.setup(self.client, self.stream)
        log.info("sink %s: installed the Elasticsearch assets", self.name,
                 extra={"steps": [f"{step.what}: {step.outcome}" for step in steps]})

    def health(self) -> str:
        try:
            info = self.client.info()
        except (ApiError, TransportError) as exc:
            raise TransientSinkError(f"Elasticsearch is not reachable: {describe_error(exc)}") from None
        except Exception as exc:  # UnsupportedProductError and friends: something else answers
            raise TransientSinkError(f"Elasticsearch check failed: {describe_error(exc)}") from None
        return f"Elasticsearch {info['version']['number']} ({info.get('cluster_name', '?')}), writing {self.stream}"

    @property
    def stream(self) -> str:
        return self.settings.data_stream

    def _action(self, event: SpooledEvent) -> dict[str, Any]:
        """A bulk action whose source is the spooled JSON as is: no parsing, no re-serialising."""
        source = event.ecs or b"{}"
        # data_stream.* ride along in every document, as Elastic's data stream naming scheme expects
        body = self._stream_fields + b"," + source[1:] if source.startswith(b"{") and len(source) > 2 else source
        return {"_op_type": "create", "_index": self.stream, "_id": event.event_id, "_source": body}

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        outcome = SendOutcome()
        self._send(list(events), outcome)
        return outcome

    def _send(self, events: list[SpooledEvent], outcome: SendOutcome) -> None:
        try:
            results = list(helpers.streaming_bulk(
                self.client, [self._action(event) for event in events], chunk_size=len(events),
                max_chunk_bytes=_MAX_REQUEST_BYTES, raise_on_error=False, raise_on_exception=False, max_retries=0,
                yield_ok=True, pipeline=self.settings.pipeline,
            ))
        except Exception as exc:  # transport and API errors, or a proxy answering HTML the client cannot parse
            raise TransientSinkError(f"bulk request failed: {describe_error(exc)}") from None
        if len(results) != len(events):
            raise TransientSinkError(f"bulk answered {len(results)} items for {len(events)} documents")
        failures = [(event, next(iter(item.values()))) for event, (ok, item) in zip(events, results, strict=True)
                    if not ok]
        if any(result.get("status") == 413 for _, result in failures):
            if len(events) == 1:
                outcome.rejected[events[0].seq] = "HTTP 413: the document alone exceeds http.max_content_length"
                return
            middle = len(events) // 2
            self._send(events[:middle], outcome)
            self._send(events[middle:], outcome)
            return
        refused = [(event, result) for event, result in failures if result.get("status") != 409]  # 409: stored
        cluster_problem = _cluster_problem(refused)
        for event, result in refused:
            status = int(result.get("status", 0) or 0)
            reason = _itemdescribe_error(result.get("error"))
            if cluster_problem or "exception" in result or status == 429 or status >= 500 or status in (401, 403, 404):
                outcome.retry.add(event.seq)
                outcome.note = cluster_problem or reason
            else:
                outcome.rejected[event.seq] = f"HTTP {status}: {reason}"

    def close(self) -> None:
        self.client.close()


def _cluster_problem(refused: list[tuple[SpooledEvent, dict[str, Any]]]) -> str:
    """Why the batch should wait rather than become dead letters, or "" if the errors are about the documents."""
    kinds = {str(error.get("type", "")) for _, result in refused if isinstance(error := result.get("error"), dict)}
    if kinds & _CLUSTER_ERRORS:
        return f"Elasticsearch refuses writes ({', '.join(sorted(kinds & _CLUSTER_ERRORS))}); events kept"
    return ""


def _itemdescribe_error(error: object) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"[:500]
    return str(error)[:500]


SINK = ElasticsearchSink
