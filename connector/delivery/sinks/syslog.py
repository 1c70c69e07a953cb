"""CEF over syslog: RFC 5424 or RFC 3164 headers; UDP (RFC 5426), TCP with octet-counting or LF framing
(RFC 6587), or TLS (RFC 5425); reconnects after failures.

TCP gives no application-level acknowledgement, so a batch counts as delivered once written to a connection
the peer has not closed; the connection is checked before each batch, and any failure resends the whole batch
on a new one (at least once). UDP can lose datagrams silently; it is offered for receivers that only speak it.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from connector.core.events import SpooledEvent
from connector.delivery.sinks.base import EventFormat, SendOutcome, Sink, SinkSettings, TransientSinkError, meta

# finding severity -> syslog severity (RFC 5424 table 2)
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class SyslogSettings(SinkSettings):
    type: Literal["syslog"] = "syslog"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535, description="default 514, or 6514 for TLS")
    protocol: Literal["udp", "tcp", "tls"] = "tcp"
    framing: Literal["octet-counting", "lf"] = "octet-counting"
    format: Literal["rfc5424", "rfc3164"] = "rfc5424"
    facility: int = Field(default=20, ge=0, le=23, description="20 = local4")
    app_name: str = Field(default="postern", pattern=r"^[!-~]{1,48}$",
                          description="APP-NAME (RFC 5424); the RFC 3164 TAG is cut to 32 characters")
    hostname: str | None = Field(default=None, description="HOSTNAME field; default: this machine's name")
    ca_bundle: Path | None = None
    verify_tls: bool = True
    server_name: str | None = Field(default=None, description="name to verify on the TLS certificate")
    timeout: float = Field(default=10.0, gt=0)
    max_udp_bytes: int = Field(default=8192, ge=480, le=65507)
    batch_events: int = Field(default=200, ge=1, le=100_000)

    @model_validator(mode="after")
    def _framing_needs_a_stream(self) -> SyslogSettings:
        if self.protocol == "udp" and "framing" in self.model_fields_set:
            raise ValueError("framing applies to tcp and tls, not udp (one message per datagram)")
        return self


class SyslogSink(Sink[SyslogSettings]):
    type_name = "syslog"
    settings_model = SyslogSettings

    def __init__(self, settings: SyslogSettings) -> None:
        super().__init__(settings)
        self.port = settings.port or (6514 if settings.protocol == "tls" else 514)
        self.hostname = (settings.hostname or socket.gethostname()).replace(" ", "-")[:255] or "-"
        self.procid = str(os.getpid())
        self.tag = re.sub(r"[^A-Za-z0-9]", "", settings.app_name)[:32] or "postern"  # RFC 3164 4.1.3 TAG
        self._socket: socket.socket | None = None

    @property
    def formats(self) -> frozenset[EventFormat]:
        return frozenset({"cef"})

    def health(self) -> str:
        self._connect()
        return f"{self.settings.protocol} connection to {self.settings.host}:{self.port} open"

    def send(self, events: Sequence[SpooledEvent]) -> SendOutcome:
        outcome = SendOutcome()
        frames = []
        for event in events:
            message = self._message(event)
            if self.settings.protocol == "udp":
                if len(message) > self.settings.max_udp_bytes:
                    outcome.rejected[event.seq] = (f"{len(message)} bytes is over max_udp_bytes "
                                                   f"({self.settings.max_udp_bytes}): would be truncated or dropped")
                    continue
                frames.append(message)
            elif self.settings.framing == "octet-counting":
                frames.append(b"%d %s" % (len(message), message))
            else:
                frames.append(message + b"\n")
        if not frames:
            return outcome
        try:
            connection = self._connect()
            if self.settings.protocol == "udp":
                for frame in frames:
                    connection.send(frame)
            else:
                connection.sendall(b"".join(frames))
        except OSError as exc:
            self._close()
            raise TransientSinkError(f"syslog {self.settings.protocol}://{self.settings.host}:{self.port}: "
                                     f"{exc.strerror or exc}") from None
        return outcome

    def _message(self, event: SpooledEvent) -> bytes:
        attributes = meta(event)
        pri = self.settings.facility * 8 + SYSLOG_SEVERITY.get(str(attributes.get("severity")), 5)
        moment = datetime.fromtimestamp(float(attributes.get("time", event.created)), UTC)
        body = (event.cef or "").encode("utf-8")
        if self.settings.format == "rfc3164":
            local = time.localtime(moment.timestamp())
            stamp = f"{_MONTHS[local.tm_mon - 1]} {local.tm_mday:2d} {local.tm_hour:02d}:{local.tm_min:02d}:" \
                    f"{local.tm_sec:02d}"
            return f"<{pri}>{stamp} {self.hostname} {self.tag}: ".encode() + body
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        return f"<{pri}>1 {stamp} {self.hostname} {self.settings.app_name} {self.procid} finding - ".encode() + body

    def _connect(self) -> socket.socket:
        if self._socket is not None and not self._peer_closed(self._socket):
            return self._socket
        self._close()
        address = (self.settings.host, self.port)
        try:
            if self.settings.protocol == "udp":
                family, kind, proto, _, peer = socket.getaddrinfo(*address, type=socket.SOCK_DGRAM)[0]
                raw = socket.socket(family, kind, proto)
                raw.connect(peer)
            else:
                raw = socket.create_connection(address, timeout=self.settings.timeout)
                raw.settimeout(self.settings.timeout)
                if self.settings.protocol == "tls":
                    raw = self._tls().wrap_socket(raw, server_hostname=self.settings.server_name or self.settings.host)
        except ssl.SSLError as exc:
            raise TransientSinkError(f"syslog TLS handshake with {self.settings.host}:{self.port} failed: "
                                     f"{exc.reason or exc}") from None
        except OSError as exc:
            raise TransientSinkError(f"cannot connect to syslog {self.settings.host}:{self.port}: "
                                     f"{exc.strerror or exc}") from None
        self._socket = raw
        return raw

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.settings.ca_bundle) if self.settings.ca_bundle else None)
        if not self.settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _peer_closed(self, connection: socket.socket) -> bool:
        """A receiver that restarted closed our old connection; writing into it would lose the next batch."""
        if self.settings.protocol == "udp":
            return False
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            if not readable:
                return False
            if isinstance(connection, ssl.SSLSocket):
                connection.setblocking(False)
                try:
                    return connection.recv(1) == b""
                except ssl.SSLWantReadError:
                    return False
                finally:
                    connection.setblocking(True)
                    connection.settimeout(self.settings.timeout)
            return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (OSError, ValueError):
            return True

    def _close(self) -> None:
        """End the connection gracefully: close_notify for TLS, FIN for TCP, after reading what the peer sent.

        A plain close() with unread bytes in our receive buffer (a TLS 1.3 server's session tickets, which a
        sender never reads) makes the kernel send RST, and the receiver then drops events it has not read yet.
        """
        connection, self._socket = self._socket, None
        if connection is None:
            return
        with contextlib.suppress(OSError, ValueError):
            connection.settimeout(1.0)
            if isinstance(connection, ssl.SSLSocket):
                connection = connection.unwrap()
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(4096):
                pass
        with contextlib.suppress(OSError):
            connection.close()

    def close(self) -> None:
        self._close()


SINK = SyslogSink
