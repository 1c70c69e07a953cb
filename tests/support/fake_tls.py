"""A TLS server that only says hello: it reads a ClientHello and answers with a ServerHello (and its certificate
flight) choosing what a legacy stack would choose, or with an alert.

It stands in for servers the local OpenSSL 3 cannot be: SSLv3, RC4, 3DES, EXPORT. It can also misbehave on
purpose (garbage, silence, an unparseable certificate) for the bad-input tests.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding

from support.pki import Issued

SSL3, TLS10, TLS11, TLS12, TLS13 = 0x0300, 0x0301, 0x0302, 0x0303, 0x0304
HANDSHAKE_FAILURE, PROTOCOL_VERSION = 40, 70


@dataclass
class ClientHello:
    version: int  # highest version the client offers (supported_versions aware)
    suites: list[int]


def parse_client_hello(data: bytes) -> ClientHello:
    body = data[5 + 4 :]
    legacy = struct.unpack("!H", body[:2])[0]
    offset = 34
    offset += 1 + body[offset]
    (suites_length,) = struct.unpack("!H", body[offset : offset + 2])
    suites = [struct.unpack("!H", body[offset + 2 + i : offset + 4 + i])[0] for i in range(0, suites_length, 2)]
    offset += 2 + suites_length
    offset += 1 + body[offset]
    version = legacy
    if offset + 2 <= len(body):
        (total,) = struct.unpack("!H", body[offset : offset + 2])
        offset += 2
        end = offset + total
        while offset + 4 <= end:
            kind, length = struct.unpack("!HH", body[offset : offset + 4])
            if kind == 43:
                versions = body[offset + 5 : offset + 4 + length]
                version = max(struct.unpack("!H", versions[i : i + 2])[0] for i in range(0, len(versions), 2))
            offset += 4 + length
    return ClientHello(version, suites)


def _record(content_type: int, version: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", content_type, version, len(payload)) + payload


def _handshake(kind: int, body: bytes) -> bytes:
    return struct.pack("!B", kind) + struct.pack("!I", len(body))[1:] + body


@dataclass
class LegacyServer:
    """Accepts ``versions`` (never TLS 1.3) and picks the first of ``suites`` that the client offers."""

    versions: set[int]
    suites: list[int]
    issued: Issued | None = None
    behaviour: str = "hello"  # hello | garbage | silent | bad_certificate | http
    connections: int = 0
    _socket: socket.socket = field(default_factory=socket.socket)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def __enter__(self) -> LegacyServer:
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.1)
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                data = connection.recv(65536)
                if self.behaviour == "silent":
                    self._stop.wait(30)
                    return
                if self.behaviour == "garbage":
                    connection.sendall(os.urandom(7) + b"\x00garbage that is not TLS\r\n")
                    return
                if self.behaviour == "http":
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                connection.sendall(self._reply(parse_client_hello(data)))
                connection.recv(1)
            except OSError:
                return

    def _reply(self, hello: ClientHello) -> bytes:
        client_max = min(hello.version, TLS12)
        usable = [version for version in self.versions if version <= client_max]
        if not usable:
            return _record(21, TLS10, bytes([2, PROTOCOL_VERSION]))
        version = max(usable)
        chosen = next((suite for suite in self.suites if suite in hello.suites), None)
        if chosen is None:
            return _record(21, version, bytes([2, HANDSHAKE_FAILURE]))
        server_hello = struct.pack("!H", version) + os.urandom(32) + b"\x00" + struct.pack("!HB", chosen, 0)
        flight = _handshake(2, server_hello)
        if self.behaviour == "bad_certificate":
            ders = [b"\x30\x82\x01\x00" + os.urandom(64)]
        else:
            assert self.issued is not None
            ders = [cert.public_bytes(Encoding.DER) for cert in [self.issued.certificate, *self.issued.chain]]
        entries = b"".join(struct.pack("!I", len(der))[1:] + der for der in ders)
        flight += _handshake(11, struct.pack("!I", len(entries))[1:] + entries)
        flight += _handshake(14, b"")
        return _record(22, version, flight)
