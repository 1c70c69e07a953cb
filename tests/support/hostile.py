"""Hostile servers on 127.0.0.1 for the hardening tests, and an Observer that must see nothing.

Each misbehaves in one named way an attacker-controlled site could: bodies that inflate or never end, headers
without limit, pages built to exhaust a parser or a crawler, answers dripped byte by byte, redirects off the asset,
TLS that is not TLS, silence. Leaving a server's ``with`` block shuts down every open connection, which wakes the
thread blocked on it, so a server stops within a second even while a client is mid-stream.
"""

from __future__ import annotations

import functools
import gzip
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TypeAlias

from connector.core.model import Asset
from support.pki import Authority, Issued
from support.sites import page, redirect_to
from support.web import Reply, tls_context

MIB = 1 << 20
GIB = 1 << 30
IO_TIMEOUT = 30.0  # a client that stops reading frees its worker after this long; leaving the block frees it at once
STOP_WITHIN = 1.5  # how long leaving the block waits for workers


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path with query, exactly as sent
    host: str | None
    headers: list[tuple[str, str]]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class Exchange:
    """One request being answered: what was asked, and the connection to answer on."""

    def __init__(self, request: Request, connection: socket.socket, stopping: threading.Event) -> None:
        self.request = request
        self._connection = connection
        self._stopping = stopping

    def send(self, data: bytes) -> None:
        if self._stopping.is_set():
            raise ConnectionAbortedError("server stopping")
        self._connection.sendall(data)

    def pause(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise ConnectionAbortedError("server stopping")

    def send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send(head_bytes(status, headers))

    def reply(self, reply: Reply) -> None:
        self.send(reply_head(reply) + reply.body)


Behaviour: TypeAlias = Callable[[Exchange], None]
Route: TypeAlias = Reply | Behaviour  # a path ending in "*" matches every path it prefixes
RawAnswer: TypeAlias = Callable[[socket.socket, threading.Event], None]


def head_bytes(status: int, headers: list[tuple[str, str]]) -> bytes:
    """Status line and headers; the connection always closes after one answer, so nothing waits for keep-alive."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Hostile"
    if all(name.lower() != "connection" for name, _ in headers):
        headers = [*headers, ("Connection", "close")]
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def reply_head(reply: Reply) -> bytes:
    names = {name.lower() for name, _ in reply.headers}
    headers = list(reply.headers)
    if "content-type" not in names:
        headers.append(("Content-Type", "text/html; charset=utf-8"))
    if "content-length" not in names:
        headers.append(("Content-Length", str(len(reply.body))))
    return head_bytes(reply.status, headers)


class _Listener:
    """Accepts on 127.0.0.1 and hands each connection to its own worker thread, counting them."""

    def __init__(self, port: int = 0) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self._socket.listen(128)
        self._socket.settimeout(0.05)
        self.port = int(self._socket.getsockname()[1])
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._acceptor = threading.Thread(target=self._accept, name=f"{self.thread_prefix}accept", daemon=True)
        self.connections = 0

    @property
    def thread_prefix(self) -> str:
        """Names this server's threads start with, so a test can tell whether any outlived it."""
        return f"hostile-{self.port}-"

    def __enter__(self) -> _Listener:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._acceptor.join()
        self._socket.close()
        with self._lock:
            for connection in self._open:
                with suppress(OSError):
                    socket.socket.shutdown(connection, socket.SHUT_RDWR)  # the plain syscall, also for TLS sockets
            workers = list(self._workers)
        deadline = time.monotonic() + STOP_WITHIN
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            worker = threading.Thread(target=self._work, args=(connection,), name=f"{self.thread_prefix}worker",
                                      daemon=True)
            with self._lock:
                self._open.add(connection)
                self._workers.add(worker)
            worker.start()

    def _work(self, connection: socket.socket) -> None:
        connection.settimeout(IO_TIMEOUT)
        try:
            with suppress(OSError, ValueError):  # the client went away, the server is stopping, or not HTTP
                self._handle(connection)
        finally:
            with self._lock:
                self._open.discard(connection)
                self._workers.discard(threading.current_thread())
            connection.close()

    def _handle(self, connection: socket.socket) -> None:
        raise NotImplementedError


class HostileServer(_Listener):
    """HTTP, or HTTPS with ``tls``, answering each path with a Reply or a Behaviour; records every request."""

    def __init__(self, routes: Mapping[str, Route] | None = None, *, tls: ssl.SSLContext | None = None,
                 default: Route | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.routes: dict[str, Route] = dict(routes or {})
        self.default: Route = default or Reply(404, body=b"not found")
        self.tls = tls
        self.requests: list[Request] = []

    def __enter__(self) -> HostileServer:
        super().__enter__()
        return self

    @property
    def targets(self) -> list[str]:
        """Each request's path with its query, in arrival order."""
        return [request.target for request in self.requests]

    def _handle(self, connection: socket.socket) -> None:
        if self.tls is None:
            self._answer(connection)
            return
        with self._lock:  # wrapping without the handshake only moves the descriptor: quick enough under the lock
            wrapped = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
            self._open.discard(connection)
            self._open.add(wrapped)
        try:
            wrapped.do_handshake()
            self._answer(wrapped)
        finally:
            with self._lock:
                self._open.discard(wrapped)
            wrapped.close()

    def _answer(self, connection: socket.socket) -> None:
        request = read_request(connection)
        self.requests.append(request)
        route = self._route(request.path)
        exchange = Exchange(request, connection, self._stopping)
        if isinstance(route, Reply):
            exchange.reply(route)
        else:
            route(exchange)

    def _route(self, path: str) -> Route:
        if path in self.routes:
            return self.routes[path]
        prefixes = [key for key in self.routes if key.endswith("*") and path.startswith(key[:-1])]
        return self.routes[max(prefixes, key=len)] if prefixes else self.default


def read_request(connection: socket.socket, limit: int = 64 * 1024) -> Request:
    """The request line and headers (any body is ignored); ValueError if the bytes are not an HTTP request."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk or len(data) > limit:
            raise ValueError("no complete HTTP request head")
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    host = next((value for name, value in headers if name.lower() == "host"), None)
    return Request(method, target, host, headers)


class Observer(HostileServer):
    """A listener nothing should reach: counts every TCP connection and records every request on it."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        super().__init__(tls=tls, default=Reply(200, body=b"observed"), port=port)

    def __enter__(self) -> Observer:
        super().__enter__()
        return self

    def assert_untouched(self, settle: float = 0.2) -> None:
        """Fails listing what arrived; ``settle`` lets connections still queued in the backlog be counted."""
        time.sleep(settle)
        seen = [(request.method, request.target, request.host) for request in self.requests]
        assert self.connections == 0, f"observer on port {self.port} saw {self.connections} connection(s): {seen}"


class RawServer(_Listener):
    """Plain TCP that answers each connection with ``answer`` (the TLS garbage and stall answers below)."""

    def __init__(self, answer: RawAnswer, *, port: int = 0) -> None:
        super().__init__(port)
        self._answer = answer

    def __enter__(self) -> RawServer:
        super().__enter__()
        return self

    def _handle(self, connection: socket.socket) -> None:
        self._answer(connection, self._stopping)


# --- bodies that inflate or never end -------------------------------------------------------------------------


@functools.cache
def gzipped_zeros(size: int) -> bytes:
    """A gzip stream inflating to ``size`` zero bytes, ~1/1000 of that, built in well under a second.

    Compressed once, one MiB of zeros ends in a full flush, which leaves no reference to earlier data: the same
    bytes repeated are a valid deflate stream of as many MiB.
    """
    whole, rest = divmod(size, MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH) if whole else b""
    tail = compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_FINISH)
    crc, zeros = 0, bytes(MIB)
    for _ in range(whole):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no name, mtime 0, best compression, unknown OS
    return header + unit * whole + tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


@functools.cache
def gzip_bomb_bytes(size: int = GIB, layers: int = 1) -> bytes:
    """``layers`` gzip streams nested: inflating all of them yields ``size`` zero bytes."""
    body = gzipped_zeros(size)
    for _ in range(layers - 1):
        body = gzip.compress(body, 9, mtime=0)
    return body


def gzip_bomb(size: int = GIB, *, layers: int = 1, content_type: str = "text/html; charset=utf-8") -> Reply:
    """A small body whose ``Content-Encoding: gzip`` (``gzip, gzip`` for two layers) inflates to ``size`` bytes."""
    encoding = ", ".join(["gzip"] * layers)
    return Reply(200, [("Content-Type", content_type), ("Content-Encoding", encoding)], gzip_bomb_bytes(size, layers))


FILLER = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>"  # 64 KiB of text that is also HTML


def endless_chunked(chunk: bytes = FILLER, content_type: str = "text/html; charset=utf-8") -> Behaviour:
    """A chunked body that never ends: chunks until the client goes away."""
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"

    def answer(exchange: Exchange) -> None:
        exchange.send_head(200, [("Content-Type", content_type), ("Transfer-Encoding", "chunked")])
        while True:
            exchange.send(frame)

    return answer


def oversized_body(length: int = 500_000_000, *, chunk: bytes = FILLER,
                   content_type: str = "text/html; charset=utf-8") -> Behaviour:
    """An honest ``Content-Length`` that is simply enormous, streamed in full if the client keeps reading."""

    def answer(exchange: Exchange) -> None:
        exchange.send_head(200, [("Content-Type", content_type), ("Content-Length", str(length))])
        left = length
        while left > 0:
            exchange.send(chunk[:left])
            left -= len(chunk)

    return answer


def aia_body(length: int = 500_000_000) -> Behaviour:
    """What an AIA caIssuers URL would serve if it meant harm: a "certificate" of ``length`` bytes."""
    return oversized_body(length, chunk=b"\x30" * (64 * 1024), content_type="application/pkix-cert")


# --- headers and pages built to exhaust a parser or a crawler -------------------------------------------------


def many_headers(count: int = 10_000) -> Reply:
    return Reply(200, [(f"X-Flood-{index}", "x" * 16) for index in range(count)], page("<p>many headers</p>"))


def huge_header(size: int = MIB, name: str = "X-Huge") -> Reply:
    return Reply(200, [(name, "x" * size)], page("<p>one huge header</p>"))


def nested_html(depth: int = 200_000, tag: str = "div") -> Reply:
    return Reply(200, [], page(f"<{tag}>" * depth + "deep" + f"</{tag}>" * depth, "nested"))


def link_flood(count: int = 200_000, prefix: str = "/flood/") -> Reply:
    """One page with ``count`` distinct same-origin links, to ``{prefix}0`` .. ``{prefix}{count - 1}``."""
    return Reply(200, [], page("".join(f'<a href="{prefix}{index}">{index}</a>' for index in range(count)), "links"))


def page_tree(fanout: int = 100) -> Behaviour:
    """Mount at "/tree/*": every page links to ``fanout`` sub-pages of its own, without end."""

    def answer(exchange: Exchange) -> None:
        base = exchange.request.path.rstrip("/")
        exchange.reply(Reply(200, [], page("".join(f'<a href="{base}/{index}">{index}</a>'
                                                   for index in range(fanout)), base)))

    return answer


# --- slowness -----------------------------------------------------------------------------------------------------


def slow_drip(interval: float = 1.0, *, body: bytes = page("<p>dripped</p>"), drip_headers: bool = False) -> Behaviour:
    """Status line and headers at once (or, with ``drip_headers``, they too), then one byte every ``interval``."""

    def answer(exchange: Exchange) -> None:
        head = reply_head(Reply(200, [], body))
        if not drip_headers:
            exchange.send(head)
        for byte in head + body if drip_headers else body:
            exchange.send(bytes([byte]))
            exchange.pause(interval)

    return answer


def silence() -> Behaviour:
    """Reads the request (after the TLS handshake, over HTTPS) and never answers."""

    def answer(exchange: Exchange) -> None:
        exchange.pause(IO_TIMEOUT)

    return answer


# --- redirects off the asset ----------------------------------------------------------------------------------


def redirects(host: str, other_port: int, other_host: str = "elsewhere.test") -> dict[str, Reply]:
    """302s away from the asset, one path each; ``other_port`` is typically an Observer's."""
    return {
        "/to-port": redirect_to(f"http://{host}:{other_port}/port-hop", 302),
        "/to-loopback": redirect_to(f"http://127.0.0.1:{other_port}/ip-hop", 302),
        "/to-host": redirect_to(f"http://{other_host}:{other_port}/host-hop", 302),
        "/to-file": redirect_to("file:///etc/passwd", 302),
        "/to-data": redirect_to("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", 302),
        "/to-javascript": redirect_to("javascript:alert(document.cookie)", 302),
        "/with-query": redirect_to(f"http://{host}:{other_port}/query-hop?token=s3cret&next=%2Fadmin", 302),
    }


# --- TLS that is not TLS, and silence -------------------------------------------------------------------------


def aia_leaf(authority: Authority, host: str, aia_url: str) -> Issued:
    """A leaf sent without its chain, so completing it means fetching ``aia_url`` (its caIssuers URL)."""
    return authority.issue([host], aia_url=aia_url, send_chain=False)


def _hold(connection: socket.socket, stopping: threading.Event) -> None:
    """Keep the connection open, discarding what arrives, until the client closes it or the server stops."""
    connection.settimeout(0.1)
    while not stopping.is_set():
        try:
            if not connection.recv(65536):
                return
        except TimeoutError:
            continue


def stall(connection: socket.socket, stopping: threading.Event) -> None:
    """Accept, then never say a word."""
    _hold(connection, stopping)


def tls_random_bytes(size: int = 4096) -> RawAnswer:
    def answer(connection: socket.socket, stopping: threading.Event) -> None:
        connection.recv(65536)
        connection.sendall(os.urandom(size))
        _hold(connection, stopping)

    return answer


def tls_truncated_record(connection: socket.socket, stopping: threading.Event) -> None:
    """A handshake record announcing 16 KiB, of which only the start of a ServerHello ever arrives."""
    connection.recv(65536)
    connection.sendall(struct.pack("!BHH", 22, 0x0303, 16384) + b"\x02\x00\x3f\xfc\x03\x03" + os.urandom(32))
    _hold(connection, stopping)


def tls_huge_record(connection: socket.socket, stopping: threading.Event) -> None:
    """A handshake record announcing 65535 bytes (TLS allows 16 KiB plus a little), then that many."""
    connection.recv(65536)
    connection.sendall(struct.pack("!BHH", 22, 0x0303, 0xFFFF) + os.urandom(0xFFFF))
    _hold(connection, stopping)


def tls_huge_handshake(connection: socket.socket, stopping: threading.Event) -> None:
    """Well-formed records carrying a ServerHello that announces 16 MiB, streamed until the client gives up."""
    connection.recv(65536)
    first = b"\x02\xff\xff\xff" + os.urandom(16380)
    connection.sendall(struct.pack("!BHH", 22, 0x0303, len(first)) + first)
    record = struct.pack("!BHH", 22, 0x0303, 16384) + os.urandom(16384)
    while not stopping.is_set():
        connection.sendall(record)


# --- a site and memory measurement ----------------------------------------------------------------------------


@dataclass
class HostileSite:
    asset: Asset
    https: HostileServer
    http: HostileServer | None


@contextmanager
def hostile_site(host: str, issued: Issued, routes: Mapping[str, Route], *,
                 http_routes: Mapping[str, Route] | None = None, plain_http: bool = True,
                 context: ssl.SSLContext | None = None) -> Iterator[HostileSite]:
    """``routes`` over HTTPS for ``host`` on 127.0.0.1 and, unless told otherwise, the same over plain HTTP."""
    with ExitStack() as stack:
        https = stack.enter_context(HostileServer(routes, tls=context or tls_context(issued)))
        http = stack.enter_context(HostileServer(http_routes if http_routes is not None else routes)) \
            if plain_http else None
        asset = Asset(host=host, address="127.0.0.1", ports=(https.port,), http_port=http.port if http else None)
        yield HostileSite(asset, https, http)


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of a live process's resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


@dataclass
class Measured:
    returncode: int  # negative: killed by that signal (-9 when it overran the timeout)
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float


_REPORT_HWM = """
import atexit, os
def _postern_report_hwm():
    with open("/proc/self/status") as status, open(os.environ["POSTERN_MEASURE_HWM"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_postern_report_hwm)
"""


def run_measured(snippet: str, *, timeout: float = 60.0, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> Measured:
    """Run ``snippet`` in a fresh Python and report its own peak RSS.

    The child reads its VmHWM at exit: wait4's ru_maxrss would also count the forked copy of this (test) process
    before exec, so a small child of a 200 MB pytest would measure 200 MB. A child killed at the timeout cannot
    report, and falls back to ru_maxrss (an upper bound).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".hwm") as hwm:
        started = time.monotonic()
        child_env = {**(dict(env) if env is not None else os.environ), "POSTERN_MEASURE_HWM": hwm.name}
        process = subprocess.Popen([sys.executable, "-c", _REPORT_HWM + snippet], stdout=out, stderr=err,
                                   env=child_env, cwd=cwd)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        reported = Path(hwm.name).read_text().strip()
        peak = int(reported) / 1024 if reported else usage.ru_maxrss / 1024
        return Measured(process.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                        peak, seconds)
