"""TLS wire format: ClientHello records out, the server's first flight in.

Pure functions over bytes (RFC 5246 and RFC 8446 framing), so the prober can ask "do you accept these?" with
one ClientHello and read the verdict from the ServerHello or alert, without a TLS library that would refuse to
offer legacy protocol versions or suites.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class TlsVersion(IntEnum):
    SSL3 = 0x0300
    TLS1_0 = 0x0301
    TLS1_1 = 0x0302
    TLS1_2 = 0x0303
    TLS1_3 = 0x0304

    @property
    def label(self) -> str:
        return {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}[
            self.value
        ]

    @property
    def ecs(self) -> tuple[str, str]:
        """(tls.version_protocol, tls.version) as ECS spells them."""
        if self is TlsVersion.SSL3:
            return ("ssl", "3.0")
        return ("tls", {0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}[self.value])


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14


ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 47: "illegal_parameter",
    50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
    110: "unsupported_extension", 112: "unrecognized_name", 120: "no_application_protocol",
}

# SHA-256("HelloRetryRequest"): a ServerHello with this random is a HelloRetryRequest (RFC 8446, 4.1.3).
HELLO_RETRY_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

_EXT_SERVER_NAME = 0
_EXT_SUPPORTED_GROUPS = 10
_EXT_EC_POINT_FORMATS = 11
_EXT_SIGNATURE_ALGORITHMS = 13
_EXT_EXTENDED_MASTER_SECRET = 23
_EXT_SUPPORTED_VERSIONS = 43
_EXT_PSK_KEY_EXCHANGE_MODES = 45
_EXT_KEY_SHARE = 51
_EXT_RENEGOTIATION_INFO = 0xFF01

_GROUP_X25519 = 29
_GROUPS = (_GROUP_X25519, 23, 24, 25, 30, 256, 257)  # x25519, P-256, P-384, P-521, x448, ffdhe2048/3072
_SIGNATURE_SCHEMES = (
    0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0808,
    0x0809, 0x080A, 0x080B, 0x0201, 0x0203, 0x0202, 0x0402,
)
MAX_RECORD_BODY = 2**14 + 2048  # ciphertext limit; anything larger is not a TLS server talking


def _u8_prefixed(data: bytes) -> bytes:
    return struct.pack("!B", len(data)) + data


def _u16_prefixed(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _u24_prefixed(data: bytes) -> bytes:
    return struct.pack("!I", len(data))[1:] + data


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + _u16_prefixed(body)


def _u16_list(values: tuple[int, ...] | list[int]) -> bytes:
    return b"".join(struct.pack("!H", value) for value in values)


def sni_name(hostname: str | None) -> str | None:
    """The name to send in SNI: none for IP literals (RFC 6066 forbids them) or when no name is known."""
    if not hostname:
        return None
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return hostname.rstrip(".").lower()
    return None


def client_hello(version: TlsVersion, suites: tuple[int, ...], server_name: str | None) -> bytes:
    """A ClientHello record offering exactly ``suites`` at ``version``.

    TLS 1.3 is offered through supported_versions with a real X25519 key share, so a 1.3 server answers with a
    plain ServerHello rather than a retry. SSLv3 hellos carry no extensions, as SSLv3 clients sent none.
    """
    tls13 = version is TlsVersion.TLS1_3
    legacy_version = TlsVersion.TLS1_2 if tls13 else version
    extensions = b""
    if version is not TlsVersion.SSL3:
        parts = []
        if server_name:
            name = server_name.encode("idna")
            parts.append(_extension(_EXT_SERVER_NAME, _u16_prefixed(b"\x00" + _u16_prefixed(name))))
        parts.append(_extension(_EXT_SUPPORTED_GROUPS, _u16_prefixed(_u16_list(_GROUPS))))
        parts.append(_extension(_EXT_EC_POINT_FORMATS, _u8_prefixed(b"\x00")))
        if version >= TlsVersion.TLS1_2:
            parts.append(_extension(_EXT_SIGNATURE_ALGORITHMS, _u16_prefixed(_u16_list(_SIGNATURE_SCHEMES))))
        parts.append(_extension(_EXT_EXTENDED_MASTER_SECRET, b""))
        parts.append(_extension(_EXT_RENEGOTIATION_INFO, b"\x00"))
        if tls13:
            public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            share = struct.pack("!H", _GROUP_X25519) + _u16_prefixed(public)
            parts.append(_extension(_EXT_SUPPORTED_VERSIONS, _u8_prefixed(struct.pack("!H", TlsVersion.TLS1_3))))
            parts.append(_extension(_EXT_PSK_KEY_EXCHANGE_MODES, _u8_prefixed(b"\x01")))
            parts.append(_extension(_EXT_KEY_SHARE, _u16_prefixed(share)))
        extensions = _u16_prefixed(b"".join(parts))
    session_id = os.urandom(32) if tls13 else b""
    body = (
        struct.pack("!H", legacy_version)
        + os.urandom(32)
        + _u8_prefixed(session_id)
        + _u16_prefixed(_u16_list(suites))
        + _u8_prefixed(b"\x00")
        + extensions
    )
    handshake = struct.pack("!B", HandshakeType.CLIENT_HELLO) + _u24_prefixed(body)
    record_version = min(version, TlsVersion.TLS1_0)
    return struct.pack("!BHH", ContentType.HANDSHAKE, record_version, len(handshake)) + handshake


class NotTlsError(ValueError):
    """The peer's bytes are not a TLS record stream."""


