"""Signed approval links: a notice can carry a link that approves the waiting steps of one playbook run.

The link names the run (callback, playbook, finding) and when it was issued, signed with the Standard Webhooks
scheme (HMAC-SHA256 of ``run.issued.approve``) under the approvals secret, so nobody can make a link for another
run or stretch its lifetime. The package's own ``verify`` allows five minutes of age, and an approval waits hours,
so the signature is recomputed and compared in constant time here, and the age is held to ``approval_ttl``.

Opening the link (GET) only shows what it would approve: mail scanners and link previews fetch every link in a
message, and a GET that approved would approve on their behalf. The page's button POSTs the same link.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from standardwebhooks.webhooks import Webhook

from connector.core.units import Secret

APPROVALS_PATH = "/v1/approvals"
_SIGNED = b"approve"  # what the signature is over, besides the run and the time: a link is for nothing else


class ApprovalLinks(BaseModel):
    """Where approvers reach the receiver, and the key their links are signed with."""

    model_config = ConfigDict(extra="forbid")

    public_url: str = Field(pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
                            description="the receiver as approvers reach it, e.g. https://postern.example.com:8443")
    secret: Secret = Field(description="a whsec_… key or any string of 32 bytes or more")

    @field_validator("secret")
    @classmethod
    def _strong_enough(cls, secret: SecretStr) -> SecretStr:
        value = secret.get_secret_value()
        if not value.startswith("whsec_") and len(value.encode()) < 32:
            raise ValueError("an approval key needs 32 bytes or more: whoever guesses it approves any step")
        return secret


class ApprovalRefused(Exception):
    """The link is not valid now: ``status`` is the HTTP answer (403 forged, 410 expired)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ApprovalLink:
    run: str
    issued: datetime


class ApprovalSigner:
    def __init__(self, links: ApprovalLinks, ttl: timedelta) -> None:
        secret = links.secret.get_secret_value()
        self._webhook = Webhook(secret if secret.startswith("whsec_") else secret.encode())
        self._base = links.public_url.rstrip("/") + APPROVALS_PATH
        self.ttl = ttl

    def link(self, run: str, issued: datetime) -> str:
        return f"{self._base}?{urlencode(self.query(run, issued))}"

    def query(self, run: str, issued: datetime) -> dict[str, str]:
        stamp = int(issued.timestamp())
        return {"run": run, "t": str(stamp), "sig": self._sign(run, stamp)}

    def verify(self, run: str, stamp: str, signature: str, now: datetime) -> ApprovalLink:
        if not run or not stamp.isdigit():
            raise ApprovalRefused(403, "not an approval link: it lacks its run or its time")
        if not hmac.compare_digest(signature.encode(), self._sign(run, int(stamp)).encode()):
            raise ApprovalRefused(403, "the approval link's signature does not match: it was altered or forged")
        issued = datetime.fromtimestamp(int(stamp), UTC)
        if now - issued > self.ttl:
            raise ApprovalRefused(410, f"the approval link expired at {(issued + self.ttl).isoformat()}")
        return ApprovalLink(run, issued)

    def _sign(self, run: str, stamp: int) -> str:
        return self._webhook.sign(run, datetime.fromtimestamp(stamp, UTC), _SIGNED)
