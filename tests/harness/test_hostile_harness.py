"""The hostile servers themselves, read with raw sockets: each misbehaves exactly as named, and each stops within
2 s of leaving its block even while a client is mid-stream. Every read here is bounded (a few MiB, short timeouts).
"""

from __future__ import annotations

import gzip
import os
import re
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from support.hostile import (
    GIB,
    MIB,
    HostileServer,
    Observer,
    RawServer,
    Route,
    aia_body,
    aia_leaf,
    endless_chunked,
    gzip_bomb,
    gzip_bomb_bytes,
    gzipped_zeros,
    hostile_site,
    huge_header,
    link_flood,
    many_headers,
    nested_html,
    oversized_body,
    page_tree,
    peak_rss_mb,
    redirects,
    run_measured,
    silence,
    slow_drip,
    stall,
    tls_huge_handshake,
    tls_huge_record,
    tls_random_bytes,
    tls_truncated_record,
)
from support.pki import Pki
from support.web import closed_port, tls_context

HOST = "hostile.test"


@pytest.fixture(scope="module")
def server_tls(pki: Pki) -> ssl.SSLContext:
    return tls_context(pki.intermediate.issue([HOST]))


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(port: int, *, tls: bool = False, timeout: float = 2.0) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return client_tls().wrap_socket(connection, server_hostname=HOST) if tls else connection


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # what arrived after the head, at most ``limit`` bytes in all
    ended: bool  # the server closed the connection before ``limit``

    def header(self, name: str) -> str:
        return next(value for key, value in self.headers if key.lower() == name.lower())


def get(port: int, target: str, *, tls: bool = False, limit: int = 4 * MIB, timeout: float = 2.0) -> Response:
    with connect(port, tls=tls, timeout=timeout) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: gzip\r\n\r\n".encode())
        data, ended = b"", False
        while len(data) < limit:
            chunk = connection.recv(min(65536, limit - len(data)))
            if not chunk:
                ended = True
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    return Response(int(lines[0].split(" ")[1]), headers, body, ended)


def inflate(data: bytes, wbits: int = 31, chunk: int = 4 * MIB) -> tuple[int, bool]:
    """(bytes inflated, all zero), a few MiB at a time; zlib checks the gzip CRC and length at the end."""
    inflater, total, zeros = zlib.decompressobj(wbits), 0, True
    while data:
        out = inflater.decompress(data, chunk)
        total += len(out)
        zeros = zeros and not out.strip(b"\0")
        data = inflater.unconsumed_tail
    assert inflater.eof
    return total, zeros


@pytest.mark.parametrize("size", [0, 5, MIB, 64 * MIB + 123])
def test_gzipped_zeros_inflate_to_exactly_that_many_zeros(size: int) -> None:
    assert inflate(gzipped_zeros(size)) == (size, True)


def test_default_bomb_is_a_mib_that_claims_a_gib() -> None:
    started = time.monotonic()
    bomb = gzip_bomb_bytes()
    assert time.monotonic() - started < 2
    assert len(bomb) < 2 * MIB
    assert struct.unpack("<I", bomb[-4:])[0] == GIB  # ISIZE
    first = zlib.decompressobj(31).decompress(bomb, 4 * MIB)
    assert first == bytes(4 * MIB)


def test_served_bombs_carry_their_encoding_and_only_the_compressed_bytes() -> None:
    size = 64 * MIB
    with HostileServer({"/bomb": gzip_bomb(size), "/double": gzip_bomb(size, layers=2)}) as server:
        single = get(server.port, "/bomb")
        double = get(server.port, "/double")
    assert single.header("Content-Encoding") == "gzip"
    assert single.body == gzipped_zeros(size) and single.ended
    assert double.header("Content-Encoding") == "gzip, gzip"
    assert int(double.header("Content-Length")) == len(double.body) < 64 * 1024
    assert gzip.decompress(double.body) == gzipped_zeros(size)


def test_endless_chunked_body_keeps_coming_over_https(server_tls: ssl.SSLContext) -> None:
    with HostileServer({"/": endless_chunked()}, tls=server_tls) as server:
        response = get(server.port, "/", tls=True, limit=3 * MIB)
    assert response.header("Transfer-Encoding") == "chunked"
    assert not response.ended
    assert response.body.startswith(b"10000\r\n<p>xxx")


