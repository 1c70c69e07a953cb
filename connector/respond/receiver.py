"""The callback receiver: authenticate, bound, validate, deduplicate, then 202 once the job is durable.

Every request is checked in the order that costs an attacker most and us least: Content-Type (415), a body read
under a size limit and a time limit (413, 408: uvicorn has neither), the source's credentials (401), its client
network (403), its rate (429 with Retry-After), then its body against the source's strict model (400 with the
reason). Only then is a job committed to the action queue; the playbook work happens off the request.

Neither SIEM signs its webhooks, so each source has its own secret and method (respond/settings.py). A retry of an
accepted callback (same deduplication key) answers 200 ``duplicate`` and enqueues nothing, so the sender stops
retrying and nothing runs twice. Every outcome, accepted or rejected, becomes an audit record; bodies and secrets
are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import html
import ipaddress
import logging
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any

import uvicorn
from pydantic import BaseModel, ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connector.core import metrics
from connector.core.audit import Auditor, AuditRecord, Outcome
from connector.core.clock import utc_now
from connector.core.errors import ConnectorError, format_validation_error
from connector.respond.approvals import APPROVALS_PATH, ApprovalRefused, ApprovalSigner
from connector.respond.callbacks import (
    ActionRequest,
    Feedback,
    KibanaWebhook,
    SplunkAlertAction,
    SplunkWebhook,
)
from connector.respond.queue import ActionQueue, JobState, QueueError
from connector.respond.settings import AuthMethod, RespondConfig, SourceConfig, SourceKind

log = logging.getLogger(__name__)

PLAN_ACTION = "playbooks.plan"  # the job the receiver leaves for the playbook engine


class Rejected(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class Endpoint:
    """What one path accepts: which sources may call it, how they authenticate, and the body they send."""

    path: str
    kind: SourceKind
    methods: frozenset[AuthMethod]
    model: type[BaseModel]


ENDPOINTS = (
    Endpoint("/v1/callbacks/splunk", SourceKind.SPLUNK, frozenset({AuthMethod.SIGNATURE}), SplunkAlertAction),
    Endpoint("/v1/callbacks/splunk/{token}", SourceKind.SPLUNK, frozenset({AuthMethod.URL_TOKEN}), SplunkWebhook),
    Endpoint("/v1/callbacks/elastic", SourceKind.ELASTIC,
             frozenset({AuthMethod.BEARER, AuthMethod.BASIC, AuthMethod.MTLS, AuthMethod.SIGNATURE}), KibanaWebhook),
    Endpoint("/v1/actions", SourceKind.SOAR, frozenset({AuthMethod.SIGNATURE}), ActionRequest),
    Endpoint("/v1/feedback", SourceKind.FEEDBACK, frozenset({AuthMethod.SIGNATURE}), Feedback),
)


class _TokenBucket:
    """``rate`` per second with a burst of ten seconds' worth: a storm is cut, a busy minute is not."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = rate * 10
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def take(self) -> float:
        """0 when allowed, else the seconds until a token is free."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def build_app(config: RespondConfig, queue: ActionQueue, auditor: Auditor,
              clock: Callable[[], float] = time.monotonic) -> Starlette:
    receiver = _Receiver(config, queue, auditor, clock)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            await run_in_threadpool(queue.pending_count)
        except QueueError as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, 503)
        return JSONResponse({"status": "ready"})

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    routes = [Route(endpoint.path, receiver.handler(endpoint), methods=["POST"]) for endpoint in ENDPOINTS]
    routes += [Route("/healthz", healthz), Route("/readyz", readyz), Route("/openapi.json", openapi)]
    if config.approvals is not None:
        approvals = _Approvals(ApprovalSigner(config.approvals, config.approval_ttl), queue, receiver)
        routes.append(Route(APPROVALS_PATH, approvals.answer, methods=["GET", "POST"]))
    return Starlette(routes=routes)


# The approval page is a button on a security decision: never framed (clickjacking), cached or sent as a referrer
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                 "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff"}


class _Approvals:
    """GET shows what a signed link would approve; POST (the page's button) approves it."""

    def __init__(self, signer: ApprovalSigner, queue: ActionQueue, receiver: _Receiver) -> None:
        self.signer = signer
        self.queue = queue
        self.receiver = receiver

    async def answer(self, request: Request) -> Response:
        query = request.query_params
        run = query.get("run", "")
        details = {"endpoint": APPROVALS_PATH, "run": run, "client": request.client.host if request.client else None}
        try:
            self.signer.verify(run, query.get("t", ""), query.get("sig", ""), utc_now())
        except ApprovalRefused as refused:
            await self.receiver.audit(AuditRecord("approval-rejected", Outcome.FAILURE, refused.reason,
                                                   {**details, "status": refused.status}))
            return _page(refused.status, "Not approved", refused.reason)
        waiting = [job for job in await run_in_threadpool(self.queue.jobs, JobState.AWAITING_APPROVAL)
                   if job.idempotency_key.startswith(run + ":")]
        if not waiting:
            return _page(404, "Nothing to approve", "No step of this run waits for approval: it was approved "
                                                    "already, or its approval expired.")
        steps = [f"{job.action} ({job.params.get('playbook')}, asset {job.params.get('asset')})" for job in waiting]
        if request.method == "GET":
            form = (f'<form method="post" action="{html.escape(str(request.url))}">'
                    f'<button type="submit">Approve {len(steps)} step(s)</button></form>')
            return _page(200, "Approve these steps?", "", steps, form)
        approved = await run_in_threadpool(self.queue.approve_run, run, self.signer.ttl)
        await self.receiver.audit(AuditRecord("approval-accepted", Outcome.SUCCESS,
                                               f"{len(approved)} step(s) approved by link",
                                               {**details, "status": 200, "jobs": approved}))
        metrics.CALLBACKS.labels("approval-link", "accepted").inc()
        return _page(200, "Approved", f"{len(approved)} step(s) approved; they run next.", steps)


def _page(status: int, title: str, text: str, items: list[str] | None = None, form: str = "") -> Response:
    listed = "".join(f"<li>{html.escape(item)}</li>" for item in items or [])
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p><ul>{listed}</ul>{form}</html>")
    return HTMLResponse(body, status, headers=_PAGE_HEADERS)


@dataclass(frozen=True)
class _Write:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    job: tuple[str, str, dict[str, Any]] | None = None
    record: AuditRecord | None = None


class _Writer:
    """The receiver's one writing thread: requests hand it their job and their audit record and await the batch
    they land in. One thread hop and one spool write per batch, instead of a threadpool hop per write, which
    under 50 concurrent senders cost more than the writes themselves (bench/respond.py)."""

    _BATCH = 512

    def __init__(self, queue: ActionQueue, auditor: Auditor) -> None:
        self.queue = queue
        self.auditor = auditor
        self._inbox: SimpleQueue[_Write] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    async def enqueue(self, key: str, action: str, params: dict[str, Any]) -> bool:
        """Whether the job is new, once it is committed; QueueError when the queue cannot take it."""
        return bool(await self._submit(job=(key, action, params)))

    async def audit(self, record: AuditRecord) -> None:
        """Once the record is in the spool, or its failure logged: the callback's answer does not depend on it."""
        await self._submit(record=record)

    async def _submit(self, **work: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._start()
        self._inbox.put(_Write(loop, future, **work))
        return await future

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_forever, name="receiver-writer", daemon=True)
                self._thread.start()

    def _write_forever(self) -> None:
        while True:
            batch = [self._inbox.get()]
            while len(batch) < self._BATCH:
                try:
                    batch.append(self._inbox.get_nowait())
                except Empty:
                    break
            settled: list[tuple[_Write, Any, BaseException | None]] = []
            jobs = [write for write in batch if write.job is not None]
            if jobs:
                try:
                    fresh = self.queue.enqueue_many([write.job for write in jobs if write.job is not None])
                    settled += [(write, new, None) for write, new in zip(jobs, fresh, strict=True)]
                except Exception as exc:  # handed to each request: QueueError answers 503
                    settled += [(write, None, exc) for write in jobs]
            records = [write.record for write in batch if write.record is not None]
            if records:
                try:
                    self.auditor.audit(records)
                except ConnectorError as exc:  # the spool is full or failing
                    log.error("%d audit record(s) could not be spooled: %s", len(records), exc)  # noqa: TRY400
                except Exception:
                    log.exception("%d audit record(s) could not be spooled", len(records))
                settled += [(write, None, None) for write in batch if write.record is not None]
            for loop in {write.loop for write in batch}:
                loop.call_soon_threadsafe(_settle, [item for item in settled if item[0].loop is loop])


def _settle(settled: list[tuple[_Write, Any, BaseException | None]]) -> None:
    for write, result, error in settled:
        if write.future.done():  # the request went away (the client disconnected, the server stops)
            continue
        if error is not None:
            write.future.set_exception(error)
        else:
            write.future.set_result(result)


class _Receiver:
    def __init__(self, config: RespondConfig, queue: ActionQueue, auditor: Auditor,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.queue = queue
        self.auditor = auditor
        self.writer = _Writer(queue, auditor)
        self.buckets = {source.name: _TokenBucket(source.rate_limit, clock) for source in config.sources}

    def handler(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def receive(request: Request) -> Response:
            with metrics.CALLBACK_SECONDS.time():
                return await answer(request)

        async def answer(request: Request) -> Response:
            client = request.client.host if request.client else None
            identified: list[SourceConfig] = []
            try:
                job_key, dedup_key, fresh = await self._accept(request, endpoint, identified)
            except Rejected as rejected:
                metrics.CALLBACKS.labels(identified[0].name if identified else "unknown", "rejected").inc()
                details = {"endpoint": endpoint.path, "status": rejected.status, "client": client,
                           "source": identified[0].name if identified else None}
                await self.audit(AuditRecord("callback-rejected", Outcome.FAILURE, rejected.reason, details))
                log.warning("callback to %s rejected (%d): %s", endpoint.path, rejected.status, rejected.reason)
                return JSONResponse({"error": rejected.reason}, rejected.status, headers=rejected.headers)
            status, action, outcome = (202, "callback-accepted", "accepted") if fresh else \
                (200, "callback-duplicate", "duplicate")
            details = {"endpoint": endpoint.path, "status": status, "client": client, "source": identified[0].name,
                       "dedup_key": dedup_key, "job": job_key}
            await self.audit(AuditRecord(action, Outcome.SUCCESS, outcome, details))
            metrics.CALLBACKS.labels(identified[0].name, outcome).inc()
            log.info("callback from %s %s (key %s)", identified[0].name, outcome, dedup_key)
            return JSONResponse({"status": outcome, "key": job_key}, status)

        return receive

    async def _accept(self, request: Request, endpoint: Endpoint,
                      identified: list[SourceConfig]) -> tuple[str, str, bool]:
        """The queued job's key, the callback's dedup key and whether it is new; ``identified`` gets the source
        as soon as it is known, so a later rejection is audited against it."""
        body = await _read_body(request, self.config)
        source = _authenticate(request, body, endpoint, self.config)
        identified.append(source)
        if source.allow_cidrs and not _client_allowed(request, source):
            # after the credentials, so only a caller who holds the secret learns that its network is the problem
            raise Rejected(403, f"client network is not allowed for source {source.name}")
        self._within_rate(source)
        payload = _parse(endpoint.model, body)
        dedup_key = _dedup_key(source, payload, request)
        job_key = f"callback:{source.name}:{dedup_key}"
        params = {"source": source.name, "kind": source.kind.value, "endpoint": endpoint.path,
                  "received": utc_now().isoformat(), "payload": payload.model_dump(mode="json")}
        try:
            fresh = await self.writer.enqueue(job_key, PLAN_ACTION, params)
        except QueueError as exc:
            log.error("callback from %s could not be queued: %s", source.name, exc)  # noqa: TRY400 - one line
            raise Rejected(503, "the action queue is unavailable; retry later", {"Retry-After": "5"}) from None
        return job_key, dedup_key, fresh

    async def audit(self, record: AuditRecord) -> None:
        """Durable like the job; a spool that cannot take it is logged, and does not turn an answer into a 500."""
        await self.writer.audit(record)

    def _within_rate(self, source: SourceConfig) -> None:
        wait = self.buckets[source.name].take()
        if wait:
            raise Rejected(429, f"source {source.name} is over its rate limit", {"Retry-After": str(math.ceil(wait))})


def server(app: Starlette, config: RespondConfig) -> uvicorn.Server:
    """uvicorn without its access log (a Splunk URL token travels in the path), with TLS and mTLS when set."""
    tls: dict[str, Any] = {}
    if config.tls is not None:
        tls = {"ssl_certfile": str(config.tls.cert), "ssl_keyfile": str(config.tls.key)}
        if config.tls.client_ca is not None:
            tls |= {"ssl_ca_certs": str(config.tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, access_log=False, log_config=None, lifespan="off",
        server_header=False, timeout_keep_alive=5, limit_concurrency=1000, **tls))


async def _read_body(request: Request, config: RespondConfig) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise Rejected(415, f"Content-Type must be application/json, not {media_type or 'absent'}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_body:
        raise Rejected(413, f"body of {declared} bytes is over the {config.max_body}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.read_timeout.total_seconds()):
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_body:
                    raise Rejected(413, f"body is over the {config.max_body}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise Rejected(408, f"body not received within {config.read_timeout.total_seconds():g} s") from None
    except ClientDisconnect:
        raise Rejected(400, "the client disconnected before the body was complete") from None
    return b"".join(chunks)


def _authenticate(request: Request, body: bytes, endpoint: Endpoint, config: RespondConfig) -> SourceConfig:
    """The first source of this endpoint whose credentials the request carries."""
    candidates = [s for s in config.sources if s.kind is endpoint.kind and s.auth in endpoint.methods]
    for source in candidates:
        if _credentials_match(source, request, body):
            return source
    if not candidates:
        raise Rejected(404, f"no source is configured for {endpoint.path}")
    raise Rejected(401, "missing, invalid or stale credentials")


def _credentials_match(source: SourceConfig, request: Request, body: bytes) -> bool:
    secret = source.secret.get_secret_value() if source.secret else ""
    match source.auth:
        case AuthMethod.SIGNATURE:
            try:
                Webhook(_webhook_key(secret)).verify(body, dict(request.headers), json_parse=False)
            except WebhookVerificationError:
                return False
            return True
        case AuthMethod.BEARER:
            scheme, _, presented = request.headers.get("authorization", "").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), secret.encode())
        case AuthMethod.BASIC:
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            try:
                user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return (scheme.lower() == "basic" and hmac.compare_digest(user.encode(), (source.username or "").encode())
                    and hmac.compare_digest(password.encode(), secret.encode()))
        case AuthMethod.URL_TOKEN:
            return hmac.compare_digest(str(request.path_params.get("token", "")).encode(), secret.encode())
        case AuthMethod.MTLS:
            return request.url.scheme == "https"  # uvicorn requires and verifies the client certificate


def _webhook_key(secret: str) -> str | bytes:
    """A ``whsec_`` key as the spec gives it, or any other string taken as raw key bytes."""
    return secret if secret.startswith("whsec_") else secret.encode()


def _client_allowed(request: Request, source: SourceConfig) -> bool:
    try:
        address = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return False
    return any(address in network for network in source.allow_cidrs)


def _parse(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise Rejected(400, f"invalid body: {format_validation_error(exc)}"[:1000]) from None


def _dedup_key(source: SourceConfig, payload: BaseModel, request: Request) -> str:
    if source.auth is AuthMethod.SIGNATURE:
        return request.headers["webhook-id"]
    if isinstance(payload, SplunkWebhook | KibanaWebhook):
        return payload.dedup_key()
    raise Rejected(400, f"source {source.name} cannot be deduplicated: sign its callbacks (auth: signature)")


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 from the same pydantic models that validate the bodies, so the two cannot disagree."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    errors = {str(code): {"description": text, "content": error}
              for code, text in ((400, "invalid body"), (401, "bad credentials"), (403, "client network not allowed"),
                                 (404, "no source for this endpoint"), (408, "body too slow"), (413, "body too large"),
                                 (415, "not JSON"), (429, "over the rate limit"), (503, "queue unavailable"))}
    for endpoint in ENDPOINTS:
        schema = endpoint.model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[endpoint.model.__name__] = schema
        parameters = ([{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}]
                      if "{token}" in endpoint.path else [])
        paths[endpoint.path] = {"post": {
            "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{endpoint.model.__name__}"}}}},
            "responses": {"202": {"description": "accepted and queued", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Accepted"}}}},
                "200": {"description": "a retry of a callback already received", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Accepted"}}}}, **errors},
        }}
    for path, description in (("/healthz", "the process is up"), ("/readyz", "the action queue can be written")):
        paths[path] = {"get": {"responses": {"200": {"description": description,
                                                     "content": {"application/json": {"schema": {"type": "object"}}}},
                                             "503": {"description": "not ready",
                                                     "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    page = {"text/html": {"schema": {"type": "string"}}}
    link = [{"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
            for name in ("run", "t", "sig")]
    answers = {"200": {"description": "the steps the link approves (GET) or approved (POST)", "content": page},
               "403": {"description": "altered or forged link", "content": page},
               "404": {"description": "nothing waits for approval", "content": page},
               "410": {"description": "expired link", "content": page}}
    paths[APPROVALS_PATH] = {  # served when respond.approvals is set
        "get": {"parameters": link, "responses": answers}, "post": {"parameters": link, "responses": answers}}
    schemas["Accepted"] = {"type": "object", "required": ["status", "key"],
                           "properties": {"status": {"enum": ["accepted", "duplicate"]}, "key": {"type": "string"}}}
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    return {"openapi": "3.1.0", "info": {"title": "Postern callback receiver", "version": "1"},
            "paths": paths, "components": {"schemas": schemas}}