def describe_garbage(data: bytes) -> str:
    """What a non-TLS answer looks like, for an error message a user can act on."""
    head = data[:40]
    text = head.decode("ascii", "replace")
    printable = "".join(char if char.isprintable() else "." for char in text)
    hint = ""
    stripped = data.lstrip()
    if stripped.startswith((b"HTTP/", b"<")):
        hint = " (it looks like plain HTTP)"
    elif stripped.startswith((b"SSH-", b"220 ", b"+OK", b"* OK")):
        hint = " (it looks like a plain-text service banner)"
    return f"it answered with {len(data)} bytes starting {printable!r}{hint}"


class MalformedServerHelloError(ValueError):
    """The peer speaks TLS framing but sent a handshake message we cannot parse."""


@dataclass(frozen=True)
class ServerHello:
    version: TlsVersion | int
    cipher_suite: int
    retry_request: bool


@dataclass(frozen=True)
class Alert:
    level: int
    description: int

    @property
    def name(self) -> str:
        return ALERT_NAMES.get(self.description, f"alert_{self.description}")


@dataclass
class ServerFlight:
    """What the server said in answer to one ClientHello, accumulated as bytes arrive."""

    hello: ServerHello | None = None
    certificates: list[bytes] = field(default_factory=list)
    alert: Alert | None = None
    hello_done: bool = False
    key_exchange: bytes | None = None  # the ServerKeyExchange body; its layout depends on the chosen suite
    encrypted_follows: bool = False
    _records: bytearray = field(default_factory=bytearray)
    _handshake: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        """Consume bytes from the socket; raises NotTlsError or MalformedServerHelloError on garbage."""
        self._records.extend(data)
        while len(self._records) >= 5:
            content_type, major, _minor, length = struct.unpack("!BBBH", self._records[:5])
            if content_type not in set(ContentType) or major != 3 or length > MAX_RECORD_BODY:
                raise NotTlsError(describe_garbage(bytes(self._records)))
            if len(self._records) < 5 + length:
                return
            body = bytes(self._records[5 : 5 + length])
            del self._records[: 5 + length]
            self._on_record(ContentType(content_type), body)

    def complete(self, want_certificates: bool) -> bool:
        """Whether enough has been read to answer the probe's question."""
        if self.alert is not None or self.encrypted_follows:
            return True
        if self.hello is None:
            return False
        if not want_certificates or self.hello.retry_request or self.hello.version == TlsVersion.TLS1_3:
            return True
        # the ServerKeyExchange follows the Certificate, and carries the DH group for the weak-DH rule
        return self.hello_done or (bool(self.certificates) and self.key_exchange is not None)

    def _on_record(self, content_type: ContentType, body: bytes) -> None:
        if content_type is ContentType.ALERT:
            if len(body) >= 2 and self.alert is None:
                self.alert = Alert(body[0], body[1])
            return
        if content_type is not ContentType.HANDSHAKE:
            # TLS 1.3 servers switch to encrypted records (and a compatibility CCS) after the ServerHello.
            if self.hello is not None:
                self.encrypted_follows = True
                return
            raise MalformedServerHelloError(f"{content_type.name} record before any ServerHello")
        self._handshake.extend(body)
        while len(self._handshake) >= 4:
            kind = self._handshake[0]
            length = int.from_bytes(self._handshake[1:4], "big")
            if len(self._handshake) < 4 + length:
                return
            message = bytes(self._handshake[4 : 4 + length])
            del self._handshake[: 4 + length]
            self._on_handshake(kind, message)

    def _on_handshake(self, kind: int, message: bytes) -> None:
        if kind == HandshakeType.SERVER_HELLO:
            self.hello = parse_server_hello(message)
        elif kind == HandshakeType.CERTIFICATE and self.hello is not None:
            self.certificates = parse_certificate_list(message)
        elif kind == HandshakeType.SERVER_KEY_EXCHANGE and self.hello is not None:
            self.key_exchange = message
        elif kind == HandshakeType.SERVER_HELLO_DONE:
            self.hello_done = True


