"""Real HTTP and HTTPS servers on 127.0.0.1 for tests, each answering a small table of routes.

TLS is Python's ssl (the system OpenSSL 3), configured per test: protocol versions, cipher suites, certificate
chain. Handshakes run in the worker thread, so a probe that hangs up mid-handshake never stalls the server.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.pki import Issued

MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b"<!doctype html><title>ok</title><p>ok</p>"


Route = Reply | Callable[[BaseHTTPRequestHandler], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route = self.server.routes.get(path, self.server.default)
        reply = route(self) if callable(route) else route
        self.send_response(reply.status)
        names = {name.lower() for name, _ in reply.headers}
        for name, value in reply.headers:
            self.send_header(name, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        self.server.hits.append(path)

    def send_response(self, code: int, message: str | None = None) -> None:
        """Like http.server's, minus its Server header: each test decides what the server advertises."""
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    default: Route
    tls: ssl.SSLContext | None
    hits: list[str]

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if self.tls is not None:
            request.settimeout(5)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)  # type: ignore[arg-type]

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class WebServer:
    def __init__(self, routes: dict[str, Route] | None = None, tls: ssl.SSLContext | None = None,
                 default: Route | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = routes or {}
        self._server.default = default or Reply(404, body=b"not found")
        self._server.tls = tls
        self._server.hits = []
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def routes(self) -> dict[str, Route]:
        return self._server.routes

    @property
    def hits(self) -> list[str]:
        return self._server.hits

    def serve_tls(self, context: ssl.SSLContext) -> None:
        """Handshake with ``context`` from the next connection on: a new certificate, other protocols or suites."""
        self._server.tls = context

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def tls_context(
    issued: Issued,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    ciphers: str = MODERN_CIPHERS,
    legacy: bool = False,
    options: int = 0,
    dh: bool = False,
    dh_params: Path | None = None,
) -> ssl.SSLContext:
    """A server context; ``legacy`` drops OpenSSL's security level so weak keys, SHA-1 and TLS 1.0 load;
    ``dh`` loads finite-field DH parameters (``dh_params``, else ffdhe2048), without which OpenSSL offers no DHE
    or anonymous-DH suite."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = minimum
    context.maximum_version = maximum
    context.options |= options
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0" if legacy else ciphers)
    with tempfile.TemporaryDirectory() as scratch:
        cert, key = issued.write(Path(scratch), "server")
        context.load_cert_chain(cert, key)
        if dh_params is not None:
            context.load_dh_params(str(dh_params))
        elif dh:
            params = Path(scratch) / "dh.pem"
            subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                            "-out", str(params)], check=True, capture_output=True)
            context.load_dh_params(str(params))
    return context


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def listening(count: int) -> Iterator[list[int]]:
    """Open loopback ports that never accept: the kernel completes handshakes into the backlog, nobody answers."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            ports.append(int(listener.getsockname()[1]))
        yield ports
