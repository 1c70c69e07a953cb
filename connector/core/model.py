"""The domain model shared by every stage: what we watch (Asset, Target) and what we say about it (Finding)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = list(Severity)


class Status(StrEnum):
    """pass and fail are verdicts; error means the rule could not be evaluated (with the reason); not_applicable
    means a check asked for does not apply to the target (with the reason), instead of saying nothing."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"


def is_advisory(status: Status, severity: Severity) -> bool:
    """A failing rule at info severity (CAA absent, DMARC without rua...): an event, but not an alert.

    The one place that decides it, so the CLI summary, --fail-on and playbook triggers agree: alerts that get
    ignored are not alerts.
    """
    return status is Status.FAIL and severity is Severity.INFO


class Criticality(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class DataSensitivity(StrEnum):
    """What the asset holds or handles, for the inventory's classification (criticality is what it is worth)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


def normalise_host(value: str) -> str:
    """Lower-case a DNS name or IP literal; IDNs become their A-label form so SNI and matching agree."""
    host = value.strip().strip("[]").rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"not a valid host name: {value!r}") from exc
    if not _HOSTNAME.match(host):
        raise ValueError(f"not a valid host name: {value!r}")
    return host


Port = int


class Asset(BaseModel):
    """One host of the estate, as the user declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(description="DNS name or IP address")
    name: str | None = Field(default=None, description="stable identifier; defaults to the host")
    address: str | None = Field(default=None, description="connect here instead of resolving host")
    ports: tuple[Port, ...] = Field(default=(443,), description="TLS service ports")
    http_port: Port | None = Field(default=80, description="plain-HTTP port checked for redirects; null: none")
    routes: tuple[str, ...] = Field(default=("/",), description="key routes (paths) of the site")
    sensitive_routes: tuple[str, ...] = Field(
        default=(), description="authenticated or personal areas: must not be cached (Cache-Control: no-store)")
    expected_ports: tuple[Port, ...] = Field(default=(80, 443), description="ports allowed to be open")
    scan_ports: tuple[Port, ...] | None = Field(default=None, description="ports to probe; none: a default list")
    mail_domain: bool | None = Field(
        default=None, description="check SPF, DMARC, DKIM, MTA-STS here; default: when the host is an "
                                  "organisational domain (example.com, not www.example.com) or has an MX, "
                                  "SPF or DMARC record of its own")
    dkim_selectors: tuple[str, ...] = Field(default=(), description="DKIM selectors the domain signs with")
    criticality: Criticality = Criticality.MEDIUM
    data_sensitivity: DataSensitivity | None = Field(default=None, description="public, internal, confidential or "
                                                                               "restricted; unset: unclassified")
    business_impact: Criticality | None = Field(default=None, description="impact of losing it: low to critical")
    owner: str | None = None
    tags: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _expand_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data:
            data = dict(data)
            url = str(data.pop("url"))
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url must be an http(s) URL with a host, got {without_password(url)!r}")
            if "@" in parts.netloc:
                raise ValueError(f"url {without_password(url)!r} carries credentials, which the scanner never "
                                 "sends: remove them")
            data.setdefault("host", parts.hostname)
            if parts.scheme == "https":
                data.setdefault("ports", [parts.port or 443])
            else:
                data.setdefault("http_port", parts.port or 80)
                data.setdefault("ports", [443])
            if parts.path and parts.path != "/":
                data.setdefault("routes", [parts.path])
        return data

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        return normalise_host(value)

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError as exc:
            raise ValueError(f"address must be an IP address, got {value!r}") from exc

    @field_validator("ports")
    @classmethod
    def _valid_ports(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for port in value:
            _check_port(port)
        return tuple(dict.fromkeys(value))

    @field_validator("http_port")
    @classmethod
    def _valid_http_port(cls, value: int | None) -> int | None:
        return None if value is None else _check_port(value)

    @field_validator("expected_ports", "scan_ports")
    @classmethod
    def _valid_port_lists(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            for port in value:
                _check_port(port)
        return value

    @field_validator("routes", "sensitive_routes")
    @classmethod
    def _valid_routes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for route in value:
            if not route.startswith("/"):
                raise ValueError(f"routes are paths starting with '/', got {route!r}")
        return value

    @field_validator("dkim_selectors")
    @classmethod
    def _valid_selectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for selector in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", selector):
                raise ValueError(f"a DKIM selector is dot-separated labels (RFC 6376 3.1), got {selector!r}")
        return value

    @property
    def id(self) -> str:
        return self.name or self.host

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def has_web_role(self) -> bool:
        """Whether the user configured a web service here (a URL, key routes, a TLS or HTTP port), not defaults."""
        explicit = self.model_fields_set
        return (("ports" in explicit and bool(self.ports)) or ("http_port" in explicit and self.http_port is not None)
                or bool({"routes", "sensitive_routes"} & explicit))

    @property
    def https_port(self) -> int:
        return self.ports[0] if self.ports else 443

    @classmethod
    def from_target(cls, target: str, **overrides: Any) -> Asset:
        """Parse a command-line target: ``host``, ``host:port``, ``[v6]:port`` or an http(s) URL."""
        text = target.strip()
        if "://" in text:
            return cls.model_validate({"url": text, **overrides})
        if "@" in text:
            raise ValueError(f"target {without_password(text)!r} carries credentials, which the scanner never "
                             "sends: give host, host:port or a URL without them")
        match = re.fullmatch(r"\[(?P<v6>[0-9a-fA-F:.]+)\](:(?P<port6>\d+))?|(?P<host>[^:\s]+)(:(?P<port>\d+))?", text)
        if match is None:
            try:
                ipaddress.IPv6Address(text)
            except ValueError:
                raise ValueError(f"cannot parse target {target!r}: expected host, host:port or a URL") from None
            return cls.model_validate({"host": text, **overrides})
        host = match["v6"] or match["host"]
        port = match["port6"] or match["port"]
        data: dict[str, Any] = {"host": host, **overrides}
        if port:
            data.setdefault("ports", [int(port)])
        return cls.model_validate(data)


# up to the last "@": passwords are not always percent-encoded, and masking too much is the safe mistake
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<user>[^:@]*):.*@(?=[^@]*$)", re.DOTALL)


def without_password(target: str) -> str:
    """``user:secret@host`` -> ``user:***@host`` (with or without a scheme): targets are quoted in errors and logs."""
    return _USERINFO.sub(lambda match: f"{match['scheme'] or ''}{match['user']}:***@", target.strip(), count=1)


def _check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    return port


@dataclass(frozen=True)
class Target:
    """The unit one check observes: an asset, narrowed to a port or a route where the check needs one."""

    asset: Asset
    port: int | None = None
    path: str | None = None
    scheme: str | None = None  # set when the target is a URL-addressable service ("https", "http")

    @property
    def url(self) -> str | None:
        if self.scheme is None:
            return None
        host = f"[{self.asset.host}]" if ":" in self.asset.host else self.asset.host
        default = {"https": 443, "http": 80}.get(self.scheme)
        port = "" if self.port in (None, default) else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path or '/'}"

    @property
    def key(self) -> str:
        """Distinguishes targets of one asset in fingerprints: ``443``, ``/login``, ``443/login`` or ``-``."""
        parts = [str(self.port)] if self.port is not None else []
        if self.path is not None:
            parts.append(self.path)
        return "".join(parts) or "-"

    def __str__(self) -> str:
        where = self.asset.host if ":" not in self.asset.host else f"[{self.asset.host}]"
        if self.port is not None:
            where += f":{self.port}"
        return where + (self.path or "")


@dataclass(frozen=True)
class RuleResult:
    """A check's verdict on one rule for one target; pure data so judgement is testable without a network."""

    rule_id: str
    status: Status
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity | None = None  # overrides the catalog default, e.g. expiry escalating near the date
    subject: str | None = None  # tells apart several results of one rule on one target (a path, a port)


@dataclass(frozen=True)
class CheckOutcome:
    results: list[RuleResult]
    observed: Mapping[str, Any] = field(default_factory=dict)


class Finding(BaseModel):
    """A rule's state for one target at one scan: the record every later stage consumes."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    check: str
    status: Status
    severity: Severity
    message: str
    asset: Asset
    port: int | None = None
    path: str | None = None
    scheme: str | None = None
    subject: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    observed: dict[str, Any] = Field(default_factory=dict)
    scan_id: str
    observed_at: datetime
    first_seen: datetime
    last_seen: datetime

    @property
    def target(self) -> Target:
        return Target(self.asset, self.port, self.path, self.scheme)

    @property
    def is_advisory(self) -> bool:
        return is_advisory(self.status, self.severity)

    @property
    def is_failing(self) -> bool:
        """A failing finding that is an alert (above info severity); advisories are counted apart."""
        return self.status is Status.FAIL and not self.is_advisory

    @property
    def fingerprint(self) -> str:
        """Stable across scans: the same rule on the same asset and target always has the same fingerprint."""
        return fingerprint(self.rule_id, self.asset.id, self.target.key, self.subject)

    @property
    def event_id(self) -> str:
        """Deterministic per scan, so a re-sent event is recognised as the same event by every sink."""
        return event_id(self.fingerprint, self.scan_id)


def event_id(finding_fingerprint: str, scan_id: str) -> str:
    return hashlib.sha256(f"{finding_fingerprint}|{scan_id}".encode()).hexdigest()[:32]


def fingerprint(rule_id: str, asset_id: str, target_key: str, subject: str | None) -> str:
    material = "|".join((rule_id, asset_id, target_key, subject or ""))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class AssetReport:
    """Every finding of one asset from one scan, delivered together so consumers can commit per asset."""

    asset: Asset
    findings: list[Finding]
