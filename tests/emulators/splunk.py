"""A strict Splunk emulator: the HTTP Event Collector (HEC) and the management REST API, on 127.0.0.1.

Why it exists: Splunk cannot be installed where the tests run, yet the connector has to be tested against what
Splunk really does on the wire. So this emulator answers the way the public documentation says Splunk answers:
it authenticates, parses a HEC body exactly as Splunk does (concatenated JSON objects, not an array), indexes the
events before the first bad one, and replies with the real HTTP status and HEC reply code. The management port is
driven only through splunklib (login, indexes, HEC inputs, oneshot searches), so it answers with the Atom XML and
JSON shapes splunklib's parsers expect. Faults (busy servers, dropped connections, proxies answering garbage,
lost acknowledgements, an outage) can be injected so failure handling is tested too.

Sources, cited in comments by tag:

- [HEC-EP]   help.splunk.com ... "HTTP Event Collector REST API endpoints"
- [HEC-FMT]  docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector
- [HEC-CODES] docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector, restated in
             gjanders/SplunkAdmins lookups/splunkadmins_hec_reply_code_lookup.csv (codes 0-20 with texts)
- [HEC-ACK]  docs.splunk.com/Documentation/Splunk/latest/Data/AboutHECIDXAck
- [HEC-TOK]  docs.splunk.com/Documentation/Splunk/latest/Data/HTTPEventCollectortokenmanagement (data/inputs/http)
- [LIMITS]   limits.conf [http_input] max_content_length, 800 MiB since 6.5.0
- [TF]       splunk/terraform-provider-splunk client/http_event_collector.go: a recorded data/inputs/http reply
- [SDK]      splunklib 2.1.1 binding.py, client.py, data.py, results.py: what the SDK sends and how it parses replies
- [3P]       the tests of a third-party HEC receiver in the public code index (splunkd's HTML error pages for 413,
             415 and bad gzip). This is an inference from someone else's observations, not Splunk documentation.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import math
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape, quoteattr

__all__ = ["RecordedRequest", "SplunkEmulator", "SplunkSearchError"]

SPLUNK_VERSION = "9.4.1"  # >= 9.0.2, so splunklib uses the search/v2/jobs endpoints [SDK client.py disable_v2_api]
SPLUNK_BUILD = "e3bdab203ac8"
SERVER_NAME = "splunk-emulator"
DEFAULT_INPUT = "default"  # name of the HEC input that holds the constructor's token
JSON_CT = "application/json; charset=UTF-8"
XML_CT = "text/xml; charset=utf-8"
HTML_CT = "text/html; charset=UTF-8"
ATOM_NS = "http://www.w3.org/2005/Atom"
REST_NS = "http://dev.splunk.com/ns/rest"
OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"
MAX_DRAIN = 64 * 1024 * 1024  # past this, an oversized body is not read to the end: the connection is closed
MANAGEMENT_BODY_LIMIT = 800 * 1024 * 1024  # max_content_length is HEC's [http_input] limit, not the REST API's

_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_NUMERIC = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Splunk docs: index names are lowercase letters, digits, "_" and "-", not starting with "_" or "-".
_INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

_HEC_PATHS = {
    "/services/collector": "event",
    "/services/collector/event": "event",
    "/services/collector/event/1.0": "event",
    "/services/collector/raw": "raw",
    "/services/collector/raw/1.0": "raw",
    "/services/collector/health": "health",
    "/services/collector/health/1.0": "health",
    "/services/collector/ack": "ack",
}


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; Python's parser accepts them, Splunk's does not."""
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the HEC port received. ``path`` is the request target (with its query string); ``headers`` has
    lowercased names; ``body`` is what was sent, gunzipped when it was a valid gzip body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class SplunkSearchError(ValueError):
    """SPL the emulator cannot evaluate (or that Splunk itself rejects). Never answered with empty results."""


