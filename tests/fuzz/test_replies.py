"""Fuzzing how the HEC and Elasticsearch sinks read their receivers' replies: whatever a receiver (or a proxy in
front of it) answers, ``send`` reports per-event verdicts or raises TransientSinkError (keep the events, retry),
never another exception, which would stop the shipper with the events in limbo.

Replies come from a real HTTP server on 127.0.0.1 that answers each request with the reply under test.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connector.core.events import SpooledEvent
from connector.delivery.sinks import build_sink, parse_sink
from connector.delivery.sinks.base import SendOutcome, Sink, TransientSinkError


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"


class _Handler(BaseHTTPRequestHandler):
    server: _ReplyServer
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read it all: no reset under the reply
        answer = self.server.answers.get(self.path.split("?")[0], Answer(404, b'{"error": "no route"}'))
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ReplyServer(ThreadingHTTPServer):
    daemon_threads = True
    answers: dict[str, Answer]


@pytest.fixture(scope="module")
def receiver() -> Iterator[_ReplyServer]:
    server = _ReplyServer(("127.0.0.1", 0), _Handler)
    server.answers = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def events(count: int) -> list[SpooledEvent]:
    return [SpooledEvent(seq=seq, event_id=f"event-{seq}", created=1_790_000_000.0 + seq,
                         meta=orjson.dumps({"host": "a.test", "severity": "high"}).decode(),
                         ecs=orjson.dumps({"message": f"finding {seq}"}), cef=None) for seq in range(count)]


def outcome_or_transient(sink: Sink[Any], batch: list[SpooledEvent]) -> SendOutcome | None:
    """The outcome, or None for TransientSinkError; any other exception fails the property."""
    try:
        outcome = sink.send(batch)
    except TransientSinkError:
        return None
    assert set(outcome.rejected) | outcome.retry <= {event.seq for event in batch}
    return outcome


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=6)
STATUS = st.sampled_from([200, 201, 400, 401, 403, 404, 413, 429, 500, 503]) | st.integers(200, 599)
SCALAR = st.none() | st.booleans() | st.integers(-3, 30) | st.integers() | st.text(max_size=8) | st.floats()
# A "code" that is a list or an object makes the sink raise TypeError: test_hec_code_of_any_json_type_is_handled
HEC_REPLY = st.fixed_dictionaries({}, optional={"code": SCALAR, "text": SCALAR | JSON,
                                                "invalid-event-number": SCALAR, "ackId": SCALAR | JSON})
BODY = (HEC_REPLY | JSON).map(lambda value: json.dumps(value).encode()) | st.binary(max_size=40) | st.sampled_from(
    [b"", b"<html><body>413 Request Entity Too Large</body></html>", b"9" * 5000, b"[" * 500 + b"]" * 500])


@pytest.fixture(scope="module")
def hec(receiver: _ReplyServer) -> Iterator[Sink[Any]]:
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    sink = build_sink(parse_sink({"type": "splunk_hec", "url": url, "token": "fuzz-token", "gzip": False,
                                  "timeout": 5}, "sinks.0"))
    yield sink
    sink.close()


@given(STATUS, BODY, st.integers(1, 3))
@example(200, b'{"text":"Success","code":0}', 2)
def test_any_hec_reply_gives_verdicts_or_a_transient_error(receiver: _ReplyServer, hec: Sink[Any], status: int,
                                                           body: bytes, count: int) -> None:
    receiver.answers["/services/collector/event"] = Answer(status, body)
    receiver.answers["/services/collector/health"] = Answer(status, body)
    outcome = outcome_or_transient(hec, events(count))
    if status == 200 and body == b'{"text":"Success","code":0}':
        assert outcome == SendOutcome()  # the sanity case: the server's reply was really read
    with contextlib.suppress(TransientSinkError):
        hec.health()


@given(st.lists(JSON, max_size=2) | st.dictionaries(st.text(max_size=4), JSON, max_size=2))
@example([1])
def test_hec_code_of_any_json_type_is_handled(receiver: _ReplyServer, hec: Sink[Any], code: Any) -> None:
    receiver.answers["/services/collector/event"] = Answer(400, json.dumps({"code": code, "text": "x"}).encode())
    outcome_or_transient(hec, events(1))


@given(st.integers(100_000, 200_000), st.sampled_from([b"[", b'{"a":']))
@example(100_000, b"[")
def test_hec_deeply_nested_reply_is_unreadable_not_a_crash(receiver: _ReplyServer, hec: Sink[Any], depth: int,
                                                           opener: bytes) -> None:
    receiver.answers["/services/collector/event"] = Answer(200, opener * depth)
    outcome_or_transient(hec, events(1))


@pytest.fixture(scope="module")
def elastic(receiver: _ReplyServer) -> Iterator[Sink[Any]]:
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    receiver.answers["/"] = Answer(200, json.dumps({"version": {"number": "9.1.0"}, "cluster_name": "fuzz",
                                                    "tagline": "You Know, for Search"}).encode())
    sink = build_sink(parse_sink({"type": "elasticsearch", "hosts": [url], "api_key": "fuzz",
                                  "install_templates": False}, "sinks.1"))
    yield sink
    sink.close()


BULK_ITEM = st.fixed_dictionaries({}, optional={"status": SCALAR, "error": JSON, "_id": SCALAR, "exception": JSON})
BULK_REPLY = st.builds(
    lambda errors, items, took: {"errors": errors, "took": took, "items": items},
    st.booleans() | SCALAR,
    st.lists(st.dictionaries(st.sampled_from(["create", "index", "delete", ""]) | st.text(max_size=4),
                             BULK_ITEM | JSON, max_size=2), max_size=4),
    SCALAR,
) | JSON


@given(STATUS, BULK_REPLY.map(lambda value: json.dumps(value).encode()) | BODY, st.integers(1, 3))
@example(200, json.dumps({"errors": False, "items": [{"create": {"status": 201}}] * 2}).encode(), 2)
def test_any_bulk_reply_gives_verdicts_or_a_transient_error(receiver: _ReplyServer, elastic: Sink[Any], status: int,
                                                            body: bytes, count: int) -> None:
    receiver.answers["/_bulk"] = Answer(status, body)
    outcome = outcome_or_transient(elastic, events(count))
    if status == 200 and count == 2 and body.startswith(b'{"errors": false, "items": [{"create": {"status": 201}}'):
        assert outcome == SendOutcome()  # the sanity case: the server's reply was really read
