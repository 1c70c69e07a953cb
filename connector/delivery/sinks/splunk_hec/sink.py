"""Splunk HTTP Event Collector: batched JSON envelopes to /services/collector/event, optionally acknowledged.

HEC answers a batch with one status. On a bad event it says which one ("invalid-event-number": the events
before it were indexed), so that event becomes a dead letter and only the ones after it are retried. A body
that is too large (413, whatever its body: Splunk's is an HTML page, Fluent Bit's is empty) or rejected without
naming the event is bisected until the culprit is alone. Token and server problems keep every event (retried
with backoff, or after the receiver's Retry-After): a wrong token is a configuration error, not bad data.

What "delivered" means:
- without ``ack``: the receiver answered 200 with code 0, i.e. it accepted the batch. Splunk has parsed it
  and queued it for indexing; a crash of the indexer before writing can still lose it. Fluent Bit and other
  HEC-compatible receivers mean only "taken into memory" (with their own flush interval).
- with ``ack: true``: Splunk's indexer acknowledgement said the events were written (``/services/collector/ack``
  returned true for the batch's ackId). A receiver without indexer acknowledgement cannot give that promise,
  so the sink refuses to start against it (a configuration error naming ``ack``) instead of re-sending forever.

Any 2xx from the health endpoint counts as healthy (Splunk answers code 17, Fluent Bit code 200); a receiver
without one is not blocked on it: the answers to sends decide.
"""

from __future__ import annotations

import gzip
import ssl
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

from connector.core.errors import ConfigError, ConnectorError
from connector.core.events import SpooledEvent
from connector.core.model import Severity
from connector.core.units import Duration, Secret
from connector.delivery.sinks.base import (
    SendOutcome,
    Sink,
    SinkSettings,
    TransientSinkError,
    describe_error,
    meta,
    retry_after_seconds,
)

# HEC reply codes (Splunk docs, "Troubleshoot HTTP Event Collector"): data errors are per event and final.
DATA_ERRORS = {5: "no data", 6: "invalid data format", 7: "incorrect index", 12: "event field is required",
               13: "event field cannot be blank", 15: "error in handling indexed fields"}
HEALTHY = 17
IndexedField = Literal["rule", "severity", "status", "asset", "category", "check", "scan_id"]
DEFAULT_INDEXED_FIELDS: tuple[IndexedField, ...] = ("rule", "severity", "status", "asset")


class Route(BaseModel):
    """Send matching events to another index or sourcetype; the first matching route wins."""

    model_config = ConfigDict(extra="forbid")

    category: list[str] | None = None
    severity: list[Severity] | None = None
    rule_prefix: str | None = None
    index: str | None = None
    sourcetype: str | None = None

    def matches(self, attributes: dict[str, Any]) -> bool:
        return (
            (self.category is None or attributes.get("category") in self.category)
            and (self.severity is None or attributes.get("severity") in self.severity)
            and (self.rule_prefix is None or str(attributes.get("rule", "")).startswith(self.rule_prefix))
        )


class SplunkManagement(BaseModel):
    """The management port (8089), for `connector splunk setup` and `connector splunk verify` only."""

    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="e.g. https://splunk.example.com:8089")
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = Field(default=None, description="a Splunk authentication token (bearer)")
    verify_tls: bool = True
    ca_bundle: Path | None = None

    @model_validator(mode="after")
    def _credentials(self) -> SplunkManagement:
        if self.token is None and (self.username is None or self.password is None):
            raise ValueError("give token, or username and password")
        return self


class SplunkHecSettings(SinkSettings):
    type: Literal["splunk_hec"] = "splunk_hec"
    url: AnyHttpUrl = Field(description="HEC base URL, e.g. https://splunk.example.com:8088")
    token: Secret
    index: str | None = Field(default=None, description="default index; none: the token's default")
    source: str = "postern"
    sourcetype: str = "postern:finding"
    host: str | None = Field(default=None, description="fixed host field; default: the asset the event is about")
    routes: list[Route] = Field(default_factory=list)
    indexed_fields: list[IndexedField] = Field(
        default_factory=lambda: list(DEFAULT_INDEXED_FIELDS),
        description="index-time fields (fast tstats searches), taken from each event")
    gzip: bool = True
    verify_tls: bool = True
    ca_bundle: Path | None = None
    ack: bool = Field(default=False, description="indexer acknowledgement (the token must have useACK)")
    ack_timeout: Duration = timedelta(minutes=2)
    ack_poll_interval: Duration = timedelta(milliseconds=500)
    timeout: float = Field(default=30.0, gt=0)
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    management: SplunkManagement | None = None


