"""A real SMTP server (aiosmtpd) on loopback with STARTTLS and AUTH, keeping what it received."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from support.pki import Pki
from support.rsyslog import free_port


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@contextmanager
def smtp_server(pki: Pki, directory: Path, username: str, password: str,
                names: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[Mailbox]:
    """STARTTLS with a certificate for ``names`` from the test PKI; AUTH only after STARTTLS, as servers demand."""
    cert, key = pki.intermediate.issue(list(names)).write(directory, "smtp")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == username.encode() and \
            auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    mailbox = Mailbox("127.0.0.1", free_port(socket.SOCK_STREAM))
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port, tls_context=context,
                            require_starttls=True, authenticator=authenticate, auth_require_tls=True)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