def test_oversized_body_declares_500_mb_and_streams_it() -> None:
    with HostileServer({"/": oversized_body()}) as server:
        response = get(server.port, "/", limit=3 * MIB)
    assert response.header("Content-Length") == "500000000"
    assert not response.ended and len(response.body) > 2 * MIB


def test_giant_headers() -> None:
    with HostileServer({"/many": many_headers(), "/huge": huge_header()}) as server:
        many = get(server.port, "/many")
        huge = get(server.port, "/huge")
    assert sum(name.startswith("X-Flood-") for name, _ in many.headers) == 10_000
    assert many.body.endswith(b"many headers</p></body></html>")
    assert len(huge.header("X-Huge")) == MIB
    assert huge.ended and huge.body.endswith(b"</html>")


def test_pages_that_exhaust_parsers_and_crawlers() -> None:
    routes = {"/nested": nested_html(), "/links": link_flood(), "/tree/*": page_tree(fanout=50)}
    with HostileServer(routes) as server:
        nested = get(server.port, "/nested", limit=8 * MIB)
        links = get(server.port, "/links", limit=16 * MIB)
        tree = get(server.port, "/tree/")
        deeper = get(server.port, "/tree/3/7")
        assert server.targets == ["/nested", "/links", "/tree/", "/tree/3/7"]
    assert nested.ended and nested.body.count(b"<div>") == 200_000
    assert links.ended
    hrefs = re.findall(rb'href="([^"]+)"', links.body)
    assert len(set(hrefs)) == 200_000 and all(href.startswith(b"/flood/") for href in hrefs)
    assert re.findall(rb'href="([^"]+)"', tree.body)[:2] == [b"/tree/0", b"/tree/1"]
    assert len(re.findall(rb'href="/tree/3/7/\d+"', deeper.body)) == 50


@pytest.mark.parametrize("drip_headers", [False, True])
def test_slow_drip_sends_a_byte_per_interval(drip_headers: bool) -> None:
    with HostileServer({"/": slow_drip(0.2, drip_headers=drip_headers)}) as server, connect(server.port) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        client.settimeout(0.1)
        received, deadline = b"", time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                received += client.recv(65536)
            except TimeoutError:
                continue
    dripped = received if drip_headers else received.partition(b"\r\n\r\n")[2]
    if not drip_headers:
        assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n\r\n" in received
    assert 1 <= len(dripped) <= 4  # 0.5 s at one byte per 0.2 s


def test_redirects_point_off_the_asset() -> None:
    with HostileServer(redirects(HOST, 4321)) as server:
        locations = {path: get(server.port, path) for path in server.routes}
    assert {path: (r.status, r.header("Location")) for path, r in locations.items()} == {
        "/to-port": (302, f"http://{HOST}:4321/port-hop"),
        "/to-loopback": (302, "http://127.0.0.1:4321/ip-hop"),
        "/to-host": (302, "http://elsewhere.test:4321/host-hop"),
        "/to-file": (302, "file:///etc/passwd"),
        "/to-data": (302, "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
        "/to-javascript": (302, "javascript:alert(document.cookie)"),
        "/with-query": (302, f"http://{HOST}:4321/query-hop?token=s3cret&next=%2Fadmin"),
    }


def test_aia_leaf_points_at_a_huge_issuer(pki: Pki) -> None:
    with HostileServer({"/issuer.der": aia_body()}) as aia:
        url = f"http://127.0.0.1:{aia.port}/issuer.der"
        with HostileServer(tls=tls_context(aia_leaf(pki.intermediate, HOST, url))) as server, \
                connect(server.port, tls=True) as client:
            der = client.getpeercert(binary_form=True)
        issuer = get(aia.port, "/issuer.der", limit=MIB)
    assert der is not None
    access = x509.load_der_x509_certificate(der).extensions.get_extension_for_oid(
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    assert [(d.access_method, d.access_location.value) for d in access] == [
        (AuthorityInformationAccessOID.CA_ISSUERS, url)]
    assert issuer.header("Content-Type") == "application/pkix-cert"
    assert issuer.header("Content-Length") == "500000000" and not issuer.ended


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (tls_random_bytes(), ssl.SSLError),
        (tls_truncated_record, TimeoutError),  # the rest of the record never comes
        (tls_huge_record, ssl.SSLError),
        (tls_huge_handshake, ssl.SSLError),
    ],
    ids=["random", "truncated", "huge-record", "huge-handshake"],
)
def test_tls_garbage_fails_the_handshake(answer: Callable[..., None], failure: type[Exception]) -> None:
    with RawServer(answer) as server:
        started = time.monotonic()
        with pytest.raises(failure):
            connect(server.port, tls=True, timeout=0.5).close()
    assert time.monotonic() - started < 1.5