def parse_server_hello(message: bytes) -> ServerHello:
    try:
        legacy_version, = struct.unpack("!H", message[:2])
        random = message[2:34]
        session_length = message[34]
        offset = 35 + session_length
        cipher_suite, = struct.unpack("!H", message[offset : offset + 2])
        offset += 3  # cipher suite, compression method
        version: int = legacy_version
        if len(message) >= offset + 2:
            extensions_length, = struct.unpack("!H", message[offset : offset + 2])
            offset += 2
            end = offset + extensions_length
            while offset + 4 <= end:
                kind, length = struct.unpack("!HH", message[offset : offset + 4])
                value = message[offset + 4 : offset + 4 + length]
                if kind == _EXT_SUPPORTED_VERSIONS and length == 2:
                    version, = struct.unpack("!H", value)
                offset += 4 + length
    except (struct.error, IndexError) as exc:
        raise MalformedServerHelloError(f"truncated ServerHello ({len(message)} bytes)") from exc
    known: TlsVersion | int = TlsVersion(version) if version in set(TlsVersion) else version
    return ServerHello(known, cipher_suite, random == HELLO_RETRY_RANDOM)


def parse_certificate_list(message: bytes) -> list[bytes]:
    """DER certificates from a TLS 1.0-1.2 Certificate message, leaf first."""
    if len(message) < 3:
        raise MalformedServerHelloError("truncated Certificate message")
    total = int.from_bytes(message[:3], "big")
    offset, end = 3, min(3 + total, len(message))
    certificates = []
    while offset + 3 <= end:
        length = int.from_bytes(message[offset : offset + 3], "big")
        der = message[offset + 3 : offset + 3 + length]
        if len(der) != length:
            raise MalformedServerHelloError("truncated certificate in Certificate message")
        certificates.append(der)
        offset += 3 + length
    return certificates


@dataclass(frozen=True)
class DhParams:
    """The finite-field group a DHE or DH_anon server chose (RFC 5246, 7.4.3: ServerDHParams)."""

    prime: int
    generator: int

    @property
    def bits(self) -> int:
        return self.prime.bit_length()


def parse_dh_params(message: bytes) -> DhParams:
    """dh_p, dh_g and dh_Ys, each with a two-byte length, open a DHE ServerKeyExchange; the signature follows."""
    values: list[bytes] = []
    offset = 0
    for name in ("dh_p", "dh_g", "dh_Ys"):
        if offset + 2 > len(message):
            raise MalformedServerHelloError(f"ServerKeyExchange truncated before {name} ({len(message)} bytes)")
        length, = struct.unpack("!H", message[offset : offset + 2])
        value = message[offset + 2 : offset + 2 + length]
        if length == 0 or len(value) != length:
            raise MalformedServerHelloError(f"ServerKeyExchange has a truncated or empty {name}")
        values.append(value)
        offset += 2 + length
    return DhParams(int.from_bytes(values[0], "big"), int.from_bytes(values[1], "big"))