class SplunkHecSink(Sink[SplunkHecSettings]):
    type_name = "splunk_hec"
    settings_model = SplunkHecSettings

    def __init__(self, settings: SplunkHecSettings) -> None:
        super().__init__(settings)
        self.base = str(settings.url).rstrip("/")
        self.channel = str(uuid.uuid4())
        # a channel on every request: required with acknowledgement, and harmless (traceable) without
        headers = {"Authorization": f"Splunk {settings.token.get_secret_value()}", "Content-Type": "application/json",
                   "X-Splunk-Request-Channel": self.channel}
        self.client = httpx.Client(headers=headers, timeout=settings.timeout, verify=_verify(settings))

    def open(self) -> None:
        """Reachable, and able to acknowledge when ``ack`` is on; a missing health endpoint does not block."""
        try:
            self.health()
        except ConnectorError as exc:
            if "cannot reach" in str(exc):
                # Not fatal: events stay spooled and sending retries. Say so once, loudly, at start.
                raise TransientSinkError(f"HEC at {self.base} is not ready: {exc}") from None
        if self.settings.ack:
            self._check_acknowledgement()

    def health(self) -> str:
        try:
            response = self.client.get(f"{self.base}/services/collector/health")
        except httpx.HTTPError as exc:
            raise TransientSinkError(f"cannot reach {self.base}: {describe_error(exc)}") from None
        body = _json(response)
        if 200 <= response.status_code < 300:
            self._check_token()
            if body.get("code") == HEALTHY:
                return f"HEC at {self.base} is healthy; the token is accepted"
            return f"HEC at {self.base} answers its health check ({response.status_code}) and accepts the token"
        raise TransientSinkError(f"HEC health check answered {response.status_code}: {body or response.text[:200]}; "
                                 "sending is tried anyway, and its answers decide")

    def _check_token(self) -> None:
        """The health endpoint takes no token; an empty batch does (Splunk and Fluent Bit answer 400 "No data"
        for a good token, 401/403 for a bad one), and indexes nothing."""
        try:
            response = self.client.post(f"{self.base}/services/collector/event", content=b"")
        except httpx.HTTPError as exc:
            raise TransientSinkError(f"cannot reach {self.base}: {describe_error(exc)}") from None
        if response.status_code in (401, 403):
            reply = _json(response)
            raise TransientSinkError(f"HEC refused the token (HTTP {response.status_code}, code {reply.get('code')}: "
                                     f"{reply.get('text', '')}); events are kept until the token is fixed")

    def _check_acknowledgement(self) -> None:
        """An ack query for no ackId: Splunk with useACK answers 200 {"acks": {}}; a receiver without indexer
        acknowledgement answers 400 or 404, and then nothing it accepts could ever be confirmed."""
        try:
            response = self.client.post(f"{self.base}/services/collector/ack", params={"channel": self.channel},
                                        json={"acks": []})
        except httpx.HTTPError as exc:
            raise TransientSinkError(f"HEC ack check: {describe_error(exc)}") from None
        if response.status_code in (401, 403):
            raise TransientSinkError(f"HEC refused the token on the ack check (HTTP {response.status_code})")
        if response.status_code != 200 or not isinstance(_json(response).get("acks"), dict):
            raise ConfigError(
                f"sinks: {self.name}: ack is true, but {self.base} has no indexer acknowledgement "
                f"(/services/collector/ack answered {response.status_code}); set ack: false, or enable useACK "
                "on the token")

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        outcome = SendOutcome()
        envelopes = {event.seq: self._envelope(event) for event in events}  # once, however often bisected
        self._send(list(events), envelopes, outcome)
        return outcome

    def _send(self, events: list[SpooledEvent], envelopes: dict[int, bytes], outcome: SendOutcome) -> None:
        body = b"".join(envelopes[event.seq] for event in events)
        payload = gzip.compress(body, compresslevel=5) if self.settings.gzip else body
        headers = {"Content-Encoding": "gzip"} if self.settings.gzip else {}
        try:
            response = self.client.post(f"{self.base}/services/collector/event", content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientSinkError(f"HEC {self.base}: {describe_error(exc)}") from None
        status, reply = response.status_code, _json(response)
        code, text = reply.get("code"), str(reply.get("text", ""))
        code = code if isinstance(code, int) and not isinstance(code, bool) else None  # a receiver's garbage
        if status == 200 and code == 0:
            if self.settings.ack:
                self._await_ack(reply.get("ackId"))
            return
        if status == 413:  # before the body is read: Splunk's 413 is HTML, Fluent Bit's is empty
            self._bisect(events, envelopes, outcome, "request too large for HEC (413), even as one event")
            return
        if status in (429, 503):
            raise TransientSinkError(f"HEC is busy (HTTP {status}{f', code {code}' if code is not None else ''})",
                                     retry_after=retry_after_seconds(response.headers.get("retry-after")))
        if status in (401, 403):
            raise TransientSinkError(f"HEC refused the token (HTTP {status}, code {code}: {text}); "
                                     "events are kept until the token is fixed")
        if not reply:
            raise TransientSinkError(f"HEC answered {status} with an unreadable body: {response.text[:120]!r}")
        if status == 400 and code in DATA_ERRORS:
            bad = reply.get("invalid-event-number")
            if isinstance(bad, int) and 0 <= bad < len(events):
                outcome.rejected[events[bad].seq] = f"HEC code {code}: {text}"
                # Splunk indexed the events before the bad one; with acknowledgement we cannot know, so resend.
                retry_from = 0 if self.settings.ack else bad + 1
                outcome.retry.update(e.seq for e in events[retry_from:] if e.seq != events[bad].seq)
                outcome.note = f"HEC rejected event {bad} of the batch (code {code}: {text})"
                return
            self._bisect(events, envelopes, outcome, f"HEC code {code}: {text}")
            return
        raise TransientSinkError(f"HEC answered HTTP {status}, code {code}: {text}")

    def _bisect(self, events: list[SpooledEvent], envelopes: dict[int, bytes], outcome: SendOutcome,
                reason: str) -> None:
        """Split a batch HEC refused as a whole until the refused event is alone, then reject just that one."""
        if len(events) == 1:
            outcome.rejected[events[0].seq] = reason
            return
        middle = len(events) // 2
        self._send(events[:middle], envelopes, outcome)
        self._send(events[middle:], envelopes, outcome)

    def _envelope(self, event: SpooledEvent) -> bytes:
        attributes = meta(event)
        index, sourcetype = self.settings.index, self.settings.sourcetype
        for route in self.settings.routes:
            if route.matches(attributes):
                index = route.index or index
                sourcetype = route.sourcetype or sourcetype
                break
        envelope: dict[str, Any] = {
            "time": round(float(attributes.get("time", event.created)), 3),
            "host": self.settings.host or attributes.get("host", ""),
            "source": self.settings.source,
            "sourcetype": sourcetype,
            "fields": {name: attributes[name] for name in self.settings.indexed_fields if name in attributes},
        }
        if index:
            envelope["index"] = index
        return orjson.dumps(envelope)[:-1] + b',"event":' + (event.ecs or b"{}") + b"}"

    def _await_ack(self, ack_id: object) -> None:
        if not isinstance(ack_id, int):
            # accepted but unconfirmable: re-sending would duplicate what the receiver already has
            raise ConfigError(f"sinks: {self.name}: ack is true, but {self.base} accepted a batch without an ackId "
                              "(no indexer acknowledgement); set ack: false, or enable useACK on the token")
        deadline = time.monotonic() + self.settings.ack_timeout.total_seconds()
        while time.monotonic() < deadline:
            try:
                response = self.client.post(f"{self.base}/services/collector/ack",
                                            params={"channel": self.channel}, json={"acks": [ack_id]})
            except httpx.HTTPError as exc:
                raise TransientSinkError(f"HEC ack poll: {describe_error(exc)}") from None
            acks = _json(response).get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return
            if response.status_code != 200:
                raise TransientSinkError(f"HEC ack poll answered {response.status_code}: {response.text[:120]}")
            if self.stopping.wait(self.settings.ack_poll_interval.total_seconds()):
                raise TransientSinkError(f"stopping while waiting for ackId {ack_id}; the batch will be sent again")
        raise TransientSinkError(
            f"Splunk did not acknowledge ackId {ack_id} within {self.settings.ack_timeout.total_seconds():g}s; "
            "sending the batch again")

    def close(self) -> None:
        self.client.close()


def _verify(settings: SplunkHecSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    return ssl.create_default_context(cafile=str(settings.ca_bundle) if settings.ca_bundle else None)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested deeper than any real reply
        return {}
    return value if isinstance(value, dict) else {}


SINK = SplunkHecSink