def test_stall_accepts_and_never_answers() -> None:
    with RawServer(stall) as server, connect(server.port, timeout=0.3) as client:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(TimeoutError):
            client.recv(1)
        assert server.connections == 1


def test_observer_records_connections_and_requests() -> None:
    with Observer() as untouched:
        untouched.assert_untouched()
    with Observer() as observer:
        socket.create_connection(("127.0.0.1", observer.port), timeout=1).close()
        reply = get(observer.port, "/hop?token=s3cret")
        with pytest.raises(AssertionError, match=r"2 connection\(s\).*'/hop\?token=s3cret'"):
            observer.assert_untouched()
    assert reply.status == 200
    assert [(r.method, r.target, r.host) for r in observer.requests] == [("GET", "/hop?token=s3cret", HOST)]


def test_hostile_site_serves_its_routes_over_both_schemes(pki: Pki) -> None:
    with hostile_site(HOST, pki.intermediate.issue([HOST]), {"/": many_headers(3)}) as hosted:
        assert hosted.http is not None
        assert hosted.asset.ports == (hosted.https.port,) and hosted.asset.http_port == hosted.http.port
        assert hosted.asset.address == "127.0.0.1"
        for port, tls in ((hosted.https.port, True), (hosted.http.port, False)):
            assert get(port, "/", tls=tls).header("X-Flood-2") == "x" * 16


def test_a_server_binds_the_port_it_is_given() -> None:
    port = closed_port()
    with HostileServer({"/": many_headers(1)}, port=port) as server:
        assert server.port == port
        assert get(port, "/").status == 200


def https(server_tls: ssl.SSLContext, route: Route) -> HostileServer:
    return HostileServer({"/": route}, tls=server_tls)


MID_STREAM: list[tuple[str, Callable[[ssl.SSLContext], HostileServer | RawServer], bool]] = [
    ("endless-http", lambda _: HostileServer({"/": endless_chunked()}), False),
    ("endless-https", lambda tls: https(tls, endless_chunked()), True),
    ("oversized", lambda _: HostileServer({"/": oversized_body()}), False),
    ("drip", lambda _: HostileServer({"/": slow_drip(5.0)}), False),
    ("drip-headers", lambda _: HostileServer({"/": slow_drip(5.0, drip_headers=True)}), False),
    ("silence-https", lambda tls: https(tls, silence()), True),
    ("stall", lambda _: RawServer(stall), False),
    ("tls-truncated", lambda _: RawServer(tls_truncated_record), False),
    ("tls-huge-handshake", lambda _: RawServer(tls_huge_handshake), False),
]


@pytest.mark.parametrize(("make", "tls"), [(make, tls) for _, make, tls in MID_STREAM],
                         ids=[name for name, _, _ in MID_STREAM])
def test_every_server_stops_within_2_s_mid_stream(make: Callable[[ssl.SSLContext], HostileServer | RawServer],
                                                  tls: bool, server_tls: ssl.SSLContext) -> None:
    with make(server_tls) as running:
        port = running.port
        client = connect(port, tls=tls)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # the server is now blocked writing to, or waiting on, a client that does not read
        started = time.monotonic()
    assert time.monotonic() - started < 2
    outlived = [t.name for t in threading.enumerate() if t.name.startswith(running.thread_prefix)]
    assert outlived == []  # the acceptor and the worker are gone, though the client never read
    with client:
        client.settimeout(1)
        with pytest.raises((ConnectionError, ssl.SSLError, EOFError)):
            for _ in range(4096):
                if not client.recv(65536):
                    raise EOFError
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_run_measured_reports_the_child_peak_rss() -> None:
    big = run_measured("import sys; block = b'x' * (200 * 2**20); print(len(block))")
    small = run_measured("print('hi')")
    assert (big.returncode, big.stdout.strip()) == (0, str(200 * 2**20))
    assert big.peak_rss_mb >= 200 > small.peak_rss_mb
    overran = run_measured("import time; time.sleep(30)", timeout=0.3)
    assert overran.returncode == -9 and overran.seconds < 2
    assert peak_rss_mb(os.getpid()) > 10