class _Reply(Exception):
    """A complete HTTP answer, raised from deep inside request handling."""

    def __init__(self, status: int, body: bytes, content_type: str = JSON_CT,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


def _hec_reply(status: int, code: int, text: str, **extra: Any) -> _Reply:
    """A HEC JSON answer: ``{"text": ..., "code": ...}`` plus e.g. ``invalid-event-number`` [HEC-CODES]."""
    payload: dict[str, Any] = {"text": text, "code": code}
    for key, value in extra.items():
        payload[key.replace("_", "-")] = value
    return _Reply(status, _dumps(payload).encode())


def _bad_event(code: int, text: str, number: int) -> _Reply:
    return _hec_reply(400, code, text, invalid_event_number=number)


def _html_error(status: int, title: str, detail: str) -> _Reply:
    """splunkd's own HTML error page, used below the HEC handler (body size, content coding) [3P]."""
    body = (f'<!doctype html><html><head><meta http-equiv="content-type" content="text/html; charset=UTF-8">'
            f"<title>{status} {escape(title)}</title></head><body><h1>{escape(title)}</h1><p>{escape(detail)}</p>"
            "</body></html>\r\n")
    return _Reply(status, body.encode(), HTML_CT)


def _messages_xml(kind: str, text: str) -> bytes:
    """splunkd's REST error body, the one splunklib's ``HTTPError`` reads ``./messages/msg`` from [SDK]."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
            f"    <msg type={quoteattr(kind)}>{escape(text)}</msg>\n  </messages>\n</response>\n").encode()


def _rest_error(status: int, text: str, kind: str = "ERROR", output_mode: str = "xml") -> _Reply:
    if output_mode == "json":
        return _Reply(status, _dumps({"messages": [{"type": kind, "text": text}]}).encode(), JSON_CT)
    return _Reply(status, _messages_xml(kind, text), XML_CT)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")


# --------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """A threading HTTP(S) server that can drop every open connection, so ``down()`` is a real outage."""

    daemon_threads = True
    allow_reuse_address = True  # ``up()`` listens again on the same port at once

    def __init__(self, port: int, handler: type[_Handler], emulator: SplunkEmulator,
                 tls: ssl.SSLContext | None, kind: str) -> None:
        self.emulator = emulator
        self.tls = tls
        self.kind = kind
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = request
        if self.tls is not None:
            # The handshake runs in the worker thread, so a client that stalls mid-handshake stalls only itself.
            request.settimeout(10)
            try:
                connection = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            connection.settimeout(None)
        with self._connections_lock:
            self.connections.add(connection)
        try:
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            with self._connections_lock:
                self.connections.discard(connection)
            if connection is not request:
                _hard_close(connection)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self.connections)
        for connection in connections:
            _hard_close(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-request are expected (drop_next, down)


def _hard_close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        connection.close()


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every method goes to the emulator's HEC or management dispatcher."""

    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes: without this, 40 ms per answer

    def version_string(self) -> str:
        return "Splunkd"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        if self.server.kind == "hec":
            emulator._handle_hec(self, method)
        else:
            emulator._handle_management(self, method)

    def read_body(self, limit: int) -> tuple[bytes, int | None]:
        """The request body, and the size it reached when it is larger than ``limit`` (the body is then empty).

        An oversized body is still read (up to ``MAX_DRAIN``) so the answer reaches the client instead of a reset.
        Raises ValueError for a malformed Content-Length or chunk header.
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b"", None
        length = int(length_header)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length <= limit:
            return self.rfile.read(length), None
        if length > MAX_DRAIN:
            self.close_connection = True
            return b"", length
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
        return b"", length

    def _read_chunked(self, limit: int) -> tuple[bytes, int | None]:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            data = self.rfile.read(size)
            self.rfile.readline()
            total += size
            if total <= limit:
                parts.append(data)
            elif total > MAX_DRAIN:
                self.close_connection = True
                return b"", total
            else:
                parts.clear()
        return (b"".join(parts), None) if total <= limit else (b"", total)

    def send(self, reply: _Reply, extra_headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in (*reply.headers, *extra_headers):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def drop(self) -> None:
        """Hang up without answering, as a crashed server or a cut network path would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------------------


class SplunkEmulator:
    """Splunk's HEC and management ports on 127.0.0.1 (ephemeral ports), as a context manager.

    Construction: ``token`` is the HEC token of the preconfigured input "default", which may write to
    ``indexes`` (all of which exist) and defaults to ``default_index``; ``ack`` turns on useACK for it; ``tls``
    is the server context for both ports (plain HTTP without it); ``username``/``password`` log in to the
    management port, and ``bearer_token`` (off by default) is accepted as ``Authorization: Bearer``;
    ``max_content_length`` is HEC's body limit (limits.conf [http_input]).

    State: ``events`` holds every indexed event in order as ``{"index", "host", "source", "sourcetype", "time",
    "fields", "event", "channel"}``; ``requests`` every request the HEC port received; ``indexes`` and
    ``hec_inputs`` what the management API sees and changes; ``internal_errors`` any emulator bug (answered 500).

    Faults: ``fail_next``, ``drop_next`` and ``garbage_next`` apply to the next HEC event/raw POSTs in FIFO
    order; ``delay`` slows every HEC POST; ``healthy=False`` makes the health endpoint answer 503 code 18;
    ``down()``/``up()`` stop and restart listening on the same port; ``ack_after`` and ``lose_acks()`` control
    when ackIds turn true.
    """

    def __init__(self, *, token: str = "11111111-2222-3333-4444-555555555555",
                 tls: ssl.SSLContext | None = None,
                 ack: bool = False,
                 indexes: Iterable[str] = ("main",),
                 default_index: str = "main",
                 username: str = "admin", password: str = "changeme-please",
                 max_content_length: int = 800 * 1024 * 1024,
                 bearer_token: str | None = None) -> None:
        index_names = list(dict.fromkeys(indexes))
        if default_index not in index_names:
            raise ValueError(f"default_index {default_index!r} is not one of the indexes {index_names}")
        if not token:
            raise ValueError("the HEC token cannot be empty")
        self.token = token
        self.username = username
        self.password = password
        self.bearer_token = bearer_token
        self.max_content_length = max_content_length
        self._tls = tls
        self._lock = threading.RLock()

        self.events: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.internal_errors: list[BaseException] = []  # emulator bugs, answered 500 code 8; tests may assert empty
        self.delay = 0.0
        self.healthy = True
        self.ack_after = 0.0
        self._faults: deque[list[Any]] = deque()  # [kind, remaining, *args]
        self._acks: dict[str, dict[int, float]] = {}  # channel -> ackId -> monotonic time it becomes true
        self._next_ack: dict[str, int] = {}
        self._acks_lost = False

        self.indexes: dict[str, dict[str, Any]] = {name: self._index_settings(name, {}) for name in index_names}
        self._index_apps: dict[str, str] = dict.fromkeys(index_names, "system")
        self.hec_inputs: dict[str, dict[str, Any]] = {
            DEFAULT_INPUT: {"token": token, "index": default_index, "indexes": index_names, "sourcetype": None,
                            "source": None, "host": None, "useACK": ack, "disabled": False, "description": ""},
        }
        self._sessions: dict[str, str] = {}

        self._servers: dict[str, _Server | None] = {"hec": None, "management": None}
        self._ports: dict[str, int] = {"hec": 0, "management": 0}

    # ----- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> SplunkEmulator:
        self._listen("hec")
        self._listen("management")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for kind in ("hec", "management"):
            self._stop(kind)
        if exc_type is None and self.internal_errors:  # a bug the client's retries would otherwise hide
            raise AssertionError(f"the Splunk emulator failed internally: {self.internal_errors!r}")

    def _listen(self, kind: str) -> None:
        server = _Server(self._ports[kind], _Handler, self, self._tls, kind)
        self._ports[kind] = server.server_address[1]
        self._servers[kind] = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True,
                         name=f"splunk-emulator-{kind}").start()

    def _stop(self, kind: str) -> None:
        server = self._servers[kind]
        if server is None:
            return
        self._servers[kind] = None
        server.shutdown()
        server.server_close()
        server.drop_connections()

    def down(self, *, management: bool = False) -> None:
        """Stop listening on the HEC port and cut its open connections (and the management port's too, if asked)."""
        self._stop("hec")
        if management:
            self._stop("management")

    def up(self) -> None:
        """Listen again, on the same port(s) as before."""
        for kind in ("hec", "management"):
            if self._servers[kind] is None:
                self._listen(kind)

    @property
    def hec_port(self) -> int:
        return self._ports["hec"]

    @property
    def mgmt_port(self) -> int:
        return self._ports["management"]

    @property
    def hec_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.hec_port}"

    @property
    def mgmt_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.mgmt_port}"

    # ----- fault injection and acknowledgement control -----------------------------------------------------

    def fail_next(self, times: int, status: int, code: int, text: str, retry_after: int | None = None) -> None:
        """Answer the next ``times`` event/raw POSTs with ``status`` and ``{"text": text, "code": code}``, and a
        ``Retry-After`` header when given (as a load balancer in front of HEC sends with 429 or 503)."""
        self._queue_fault("fail", times, status, code, text, retry_after)

    def drop_next(self, times: int) -> None:
        """Read the next ``times`` event/raw POSTs, then hang up without any answer."""
        self._queue_fault("drop", times)

    def garbage_next(self, times: int) -> None:
        """Answer the next ``times`` event/raw POSTs 200 with an HTML body, as a misbehaving proxy would."""
        self._queue_fault("garbage", times)

    def pending_faults(self) -> int:
        """Injected faults not yet served: 0 once a test's faults have all happened."""
        with self._lock:
            return sum(fault[1] for fault in self._faults)

    def _queue_fault(self, kind: str, times: int, *args: Any) -> None:
        if times > 0:
            with self._lock:
                self._faults.append([kind, times, *args])

    def _take_fault(self) -> list[Any] | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault[1] -= 1
            if fault[1] <= 0:
                self._faults.popleft()
            return fault

    def lose_acks(self) -> None:
        """Every ackId not yet acknowledged, and every one issued from now on, stays false forever."""
        now = time.monotonic()
        with self._lock:
            self._acks_lost = True
            for acks in self._acks.values():
                for ack_id, ready in acks.items():
                    if ready > now:
                        acks[ack_id] = math.inf

    def event_ids(self) -> list[str]:
        """``event.id`` of every indexed event (our ECS documents), in arrival order, duplicates kept."""
        with self._lock:
            return [event["event"]["event"]["id"] for event in self.events]

    def acked(self, channel: str) -> set[int]:
        """The ackIds of ``channel`` that a query would report true now."""
        now = time.monotonic()
        with self._lock:
            return {ack_id for ack_id, ready in self._acks.get(channel, {}).items() if ready <= now}

    # ----- HEC --------------------------------------------------------------------------------------------

    def _handle_hec(self, handler: _Handler, method: str) -> None:
        target = handler.path
        path, _, query = target.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            raw, oversize = handler.read_body(self.max_content_length)
        except ValueError:
            handler.close_connection = True
            handler.send(_html_error(400, "Malformed request body framing", "HTTP Request was malformed."))
            return
        body, decode_error = self._decode_body(headers, raw)
        with self._lock:
            self.requests.append(RecordedRequest(method, target, headers, body if decode_error is None else raw))

        kind = _HEC_PATHS.get(path)
        if method == "POST" and self.delay > 0:
            time.sleep(self.delay)
        if kind in ("event", "raw") and method == "POST":
            fault = self._take_fault()
            if fault is not None:
                self._apply_fault(handler, fault)
                return
        try:
            reply = self._hec_route(kind, method, path, params, headers, body, oversize, decode_error,
                                    handler.client_address[0])
        except _Reply as answer:
            reply = answer
        except Exception as exc:  # an emulator bug: answer like splunkd's internal error, and keep it for the test
            with self._lock:
                self.internal_errors.append(exc)
            reply = _hec_reply(500, 8, "Internal server error")
        handler.send(reply, (("X-Content-Type-Options", "nosniff"), ("Vary", "Authorization")))

    def _apply_fault(self, handler: _Handler, fault: list[Any]) -> None:
        kind = fault[0]
        if kind == "drop":
            handler.drop()
        elif kind == "garbage":
            handler.send(_Reply(200, b"<html>proxy error</html>", "text/html"))
        else:
            _, _, status, code, text, retry_after = fault
            headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
            handler.send(_hec_reply(status, code, text), headers)

    def _decode_body(self, headers: dict[str, str], raw: bytes) -> tuple[bytes, _Reply | None]:
        """gzip is the only content coding HEC accepts; deflate is refused (splunk-connect-for-syslog PR #2254)."""
        coding = headers.get("content-encoding", "").strip().lower()
        if coding in ("", "identity"):
            return raw, None
        if coding != "gzip":
            # 415 with splunkd's HTML page [3P]; the docs only say deflate is not supported.
            return raw, _html_error(415, "Unsupported Media Type",
                                    "The requested URL does not support the media type sent.")
        try:
            return gzip.decompress(raw), None
        except (OSError, EOFError, zlib.error):
            return raw, _html_error(400, "Unparsable gzip header in request data", "HTTP Request was malformed.")

    def _hec_route(self, kind: str | None, method: str, path: str, params: dict[str, str],
                   headers: dict[str, str], body: bytes, oversize: int | None, decode_error: _Reply | None,
                   client: str) -> _Reply:
        not_found = _hec_reply(404, 404, "The requested URL was not found on this server.")
        if kind is None:
            raise not_found
        if kind == "health":
            if method not in ("GET", "HEAD"):
                raise not_found
            if self.healthy:
                return _hec_reply(200, 17, "HEC is healthy")
            return _hec_reply(503, 18, "HEC is unhealthy, queues are full")
        if method != "POST":
            raise not_found
        if oversize is not None:
            # splunkd refuses a body over [http_input] max_content_length before any HEC processing [LIMITS]
            raise _html_error(413, f"Content-Length of {oversize} too large (maximum is {self.max_content_length})",
                              "The request your client sent was too large.")
        hec_input = self._authenticate_hec(headers, params)
        if decode_error is not None:
            raise decode_error
        channel = headers.get("x-splunk-request-channel") or params.get("channel") or None
        if channel is not None and not _GUID.fullmatch(channel):
            raise _hec_reply(400, 11, "Invalid data channel")
        name, settings = hec_input
        if kind == "ack":
            return self._hec_ack(settings, channel, body)
        # [HEC-ACK]: with useACK every data request needs a channel. [HEC-FMT]: raw requests always need one.
        if channel is None and (settings["useACK"] or kind == "raw"):
            raise _hec_reply(400, 10, "Data channel is missing")
        defaults = self._request_defaults(name, settings, params, client)
        if kind == "raw":
            records = self._parse_raw(body, defaults, settings, channel)
        else:
            records = self._parse_events(body, defaults, settings, channel)
        return self._commit(records, settings, channel)

    def _authenticate_hec(self, headers: dict[str, str], params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """Token checks in Splunk's order: query-string token, header missing, header malformed, unknown, disabled."""
        if "token" in params:
            raise _hec_reply(400, 16, "Query string authorization is not enabled")  # allowQueryStringAuth=false
        authorization = headers.get("authorization", "").strip()
        if not authorization:
            raise _hec_reply(401, 2, "Token is required")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "splunk":
            token = credential
        elif scheme.lower() == "basic":
            # [HEC-FMT] basic authentication: any user name, the token as the password
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                raise _hec_reply(401, 3, "Invalid authorization") from None
            _user, colon, token = decoded.partition(":")
            if not colon:
                raise _hec_reply(401, 3, "Invalid authorization")
        else:
            raise _hec_reply(401, 3, "Invalid authorization")
        if not token:
            raise _hec_reply(401, 3, "Invalid authorization")
        with self._lock:
            found = next(((name, settings) for name, settings in self.hec_inputs.items()
                          if settings["token"] == token), None)
        if found is None:
            raise _hec_reply(403, 4, "Invalid token")
        if found[1]["disabled"]:
            raise _hec_reply(403, 1, "Token disabled")
        return found

    def _request_defaults(self, name: str, settings: dict[str, Any], params: dict[str, str],
                          client: str) -> dict[str, Any]:
        """Metadata for events that do not set their own: query string first, then the token, then Splunk's own."""
        time_value: float | None = None
        if "time" in params:
            time_value = _parse_time(params["time"])
            if time_value is None:
                raise _hec_reply(400, 6, "Invalid data format")
        return {
            "index": params.get("index") or settings["index"] or "main",
            "host": params.get("host") or settings["host"] or client,
            "source": params.get("source") or settings["source"] or f"http:{name}",
            "sourcetype": params.get("sourcetype") or settings["sourcetype"] or "httpevent",  # [HEC-FMT] default
            "time": time_value,
        }

    def _index_allowed(self, settings: dict[str, Any], index: str) -> bool:
        """The index must exist, and be in the token's allowed list when it has one [HEC-TOK]."""
        existing = self.indexes.get(index)
        if existing is None or existing.get("disabled"):
            return False
        allowed = settings["indexes"]
        return not allowed or index in allowed

    def _parse_events(self, body: bytes, defaults: dict[str, Any], settings: dict[str, Any],
                      channel: str | None) -> list[dict[str, Any]]:
        """Parse a body of JSON objects concatenated with optional whitespace [HEC-FMT] (not a JSON array).

        Splunk indexes the objects before the first bad one and names the bad one (0-based) in
        ``invalid-event-number``; so do we, by committing the good prefix before re-raising.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            if not body.strip():
                raise _hec_reply(400, 5, "No data") from None
            raise _bad_event(6, "Invalid data format", 0) from None
        end = len(text)
        position = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
        if position >= end:
            raise _hec_reply(400, 5, "No data")
        records: list[dict[str, Any]] = []
        number = 0
        now = time.time()
        try:
            while position < end:
                try:
                    value, position = _DECODER.raw_decode(text, position)
                except ValueError:
                    raise _bad_event(6, "Invalid data format", number) from None
                records.append(self._envelope(value, number, defaults, settings, channel, now))
                number += 1
                position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        except _Reply:
            if records:
                self._commit(records, settings, channel, acknowledge=False)
            raise
        return records

    def _envelope(self, value: Any, number: int, defaults: dict[str, Any], settings: dict[str, Any],
                  channel: str | None, now: float) -> dict[str, Any]:
        """Validate one envelope in the order of the reply codes the docs list, and build the indexed record."""
        if not isinstance(value, dict):
            raise _bad_event(6, "Invalid data format", number)
        if "event" not in value:
            raise _bad_event(12, "Event field is required", number)
        event = value["event"]
        if event is None or event in ("", {}, []) or (isinstance(event, str) and not event.strip()):
            raise _bad_event(13, "Event field cannot be blank", number)
        record: dict[str, Any] = {}
        for key in ("index", "host", "source", "sourcetype"):
            given = value.get(key)
            if given is None or given == "":
                record[key] = defaults[key]  # inferred: an empty value falls back to the default
            elif isinstance(given, str):
                record[key] = given
            else:
                raise _bad_event(6, "Invalid data format", number)
        if not self._index_allowed(settings, record["index"]):
            raise _bad_event(7, "Incorrect index", number)
        fields = value.get("fields")
        if fields is None:
            record_fields: dict[str, Any] = {}
        elif _valid_indexed_fields(fields):
            record_fields = dict(fields)
        else:
            raise _bad_event(15, "Error in handling indexed fields", number)
        if "time" in value:
            event_time = _parse_time(value["time"])
            if event_time is None:
                raise _bad_event(6, "Invalid data format", number)
        else:
            event_time = defaults["time"] if defaults["time"] is not None else now
        record["time"] = event_time
        record["fields"] = record_fields
        record["event"] = event
        record["channel"] = channel
        return record

    def _parse_raw(self, body: bytes, defaults: dict[str, Any], settings: dict[str, Any],
                   channel: str | None) -> list[dict[str, Any]]:
        """Raw text, one event per line; metadata only from the query string [HEC-EP]."""
        text = body.decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise _hec_reply(400, 5, "No data")
        if not self._index_allowed(settings, defaults["index"]):
            raise _hec_reply(400, 7, "Incorrect index")
        event_time = defaults["time"] if defaults["time"] is not None else time.time()
        base = {"index": defaults["index"], "host": defaults["host"], "source": defaults["source"],
                "sourcetype": defaults["sourcetype"], "time": event_time, "channel": channel}
        return [{**base, "fields": {}, "event": line} for line in lines]

    def _commit(self, records: list[dict[str, Any]], settings: dict[str, Any], channel: str | None,
                *, acknowledge: bool = True) -> _Reply:
        """Index the records and, for a useACK token, issue the channel's next ackId (0, 1, 2, ...)."""
        with self._lock:
            self.events.extend(records)
            if not (acknowledge and settings["useACK"] and channel is not None):
                return _hec_reply(200, 0, "Success")
            ack_id = self._next_ack.get(channel, 0)
            self._next_ack[channel] = ack_id + 1
            ready = math.inf if self._acks_lost else time.monotonic() + max(self.ack_after, 0.0)
            self._acks.setdefault(channel, {})[ack_id] = ready
        return _hec_reply(200, 0, "Success", ackId=ack_id)

    def _hec_ack(self, settings: dict[str, Any], channel: str | None, body: bytes) -> _Reply:
        """``{"acks": [0, 1]}`` -> ``{"acks": {"0": true, "1": false}}`` [HEC-ACK]."""
        if not settings["useACK"]:
            raise _hec_reply(400, 14, "ACK is disabled")
        if channel is None:
            raise _hec_reply(400, 10, "Data channel is missing")
        try:
            request = json.loads(body)
        except ValueError:
            raise _hec_reply(400, 6, "Invalid data format") from None
        acks = request.get("acks") if isinstance(request, dict) else None
        if not isinstance(acks, list) or not all(
                isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in acks):
            raise _hec_reply(400, 6, "Invalid data format")
        now = time.monotonic()
        with self._lock:
            known = self._acks.get(channel, {})
            status = {str(item): known.get(item, math.inf) <= now for item in acks}
        return _Reply(200, _dumps({"acks": status}).encode())

    # ----- management port ------------------------------------------------------------------------------------

    def _handle_management(self, handler: _Handler, method: str) -> None:
        headers: list[tuple[str, str]] = []
        try:
            try:
                raw, oversize = handler.read_body(MANAGEMENT_BODY_LIMIT)
            except ValueError:
                handler.close_connection = True
                raise _rest_error(400, "Malformed request body") from None
            if oversize is not None:
                raise _rest_error(413, "Request body too large")
            reply = self._management_route(handler, method, raw, headers)
        except _Reply as answer:
            reply = answer
        except Exception as exc:
            with self._lock:
                self.internal_errors.append(exc)
            reply = _rest_error(500, f"Internal error in the Splunk emulator: {exc!r}")
        handler.send(reply, headers)

    def _management_route(self, handler: _Handler, method: str, raw: bytes,
                          out_headers: list[tuple[str, str]]) -> _Reply:
        split = urlsplit(handler.path)
        segments = [unquote(part) for part in split.path.split("/")[1:]]
        while segments and segments[-1] == "":
            segments.pop()
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            params.setdefault(key, []).append(value)
        if method in ("POST", "PUT") and raw:
            for key, value in parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True):
                params.setdefault(key, []).append(value)
        flat = {key: values[-1] for key, values in params.items()}
        output_mode = flat.get("output_mode", "xml").lower()

        # /services/<path> or /servicesNS/<owner>/<app>/<path>: the namespace does not change what we serve
        if segments[:1] == ["services"]:
            rest = segments[1:]
        elif segments[:1] == ["servicesNS"] and len(segments) >= 3:
            rest = segments[3:]
        else:
            raise _rest_error(404, "Not Found", output_mode=output_mode)

        if rest == ["auth", "login"]:
            if method != "POST":
                raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
            return self._login(flat, output_mode, out_headers)
        self._authenticate_management(handler)

        if rest == ["server", "info"] and method in ("GET", "HEAD"):
            return self._feed("server-info", "/services/server/info", [self._info_entry()], output_mode)
        if rest[:2] == ["data", "indexes"]:
            return self._route_indexes(method, rest[2:], flat, output_mode)
        if rest[:2] == ["data", "inputs"]:
            return self._route_inputs(method, rest[2:], flat, params, output_mode)
        if rest in (["search", "jobs"], ["search", "v2", "jobs"]):
            if method != "POST":
                raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
            return self._search_job(flat, output_mode)
        raise _rest_error(404, "Not Found", output_mode=output_mode)

    def _login(self, params: dict[str, str], output_mode: str, out_headers: list[tuple[str, str]]) -> _Reply:
        """POST auth/login: the session key splunklib reads from ``./sessionKey`` [SDK binding.login]."""
        if params.get("username") != self.username or params.get("password") != self.password:
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
                    '    <msg type="WARN" code="incorrect_username_or_password">Login failed</msg>\n'
                    "  </messages>\n</response>\n")
            if output_mode == "json":
                raise _Reply(401, _dumps({"messages": [{"type": "WARN", "code": "incorrect_username_or_password",
                                                        "text": "Login failed"}]}).encode())
            raise _Reply(401, body.encode(), XML_CT)
        key = secrets.token_urlsafe(48)
        with self._lock:
            self._sessions[key] = self.username
        if _truthy(params.get("cookie", "0")):
            # Splunk 6.2+ answers cookie=1 with a splunkd_<port> session cookie; splunklib then sends only it.
            secure = "; Secure" if self._tls else ""
            out_headers.append(("Set-Cookie", f"splunkd_{self.mgmt_port}={key}; Path=/{secure}; HttpOnly; "
                                              "Max-Age=3600"))
        if output_mode == "json":
            return _Reply(200, _dumps({"sessionKey": key}).encode())
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <sessionKey>{escape(key)}</sessionKey>\n'
                '  <messages>\n    <msg code=""></msg>\n  </messages>\n</response>\n')
        return _Reply(200, body.encode(), XML_CT)

    def _authenticate_management(self, handler: _Handler) -> None:
        """Session key (cookie or ``Authorization: Splunk``), ``Bearer`` token if configured, or Basic auth."""
        cookie_name = f"splunkd_{self.mgmt_port}"
        for part in handler.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == cookie_name and value in self._sessions:
                return
        scheme, _, credential = handler.headers.get("Authorization", "").strip().partition(" ")
        credential = credential.strip()
        if scheme == "Splunk" and credential in self._sessions:
            return
        if scheme == "Bearer" and self.bearer_token is not None and secrets.compare_digest(
                credential, self.bearer_token):
            return
        if scheme == "Basic":
            try:
                user, _, password = base64.b64decode(credential).decode("utf-8").partition(":")
            except ValueError:
                user, password = "", ""
            if user == self.username and password == self.password:
                return
        raise _rest_error(401, "call not properly authenticated", kind="WARN")

    # ----- Atom feeds ---------------------------------------------------------------------------------------

    def _base(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.mgmt_port}"

    def _entry(self, title: str, alternate: str, content: dict[str, Any], *, app: str = "system",
               sharing: str = "system", extra_links: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        """One Atom entry. ``eai:acl`` matters: splunklib builds later request paths from owner/app/sharing."""
        acl = {"app": app, "can_change_perms": "1", "can_list": "1", "can_share_app": "1", "can_share_global": "1",
               "can_share_user": "0", "can_write": "1", "modifiable": "1", "owner": "nobody",
               "perms": {"read": ["*"], "write": ["admin"]}, "removable": "1", "sharing": sharing}
        links = [("alternate", alternate), ("list", alternate), ("_reload", f"{alternate}/_reload"),
                 ("edit", alternate), ("remove", alternate), *extra_links]
        return {"title": title, "alternate": alternate, "links": links,
                "content": {**content, "eai:acl": acl}}

    def _feed(self, title: str, path: str, entries: list[dict[str, Any]], output_mode: str, *,
              status: int = 200, total: int | None = None, offset: int = 0,
              links: Iterable[tuple[str, str]] = ()) -> _Reply:
        total = len(entries) if total is None else total
        updated = _now_iso()
        if output_mode == "json":
            payload = {
                "links": {rel: href for rel, href in links},
                "origin": f"{self._base()}{path}", "updated": updated,
                "generator": {"build": SPLUNK_BUILD, "version": SPLUNK_VERSION},
                "entry": [{"name": entry["title"], "id": f"{self._base()}{entry['alternate']}", "updated": updated,
                           "links": {rel: href for rel, href in entry["links"]}, "author": "nobody",
                           "acl": entry["content"]["eai:acl"], "content": entry["content"]} for entry in entries],
                "paging": {"total": total, "perPage": 30, "offset": offset}, "messages": [],
            }
            return _Reply(status, _dumps(payload).encode(), JSON_CT)
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<feed xmlns="{ATOM_NS}" xmlns:s="{REST_NS}" xmlns:opensearch="{OPENSEARCH_NS}">\n',
            f"  <title>{escape(title)}</title>\n  <id>{escape(self._base() + path)}</id>\n",
            f"  <updated>{updated}</updated>\n",
            f'  <generator build="{SPLUNK_BUILD}" version="{SPLUNK_VERSION}"/>\n',
            "  <author>\n    <name>Splunk</name>\n  </author>\n",
            *(f"  <link href={quoteattr(href)} rel={quoteattr(rel)}/>\n" for rel, href in links),
            f"  <opensearch:totalResults>{total}</opensearch:totalResults>\n",
            "  <opensearch:itemsPerPage>30</opensearch:itemsPerPage>\n",
            f"  <opensearch:startIndex>{offset}</opensearch:startIndex>\n",
            "  <s:messages/>\n",
            *(self._entry_xml(entry, updated) for entry in entries),
            "</feed>\n",
        ]
        return _Reply(status, "".join(parts).encode(), XML_CT)

    def _entry_xml(self, entry: dict[str, Any], updated: str) -> str:
        links = "".join(f"    <link href={quoteattr(href)} rel={quoteattr(rel)}/>\n" for rel, href in entry["links"])
        return (f"  <entry>\n    <title>{escape(entry['title'])}</title>\n"
                f"    <id>{escape(self._base() + entry['alternate'])}</id>\n    <updated>{updated}</updated>\n"
                f"{links}    <author>\n      <name>nobody</name>\n    </author>\n"
                f'    <content type="text/xml">\n      {_xml_value(entry["content"])}\n    </content>\n  </entry>\n')

    def _info_entry(self) -> dict[str, Any]:
        content = {"build": SPLUNK_BUILD, "version": SPLUNK_VERSION, "serverName": SERVER_NAME,
                   "host": SERVER_NAME, "product_type": "enterprise", "os_name": "Linux", "cpu_arch": "x86_64",
                   "guid": "00000000-0000-0000-0000-000000000000", "isFree": "0", "isTrial": "0",
                   "licenseState": "OK", "mode": "normal", "server_roles": ["indexer", "search_head"]}
        return self._entry("server-info", "/services/server/info/server-info", content)

    # ----- indexes ------------------------------------------------------------------------------------------

    @staticmethod
    def _index_settings(name: str, params: dict[str, str]) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "datatype": "event", "disabled": False, "homePath": f"$SPLUNK_DB/{name}/db",
            "coldPath": f"$SPLUNK_DB/{name}/colddb", "thawedPath": f"$SPLUNK_DB/{name}/thaweddb",
            "maxTotalDataSizeMB": "500000", "frozenTimePeriodInSecs": "188697600",
        }
        for key, value in params.items():
            if key not in ("name", "output_mode"):
                settings[key] = _truthy(value) if key == "disabled" else value
        return settings

    def _index_entry(self, name: str) -> dict[str, Any]:
        app = self._index_apps.get(name, "search")
        sharing = "system" if app == "system" else "app"
        count = sum(1 for event in self.events if event["index"] == name)
        content = {**self.indexes[name], "totalEventCount": str(count), "currentDBSizeMB": "1"}
        return self._entry(name, f"/servicesNS/nobody/{app}/data/indexes/{name}", content, app=app,
                           sharing=sharing, extra_links=(("disable", f"/servicesNS/nobody/{app}/data/indexes/"
                                                                     f"{name}/disable"),))

    def _route_indexes(self, method: str, rest: list[str], params: dict[str, str], output_mode: str) -> _Reply:
        path = "/services/data/indexes"
        feed_links = (("create", f"{path}/_new"), ("_reload", f"{path}/_reload"), ("_acl", f"{path}/_acl"))
        if not rest:
            if method in ("GET", "HEAD"):
                with self._lock:
                    names = list(self.indexes)
                entries, total, offset = _page([self._index_entry(n) for n in names], params)
                return self._feed("indexes", path, entries, output_mode, total=total, offset=offset,
                                  links=feed_links)
            if method == "POST":
                return self._create_index(params, output_mode, path, feed_links)
            raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
        name = rest[0]
        with self._lock:
            if name not in self.indexes or len(rest) > 1:
                raise _rest_error(404, f"In handler 'indexes': Could not find object id={name}",
                                  output_mode=output_mode)
            if method == "DELETE":
                del self.indexes[name]
                self._index_apps.pop(name, None)
                return self._feed("indexes", path, [], output_mode, links=feed_links)
            if method == "POST":
                self.indexes[name].update(
                    {k: v for k, v in self._index_settings(name, params).items() if k in params})
            elif method not in ("GET", "HEAD"):
                raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
            return self._feed("indexes", path, [self._index_entry(name)], output_mode, links=feed_links)

    def _create_index(self, params: dict[str, str], output_mode: str, path: str,
                      feed_links: tuple[tuple[str, str], ...]) -> _Reply:
        name = params.get("name", "")
        if not name:
            raise _rest_error(400, "In handler 'indexes': Missing argument: name", output_mode=output_mode)
        if not _INDEX_NAME.fullmatch(name) or "kvstore" in name:
            # Splunk docs (Create custom indexes): lowercase letters, digits, "_" and "-"; not starting with "_"
            # or "-"; not containing "kvstore". The message text is inferred.
            raise _rest_error(400, f"In handler 'indexes': Invalid index name {name!r}: index names may contain only "
                                   "lowercase letters, numbers, underscores and hyphens, may not begin with an "
                                   "underscore or hyphen, and may not contain 'kvstore'", output_mode=output_mode)
        if params.get("datatype", "event") not in ("event", "metric"):
            raise _rest_error(400, f"In handler 'indexes': Invalid datatype {params['datatype']!r}",
                              output_mode=output_mode)
        with self._lock:
            if name in self.indexes:
                # text as a splunklib user saw it from real Splunk: "HTTP 409 Conflict -- In handler 'indexes':
                # Index name=main already exists"
                raise _rest_error(409, f"In handler 'indexes': Index name={name} already exists",
                                  output_mode=output_mode)
            self.indexes[name] = self._index_settings(name, params)
            self._index_apps[name] = "search"
            entry = self._index_entry(name)
        return self._feed("indexes", path, [entry], output_mode, status=201, links=feed_links)

    # ----- inputs -------------------------------------------------------------------------------------------

    _INPUT_KINDS = ("http", "monitor", "script", "udp")

    def _route_inputs(self, method: str, rest: list[str], params: dict[str, str],
                      multi: dict[str, list[str]], output_mode: str) -> _Reply:
        if not rest:
            if method not in ("GET", "HEAD"):
                raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
            # splunklib's Inputs.kinds keeps the entries that have a "create" link [SDK client._get_kind_list]
            entries = [{"title": kind, "alternate": f"/services/data/inputs/{kind}",
                        "links": [("alternate", f"/services/data/inputs/{kind}"),
                                  ("list", f"/services/data/inputs/{kind}"),
                                  ("create", f"/services/data/inputs/{kind}/_new")],
                        "content": {"eai:acl": None}} for kind in self._INPUT_KINDS]
            return self._feed("inputs", "/services/data/inputs", entries, output_mode)
        kind = rest[0]
        if kind not in self._INPUT_KINDS:
            raise _rest_error(404, "Not Found", output_mode=output_mode)
        if kind != "http":
            if method in ("GET", "HEAD") and len(rest) == 1:
                return self._feed(kind, f"/services/data/inputs/{kind}", [], output_mode)
            raise _rest_error(404, f"In handler '{kind}': Could not find object", output_mode=output_mode)
        return self._route_http_inputs(method, rest[1:], params, multi, output_mode)

    def _http_input_entry(self, name: str) -> dict[str, Any]:
        settings = self.hec_inputs[name]
        # Splunk names HEC inputs "http://<name>" and double-encodes that in links [TF]
        encoded = quote(quote(name, safe=""), safe="")
        alternate = f"/servicesNS/nobody/splunk_httpinput/data/inputs/http/http%3A%252F%252F{encoded}"
        content = {"token": settings["token"], "index": settings["index"] or "main",
                   "indexes": list(settings["indexes"]), "sourcetype": settings["sourcetype"] or "",
                   "source": settings["source"] or "", "host": settings["host"] or SERVER_NAME,
                   "useACK": bool(settings["useACK"]), "disabled": bool(settings["disabled"]),
                   "description": settings.get("description", ""), "_rcvbuf": "1572864",
                   "eai:appName": "splunk_httpinput", "eai:userName": "nobody"}
        return self._entry(f"http://{name}", alternate, content, app="splunk_httpinput", sharing="app",
                           extra_links=(("disable", f"{alternate}/disable"),))

    def _route_http_inputs(self, method: str, rest: list[str], params: dict[str, str],
                           multi: dict[str, list[str]], output_mode: str) -> _Reply:
        path = "/services/data/inputs/http"
        feed_links = (("create", f"{path}/_new"), ("_reload", f"{path}/_reload"), ("_acl", f"{path}/_acl"))
        if not rest:
            if method in ("GET", "HEAD"):
                with self._lock:
                    entries = [self._http_input_entry(name) for name in self.hec_inputs]
                entries, total, offset = _page(entries, params)
                return self._feed("http", path, entries, output_mode, total=total, offset=offset, links=feed_links)
            if method == "POST":
                return self._create_http_input(params, multi, output_mode, path, feed_links)
            raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
        name = _input_name(rest[0])
        action = rest[1] if len(rest) > 1 else None
        with self._lock:
            if name not in self.hec_inputs or len(rest) > 2 or action not in (None, "enable", "disable"):
                raise _rest_error(404, f"In handler 'http': Could not find object id=http://{name}",
                                  output_mode=output_mode)
            settings = self.hec_inputs[name]
            if method == "DELETE" and action is None:
                del self.hec_inputs[name]
                return self._feed("http", path, [], output_mode, links=feed_links)
            if method == "POST":
                if action is not None:
                    settings["disabled"] = action == "disable"
                else:
                    self._apply_input_params(settings, params, multi, output_mode)
            elif method not in ("GET", "HEAD") or action is not None:
                raise _rest_error(405, "Method Not Allowed", output_mode=output_mode)
            return self._feed("http", path, [self._http_input_entry(name)], output_mode, links=feed_links)

    def _create_http_input(self, params: dict[str, str], multi: dict[str, list[str]], output_mode: str,
                           path: str, feed_links: tuple[tuple[str, str], ...]) -> _Reply:
        name = _input_name(params.get("name", ""))
        if not name:
            raise _rest_error(400, "In handler 'http': Missing argument: name", output_mode=output_mode)
        settings: dict[str, Any] = {"token": params.get("token") or str(uuid.uuid4()), "index": None, "indexes": [],
                                    "sourcetype": None, "source": None, "host": None, "useACK": False,
                                    "disabled": False, "description": ""}
        with self._lock:
            if name in self.hec_inputs:
                raise _rest_error(409, f"In handler 'http': Object id=http://{name} cannot be created: "
                                       "object already exists", output_mode=output_mode)  # text inferred
            if any(existing["token"] == settings["token"] for existing in self.hec_inputs.values()):
                raise _rest_error(409, "In handler 'http': token value already in use", output_mode=output_mode)
            self._apply_input_params(settings, params, multi, output_mode)
            self.hec_inputs[name] = settings
            entry = self._http_input_entry(name)
        return self._feed("http", path, [entry], output_mode, status=201, links=feed_links)

    def _apply_input_params(self, settings: dict[str, Any], params: dict[str, str], multi: dict[str, list[str]],
                            output_mode: str) -> None:
        """The token settings [HEC-TOK]: index (default index), indexes (allowed list), source, sourcetype, host,
        useACK, disabled, description. Unknown indexes are refused (message text inferred)."""
        updated = dict(settings)
        if "indexes" in multi:
            updated["indexes"] = [name.strip() for value in multi["indexes"] for name in value.split(",")
                                  if name.strip()]
        for key in ("index", "sourcetype", "source", "host", "description"):
            if key in params:
                updated[key] = params[key] or None
        for key in ("useACK", "disabled"):
            if key in params:
                updated[key] = _truthy(params[key])
        for index in [updated["index"], *updated["indexes"]]:
            if index is not None and index not in self.indexes:
                raise _rest_error(400, f"In handler 'http': Index '{index}' does not exist", output_mode=output_mode)
        if updated["index"] and updated["indexes"] and updated["index"] not in updated["indexes"]:
            raise _rest_error(400, f"In handler 'http': The default index '{updated['index']}' must be one of "
                                   "the allowed indexes", output_mode=output_mode)
        settings.update(updated)

    # ----- search -------------------------------------------------------------------------------------------

    def search(self, query: str, *, earliest_time: str | None = None,
               latest_time: str | None = None) -> list[dict[str, Any]]:
        """Evaluate SPL over the indexed events exactly as the REST search does, without its result cap."""
        with self._lock:
            records = list(self.events)
        return _Search(query, earliest_time, latest_time).run(records)[1]

    def _search_job(self, params: dict[str, str], output_mode: str) -> _Reply:
        """POST search/jobs (or search/v2/jobs) with exec_mode=oneshot: the results in the body."""
        if output_mode not in ("xml", "json"):
            raise _rest_error(400, f"output_mode={output_mode} is not supported by the Splunk emulator",
                              "FATAL", output_mode="xml")
        query = params.get("search")
        if not query:
            raise _rest_error(400, "Missing search parameter", "FATAL", output_mode=output_mode)
        if params.get("exec_mode", "normal") != "oneshot":
            raise _rest_error(400, "The Splunk emulator runs only exec_mode=oneshot searches", "FATAL",
                              output_mode=output_mode)
        try:
            count = int(params.get("count", "100"))  # oneshot returns at most 100 results unless told otherwise
            offset = int(params.get("offset", "0"))
        except ValueError:
            raise _rest_error(400, "count and offset must be integers", "FATAL", output_mode=output_mode) from None
        with self._lock:
            records = list(self.events)
        try:
            fields, rows = _Search(query, params.get("earliest_time"), params.get("latest_time")).run(records)
        except SplunkSearchError as exc:
            raise _rest_error(400, str(exc), "FATAL", output_mode=output_mode) from None
        rows = rows[offset:] if count <= 0 else rows[offset:offset + count]
        if output_mode == "json":
            payload = {"preview": False, "init_offset": offset, "messages": [],
                       "fields": [{"name": name} for name in fields], "results": rows, "highlighted": {}}
            return _Reply(200, _dumps(payload).encode(), JSON_CT)
        return _Reply(200, _results_xml(fields, rows, offset).encode(), XML_CT)


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


