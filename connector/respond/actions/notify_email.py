"""``notify.email``: a plain-text notice over SMTP, with STARTTLS or implicit TLS, and AUTH when configured.

A retry never sends twice what the server accepted: the Message-ID is recorded once the server has taken the
message, and a re-run finds it. A crash in the instant between the two can still repeat one e-mail (at least
once); a lost notice is worse than a repeated one. The server is reached at the address the outbound guard
checked (actions/_outbound.py), its name kept for STARTTLS and the certificate check.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Mapping
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field

from connector.core.units import Duration, Secret
from connector.respond.actions._outbound import Outbound, OutboundActionSettings
from connector.respond.actions.base import Action, ActionError, StepContext


class Security(StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS, port 465
    NONE = "none"  # only for a relay on loopback


class EmailSettings(OutboundActionSettings):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Security = Security.STARTTLS
    username: str | None = None
    password: Secret | None = None
    sender: str = Field(description="the From address")
    ca_bundle: Path | None = Field(default=None, description="trust these CAs for the server instead of the system's")
    timeout: Duration = timedelta(seconds=30)


class EmailAction(Action[EmailSettings]):
    name = "notify.email"
    settings_model = EmailSettings

    def __init__(self, settings: EmailSettings) -> None:
        super().__init__(settings)
        self.outbound = Outbound(self.name, settings.outbound)

    def execute(self, params: Mapping[str, Any], step: StepContext) -> dict[str, Any]:
        sent = step.effects.get("sent")
        if sent is not None:
            return {"message_id": sent["message_id"], "resumed": True}
        recipients = _recipients(params.get("to"))
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = str(params.get("subject") or "Postern notice")
        message["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2] or None)
        message.set_content(str(params.get("body") or ""))
        self._send(message, recipients)
        step.effects.record("sent", {"message_id": message["Message-ID"], "to": recipients})
        return {"message_id": message["Message-ID"], "to": recipients}

    def _send(self, message: EmailMessage, recipients: list[str]) -> None:
        settings = self.settings
        context = ssl.create_default_context(cafile=str(settings.ca_bundle) if settings.ca_bundle else None)
        timeout = settings.timeout.total_seconds()
        where = f"SMTP {settings.host}:{settings.port}"
        address = self.outbound.address(settings.host, settings.port)
        try:
            smtp: smtplib.SMTP
            if settings.security is Security.TLS:
                smtp = _PinnedSMTPSSL(address, settings.host, settings.port, timeout=timeout, context=context)
            else:
                smtp = _PinnedSMTP(address, settings.host, settings.port, timeout=timeout)
            with smtp:
                if settings.security is Security.STARTTLS:
                    smtp.starttls(context=context)
                if settings.username and settings.password:
                    smtp.login(settings.username, settings.password.get_secret_value())
                smtp.send_message(message, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as exc:
            raise ActionError(f"{where} refused the credentials ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise ActionError(f"{where} refused the recipients {sorted(exc.recipients)}", permanent=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ActionError(f"{where}: {exc} (check security: starttls, tls or none)", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise ActionError(f"{where} answered {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent) from None
        except ssl.SSLError as exc:
            raise ActionError(f"{where}: TLS failed: {exc.reason or exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # OSError covers timeouts and refused connections
            raise ActionError(f"{where}: {exc}") from None


class _PinnedSMTP(smtplib.SMTP):
    """Connects to ``address`` while smtplib keeps ``host`` as the server's name (STARTTLS's SNI and certificate
    check): ``_get_socket`` is the hook smtplib's own SMTP_SSL overrides to change how it connects."""

    def __init__(self, address: str, host: str, port: int, **kwargs: Any) -> None:
        self._address = address
        super().__init__(host, port, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(self._address, port, timeout)  # type: ignore[misc]  # no stub
        return sock


class _PinnedSMTPSSL(_PinnedSMTP, smtplib.SMTP_SSL):
    """Implicit TLS to ``address``, the handshake naming ``host`` (SMTP_SSL wraps with server_hostname=_host)."""


def _recipients(value: Any) -> list[str]:
    addresses = [value] if isinstance(value, str) else list(value or [])
    addresses = [str(address).strip() for address in addresses if str(address).strip()]
    if not addresses or any("@" not in address for address in addresses):
        raise ActionError(f"no valid recipient in {value!r}: the playbook's `to` must render to e-mail addresses",
                          permanent=True)
    return addresses


ACTION = EmailAction
