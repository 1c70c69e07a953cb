"""The ``respond:`` section: where the receiver listens and who may call it, each source with its own secret."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.errors import ConfigError
from connector.core.units import ByteSize, Duration, Secret
from connector.respond.actions import build_actions
from connector.respond.approvals import ApprovalLinks
from connector.respond.queue import QueueConfig


class SourceKind(StrEnum):
    """Which endpoint a source calls, hence which body it sends."""

    SPLUNK = "splunk"  # the TA's postern_respond alert action (every row), or the built-in Webhook (first row)
    ELASTIC = "elastic"  # a Kibana Webhook connector
    SOAR = "soar"  # a SOAR platform asking for one action by name
    FEEDBACK = "feedback"  # analysts' verdicts


class AuthMethod(StrEnum):
    SIGNATURE = "signature"  # Standard Webhooks: senders this project controls (the TA action, SOAR, approvals)
    BEARER = "bearer"  # Kibana: a secret header, compared in constant time
    BASIC = "basic"  # Kibana's basic auth
    URL_TOKEN = "url_token"  # Splunk's built-in Webhook, which can send no header: the weaker option
    MTLS = "mtls"  # the client certificate verified by the TLS layer is the credential


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    kind: SourceKind
    auth: AuthMethod
    secret: Secret | None = Field(default=None, description="whsec_… key, bearer token, basic password or URL token")
    username: str | None = Field(default=None, description="auth: basic")
    allow_url_token: bool = Field(default=False, description="auth: url_token must be allowed explicitly")
    allow_cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list, description="if given, only these client networks may call")
    rate_limit: float = Field(default=50.0, gt=0, description="callbacks per second, with a burst of ten times that")

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.auth is AuthMethod.MTLS:
            return self
        if self.secret is None:
            raise ValueError(f"auth {self.auth} needs a secret")
        if self.auth is AuthMethod.BASIC and not self.username:
            raise ValueError("auth basic needs a username")
        if self.auth is AuthMethod.URL_TOKEN and not self.allow_url_token:
            raise ValueError("auth url_token puts the secret in the URL: set allow_url_token: true to accept that")
        if self.auth is AuthMethod.URL_TOKEN and self.kind is not SourceKind.SPLUNK:
            raise ValueError("auth url_token is only for Splunk's built-in Webhook alert action")
        return self


class ListenTls(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert: Path
    key: Path
    client_ca: Path | None = Field(default=None, description="require client certificates signed by this CA (mTLS)")


class RespondConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="loopback unless a SIEM elsewhere must reach it")
    port: int = Field(default=8443, ge=0, le=65535)
    tls: ListenTls | None = None
    max_body: ByteSize = Field(default=1024 * 1024, ge=1024)
    read_timeout: Duration = Field(default=timedelta(seconds=10), description="to receive a whole request body")
    sources: list[SourceConfig] = Field(min_length=1)
    playbooks: Path | None = Field(default=None, description="directory of playbook files; none: the shipped ones")
    kill_switch: bool = Field(default=False, description="plan and audit, but run no step (also: state_dir/"
                                                         "respond.disabled exists)")
    queue: QueueConfig = QueueConfig()
    actions: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="settings per action (notify.email: {host: ...})")
    approval_ttl: Duration = Field(default=timedelta(hours=24), description="how long a step waits for approval")
    approvals: ApprovalLinks | None = Field(default=None, description="signed approval links in notices "
                                                                      "({{ approval_url }} in a step's params)")

    @model_validator(mode="after")
    def _actions_valid(self) -> Self:
        try:
            build_actions(self.actions)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None  # names respond.actions.<name>: <field>
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [source.name for source in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique: {sorted(n for n in set(names) if names.count(n) > 1)}")
        if any(s.auth is AuthMethod.MTLS for s in self.sources) and (self.tls is None or self.tls.client_ca is None):
            raise ValueError("auth mtls needs tls.client_ca")
        return self