def _parse_time(value: Any) -> float | None:
    """Epoch seconds, fractions allowed, as a JSON number or a numeric string [HEC-FMT]; None when invalid."""
    if isinstance(value, bool):
        return None
    if not (isinstance(value, int | float) or (isinstance(value, str) and _NUMERIC.fullmatch(value))):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _valid_indexed_fields(fields: Any) -> bool:
    """``fields`` is a flat object of strings or numbers, or arrays of them [HEC-FMT]; anything nested is code 15."""
    if not isinstance(fields, dict):
        return False
    for value in fields.values():
        if isinstance(value, list):
            if not all(_flat_value(item) for item in value):
                return False
        elif not _flat_value(value):
            return False
    return True


def _flat_value(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _input_name(raw: str) -> str:
    """Input names arrive plain ("postern") or as Splunk spells them ("http://postern", double-encoded)."""
    name = raw
    for _ in range(3):
        decoded = unquote(name)
        if decoded == name:
            break
        name = decoded
    return name.removeprefix("http://")


def _page(entries: list[dict[str, Any]], params: dict[str, str]) -> tuple[list[dict[str, Any]], int, int]:
    """Collection paging: ``count`` defaults to 30 (0 or negative: all), ``offset`` to 0; ``search`` filters."""
    term = params.get("search", "*")
    if term not in ("", "*"):
        needle = term.strip("*").lower()
        entries = [entry for entry in entries
                   if needle in entry["title"].lower() or needle in _dumps(entry["content"]).lower()]
    try:
        count = int(params.get("count", "30"))
        offset = int(params.get("offset", "0"))
    except ValueError:
        raise _rest_error(400, "count and offset must be integers") from None
    total = len(entries)
    return (entries[offset:] if count <= 0 else entries[offset:offset + count]), total, offset


def _xml_value(value: Any) -> str:
    """A Python value as splunkd's ``s:dict``/``s:list`` content, which splunklib's data.load reads back."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        keys = "".join(f"<s:key name={quoteattr(str(key))}>{_xml_value(item)}</s:key>" for key, item in value.items())
        return f"<s:dict>{keys}</s:dict>"
    if isinstance(value, list | tuple):
        return "<s:list>" + "".join(f"<s:item>{_xml_value(item)}</s:item>" for item in value) + "</s:list>"
    if value is None:
        return ""
    return escape(str(value))


def _results_xml(fields: list[str], rows: list[dict[str, Any]], offset: int) -> str:
    """Search results in the XML that splunklib's ResultsReader parses."""
    parts = ["<?xml version='1.0' encoding='UTF-8'?>\n<results preview='0'>\n<meta>\n<fieldOrder>\n",
             *(f"<field>{escape(name)}</field>\n" for name in fields), "</fieldOrder>\n</meta>\n"]
    for number, row in enumerate(rows, start=offset):
        parts.append(f"<result offset='{number}'>\n")
        for name, value in row.items():
            if name == "_raw":
                inner = f"<v xml:space='preserve' trunc='0'>{escape(str(value))}</v>"
            else:
                values = value if isinstance(value, list) else [value]
                inner = "".join(f"<value><text>{escape(str(item))}</text></value>" for item in values)
            parts.append(f"<field k={quoteattr(name)}>{inner}</field>\n")
        parts.append("</result>\n")
    parts.append("</results>\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------
# A small SPL subset
# --------------------------------------------------------------------------------------------------------------

# Real SPL commands the emulator does not implement: say so, rather than "Unknown search command".
_KNOWN_COMMANDS = frozenset({
    "eval", "where", "sort", "dedup", "rex", "spath", "fields", "rename", "timechart", "chart", "top", "rare",
    "makeresults", "tstats", "inputlookup", "lookup", "join", "append", "transaction", "bin", "bucket", "fillnull",
    "tail", "reverse", "eventstats", "streamstats", "delete", "collect", "outputlookup", "rest", "metadata",
    "regex", "addinfo", "mvexpand", "makemv", "datamodel", "from", "multisearch", "union", "convert", "iplocation",
})
_TERM_TOKEN = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^\s"])+')
_COMPARISON = re.compile(r'([A-Za-z_][\w.{}:@-]*)(!=|<=|>=|=|<|>)(.*)', re.DOTALL)
_AGGREGATION = re.compile(r'\s*,?\s*([A-Za-z_]+)(?:\(([^)]*)\))?(?:\s+(?i:as)\s+("[^"]*"|[^\s,]+))?')
_ENVELOPE_FIELDS = ("index", "host", "source", "sourcetype")


def _unquote_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _wildcard(pattern: str, *, whole: bool) -> re.Pattern[str]:
    """Splunk matches field values case-insensitively, with ``*`` as a wildcard."""
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    if whole:
        return re.compile(body, re.IGNORECASE | re.DOTALL)
    # a bare term matches whole tokens of _raw, bounded by non-word characters (Splunk's segmentation, roughly)
    body = r"\S*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(rf"(?<![A-Za-z0-9_]){body}(?![A-Za-z0-9_])", re.IGNORECASE)


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _dumps(value)
    return None


def _path_values(value: Any, parts: list[str]) -> list[str]:
    """Values at a dotted path into JSON, as Splunk's automatic JSON extraction names them (arrays: ``a{}.b``)."""
    if isinstance(value, list):
        return [found for item in value for found in _path_values(item, parts)]
    if not parts:
        text = _scalar_text(value)
        return [] if text is None else [text]
    if not isinstance(value, dict):
        return []
    for cut in range(len(parts), 0, -1):  # keys may themselves contain dots: prefer the longest key present
        key = ".".join(parts[:cut])
        if key in value:
            return _path_values(value[key], parts[cut:])
    return []


def _flatten(value: Any, prefix: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        for item in value:
            _flatten(item, f"{prefix}{{}}", out)
    else:
        text = _scalar_text(value)
        if text is not None and prefix:
            out.setdefault(prefix, []).append(text)


def _raw(record: dict[str, Any]) -> str:
    event = record["event"]
    return event if isinstance(event, str) else _dumps(event)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _record_values(record: dict[str, Any], name: str) -> list[str]:
    """A field's values for one event: envelope keys, then indexed fields, then the event's JSON."""
    if name in _ENVELOPE_FIELDS:
        return [record[name]]
    if name == "_raw":
        return [_raw(record)]
    if name == "_time":
        return [_iso(record["time"])]
    if name == "splunk_server":
        return [SERVER_NAME]
    indexed = record["fields"].get(name)
    if indexed is not None:
        items = indexed if isinstance(indexed, list) else [indexed]
        return [text for item in items if (text := _scalar_text(item)) is not None]
    event = record["event"]
    if isinstance(event, dict):
        return _path_values(event, name.replace("{}", "").split("."))
    return []


def _event_row(record: dict[str, Any]) -> dict[str, Any]:
    """One event as a search result: Splunk's default fields plus every JSON field, values as strings."""
    extracted: dict[str, list[str]] = {}
    if isinstance(record["event"], dict):
        _flatten(record["event"], "", extracted)
    for key, value in record["fields"].items():
        items = value if isinstance(value, list) else [value]
        extracted.setdefault(key, []).extend(text for item in items if (text := _scalar_text(item)) is not None)
    row: dict[str, Any] = {"_raw": _raw(record), "_time": _iso(record["time"]), "host": record["host"],
                           "index": record["index"], "source": record["source"], "sourcetype": record["sourcetype"],
                           "splunk_server": SERVER_NAME}
    for key, values in extracted.items():
        if key not in row:
            row[key] = values[0] if len(values) == 1 else values
    return row


def _row_values(row: dict[str, Any], name: str) -> list[str]:
    value = row.get(name)
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


@dataclass
class _Term:
    field: str | None  # None: a bare term matched against _raw
    pattern: re.Pattern[str]
    negated: bool  # NOT field=value: true also when the field is absent
    not_equal: bool  # field!=value: the field must exist with a non-matching value

    def matches(self, values: Callable[[str], list[str]]) -> bool:
        found = values(self.field or "_raw")
        if self.field is None:
            hit = any(self.pattern.search(value) for value in found)
        else:
            hit = any(self.pattern.fullmatch(value) for value in found)
        if self.not_equal:
            return bool(found) and not hit
        return hit != self.negated


class _Search:
    """Parse and run ``search <terms> [| search ...] [| stats ...] [| table ...] [| head N]``.

    Terms are implicitly ANDed: ``field=value`` (quoted or not, ``*`` wildcards), ``field!=value``,
    ``NOT field=value`` and bare words. Fields are index/host/source/sourcetype, indexed fields, and dotted paths
    into the event JSON. Without an ``index=`` term only ``main`` is searched (the admin role's default). Results
    are newest first. Anything else raises SplunkSearchError.
    """

    def __init__(self, query: str, earliest: str | None, latest: str | None) -> None:
        self.earliest = _time_bound(earliest)
        self.latest = _time_bound(latest)
        stages = _split_pipeline(query.strip())
        first = stages[0]
        if not first:
            command = stages[1].split(None, 1)[0] if len(stages) > 1 and stages[1] else ""
            raise _unsupported(command)
        name_match = re.match(r"[A-Za-z0-9_]+", first)
        if name_match is None or name_match.group(0) != "search":
            # The REST API requires the leading "search" command; "index=main" alone is "Unknown search command".
            raise SplunkSearchError(f"Unknown search command '{name_match.group(0) if name_match else first}'.")
        self.terms = _parse_terms(first[len("search"):])
        if not any(term.field == "index" and not term.negated and not term.not_equal for term in self.terms):
            self.terms.append(_Term("index", _wildcard("main", whole=True), negated=False, not_equal=False))
        self.commands: list[tuple[str, str]] = []
        for stage in stages[1:]:
            if not stage:
                raise SplunkSearchError("Error in 'SearchParser': Missing a search command before '|'.")
            name, *rest = re.split(r"\s+", stage, maxsplit=1)
            args = rest[0] if rest else ""
            if name not in ("search", "stats", "table", "head"):
                raise _unsupported(name)
            self.commands.append((name, args.strip()))

    def run(self, records: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
        ordered = sorted(enumerate(records), key=lambda pair: (pair[1]["time"], pair[0]), reverse=True)
        events = [record for _, record in ordered
                  if self._in_range(record["time"])
                  and all(term.matches(lambda name, r=record: _record_values(r, name)) for term in self.terms)]
        rows: list[dict[str, Any]] | None = None
        fields: list[str] = []
        for name, args in self.commands:
            if name == "search":
                terms = _parse_terms(args)
                if rows is None:
                    events = [r for r in events
                              if all(t.matches(lambda n, r=r: _record_values(r, n)) for t in terms)]
                else:
                    rows = [row for row in rows if all(t.matches(lambda n, row=row: _row_values(row, n))
                                                       for t in terms)]
            elif name == "head":
                limit = _head_limit(args)
                if rows is None:
                    events = events[:limit]
                else:
                    rows = rows[:limit]
            elif name == "table":
                fields = [field for field in re.split(r"[\s,]+", args) if field]
                if not fields or any("*" in field for field in fields):
                    raise SplunkSearchError("Error in 'table' command: the emulator needs explicit field names.")
                getter = _record_values if rows is None else _row_values
                source: list[Any] = events if rows is None else rows
                rows = []
                for item in source:
                    row: dict[str, Any] = {}
                    for field in fields:
                        values = getter(item, field)
                        if values:
                            row[field] = values[0] if len(values) == 1 else values
                    rows.append(row)
            else:
                fields, rows = _stats(args, events if rows is None else rows, rows is None)
        if rows is None:
            rows = [_event_row(record) for record in events]
            names = {key for row in rows for key in row}
            fields = sorted(names, key=lambda key: (not key.startswith("_"), key))
        return fields, rows

    def _in_range(self, epoch: float) -> bool:
        return (self.earliest is None or epoch >= self.earliest) and (self.latest is None or epoch < self.latest)


def _unsupported(command: str) -> SplunkSearchError:
    if command in _KNOWN_COMMANDS:
        return SplunkSearchError(f"Error in '{command}' command: this command is not supported by the Splunk "
                                 "emulator.")
    return SplunkSearchError(f"Unknown search command '{command}'.")


def _split_pipeline(query: str) -> list[str]:
    stages: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in query:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "|" and not quoted:
            stages.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quoted:
        raise SplunkSearchError("Unbalanced quotes.")
    stages.append("".join(current).strip())
    return stages


def _parse_terms(text: str) -> list[_Term]:
    terms: list[_Term] = []
    negate = False
    for token in _TERM_TOKEN.findall(text):
        if token == "AND":
            continue
        if token == "OR" or token.startswith(("(", ")")) or token.endswith(")"):
            raise SplunkSearchError("Error in 'search' command: the Splunk emulator supports only implicitly "
                                    "ANDed terms (no OR, no parentheses).")
        if token == "NOT":
            negate = not negate
            continue
        comparison = _COMPARISON.fullmatch(token)
        if comparison is not None and not token.startswith('"'):
            field, operator, value = comparison.groups()
            if operator not in ("=", "!="):
                raise SplunkSearchError(f"Error in 'search' command: the Splunk emulator does not support the "
                                        f"'{operator}' comparison.")
            if value == "":
                raise SplunkSearchError(f"Error in 'search' command: missing value for '{field}'.")
            pattern = _wildcard(_unquote_value(value), whole=True)
            terms.append(_Term(field, pattern, negated=negate, not_equal=operator == "!="))
        else:
            terms.append(_Term(None, _wildcard(_unquote_value(token), whole=False), negated=negate,
                               not_equal=False))
        negate = False
    if negate:
        raise SplunkSearchError("Error in 'search' command: NOT must be followed by a term.")
    return terms


def _head_limit(args: str) -> int:
    text = args.strip().removeprefix("limit=").strip()
    if not text:
        return 10
    if not text.isdigit():
        raise SplunkSearchError(f"Error in 'head' command: invalid limit '{args}'.")
    return int(text)


def _stats(args: str, items: list[dict[str, Any]], are_events: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """``stats count``, ``count(f)``, ``dc(f)``/``distinct_count(f)``, each with ``as name``, optionally ``by``."""
    getter = _record_values if are_events else _row_values
    head, by = args, []
    split = re.search(r"(?:^|\s)by\s", args, re.IGNORECASE)
    if split is not None:
        head = args[:split.start()]
        by = [field for field in re.split(r"[\s,]+", args[split.end():]) if field]
        if not by:
            raise SplunkSearchError("Error in 'stats' command: 'by' needs at least one field.")
    aggregations: list[tuple[str, str | None, str]] = []
    position, text = 0, head.strip()
    while position < len(text):
        match = _AGGREGATION.match(text, position)
        if match is None or match.end() == position:
            raise SplunkSearchError(f"Error in 'stats' command: cannot parse '{text[position:]}'.")
        function, argument, alias = match.groups()
        function = function.lower()
        if function not in ("count", "dc", "distinct_count"):
            raise SplunkSearchError(f"Error in 'stats' command: the Splunk emulator does not support '{function}'.")
        if function != "count" and not argument:
            raise SplunkSearchError(f"Error in 'stats' command: {function} needs a field.")
        label = _unquote_value(alias) if alias else (f"{function}({argument})" if argument else function)
        aggregations.append((function, argument.strip() if argument else None, label))
        position = match.end()
    if not aggregations:
        raise SplunkSearchError("Error in 'stats' command: the command needs an aggregation.")
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in items:
        keys: list[tuple[str, ...]] = [()]
        for field in by:
            values = getter(item, field)
            keys = [(*key, value) for key in keys for value in dict.fromkeys(values)]
        for key in keys:
            groups.setdefault(key, []).append(item)
    if not by:
        groups.setdefault((), [])
    rows = []
    for key in sorted(groups):
        members = groups[key]
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        for function, argument, label in aggregations:
            if function == "count":
                row[label] = str(len(members) if argument is None
                                 else sum(len(getter(member, argument)) > 0 for member in members))
            else:
                assert argument is not None
                row[label] = str(len({value for member in members for value in getter(member, argument)}))
        rows.append(row)
    return [*by, *(label for _, _, label in aggregations)], rows


def _time_bound(value: str | None) -> float | None:
    """earliest_time/latest_time: epoch seconds, ``now``, or ``-<n><s|m|h|d>``; absent or empty means unbounded."""
    text = (value or "").strip()
    if not text:
        return None
    if text == "now":
        return time.time()
    relative = re.fullmatch(r"-(\d+)(s|m|h|d)", text)
    if relative:
        return time.time() - int(relative.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[relative.group(2)]
    parsed = _parse_time(text)
    if parsed is None:
        raise SplunkSearchError(f"Invalid time bound '{text}' (the Splunk emulator understands epoch seconds, "
                                "'now' and -<n>s/m/h/d).")
    return parsed
