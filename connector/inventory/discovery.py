"""Discovery, kept in scope: names an asset's scan revealed become assets when they are ours, third-party
dependencies when they are not, and ``inventory.rogue_asset`` findings when they live in our network unnamed.

Candidates come only from what the checks already observed (certificate SANs, CNAME/MX/NS targets, redirect
targets, links and resources of the pages read, CSP sources) and from an optional seed list: discovery fetches
nothing. A name outside ``inventory.scope`` is never connected to; the only thing done with it is a DNS lookup,
when the scope declares owned networks, to see whether it lands in one of them.

Like the finding ledger, ``assess`` changes nothing: the collector publishes what it found, then ``apply`` keeps
it, so a crash between the two reports the same discoveries again instead of losing them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator

from connector.core.catalog import Catalog
from connector.core.clock import utc_now
from connector.core.errors import ConfigError, ProbeError
from connector.core.lifecycle import AssetChange, StateChange, ThirdPartyDependency
from connector.core.model import Asset, AssetReport, Criticality, Finding, Severity, Status, normalise_host
from connector.inventory.assets import AssetRegister
from connector.parsers import csp
from connector.probes.guard import NameNotFound

ROGUE_RULE = "inventory.rogue_asset"
DISCOVERED_TAG = "discovered"
MAX_CANDIDATES = 200  # names judged per asset report: a page of 10,000 links is not 10,000 DNS lookups
LOOKUPS_AT_ONCE = 16
_CSP_KEYWORDS = ("'", "*")  # keywords, nonces and hashes; wildcard hosts
# a CSP host-source (CSP3 2.3.1): [scheme://]host[:port][/path]; scheme-only sources (https:, data:) do not match
_CSP_HOST_SOURCE = re.compile(r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>[a-z0-9.-]+)(?::(?P<port>\d+|\*))?"
                              r"(?:/.*)?$")

Resolve = Callable[[str], Awaitable[list[str]]]


class Scope(BaseModel):
    """What the estate owns. A name is in scope when it is under an owned suffix or matches an include pattern,
    and matches no exclude pattern; an address is ours when it is in an owned network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suffixes: tuple[str, ...] = Field(default=(), description="owned DNS suffixes: example.com covers it and "
                                                               "every name below it")
    include: tuple[str, ...] = Field(default=(), description="glob patterns of further names in scope, "
                                                              "e.g. shop-*.example.net")
    exclude: tuple[str, ...] = Field(default=(), description="glob patterns never in scope, even under an owned "
                                                              "suffix, e.g. *.cdn.example.com")
    cidrs: tuple[IPvAnyNetwork, ...] = Field(default=(), description="owned networks: a name outside the scope "
                                                                      "that resolves into one is a rogue asset")

    @field_validator("suffixes")
    @classmethod
    def _valid_suffixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_host(suffix.removeprefix("*.")) for suffix in value)

    @field_validator("include", "exclude")
    @classmethod
    def _lower_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(pattern.strip().lower().rstrip(".") for pattern in value)

    def excluded(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude)

    def covers(self, name: str) -> bool:
        owned = any(name == suffix or name.endswith("." + suffix) for suffix in self.suffixes)
        included = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.include)
        return (owned or included) and not self.excluded(name)

    def owned_network(self, address: str) -> str | None:
        """The owned network ``address`` is in, or None."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        return next((str(network) for network in self.cidrs if ip.version == network.version and ip in network),
                    None)


class InventorySettings(BaseModel):
    """The ``inventory:`` section: without it, nothing is discovered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope = Scope()
    auto_scan: bool = Field(default=False, description="scan discovered assets too (from the next run); off: they "
                                                       "are inventoried only, and the outbound guard refuses them")
    seeds_file: Path | None = Field(default=None, description="candidate names, one a line (# comments)")

    def seeds(self) -> list[str]:
        if self.seeds_file is None:
            return []
        try:
            lines = self.seeds_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"inventory.seeds_file {self.seeds_file}: {exc.strerror or exc}") from None
        return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


@dataclass(frozen=True)
class Candidate:
    """A name a scan revealed, with where (``seen_from``), the check that showed it, and a port when a URL
    gave one."""

    name: str
    seen_from: str
    check: str
    https_port: int | None = None


def candidates(report: AssetReport) -> list[Candidate]:
    """The names the report's observed values and evidence reveal, normalised, first sighting kept, at most
    MAX_CANDIDATES; wildcards and the asset's own name are left out."""
    found: dict[str, Candidate] = {}
    for finding in report.findings:
        for raw, seen_from, port in _named(finding):
            name = _name(raw)
            if name is None or name == report.asset.host or name in found:
                continue
            found[name] = Candidate(name, seen_from, finding.check, port)
            if len(found) == MAX_CANDIDATES:
                return list(found.values())
    return list(found.values())


def _named(finding: Finding) -> Iterator[tuple[str, str, int | None]]:
    """(name, where it was seen, https port) for each name in one finding's observed values."""
    observed, host = finding.observed, finding.asset.host
    for name in observed.get("x509", {}).get("alternative_names", []):
        yield name, f"SAN of {host}:{finding.port}", None
    records = observed.get("dns_records", {})
    for kind in ("cname", "ns"):
        for name in records.get(kind, []):
            yield name, f"{kind.upper()} of {host}", None
    for exchanger in records.get("mx", []):
        yield exchanger.split()[-1], f"MX of {host}", None
    for hop in observed.get("http_transport", {}).get("redirects", []):
        if hop.get("location"):
            yield from _url(hop["location"], f"redirect from {hop['url']}")
    for origin in observed.get("content", {}).get("foreign_origins", []):
        yield from _url(origin["origin"], f"{origin['kind']} on {origin['page']}")
    page = observed.get("web_page", {})
    headers = page.get("headers", {})
    policies = csp.parse_header_values(headers.get("content-security-policy", []))
    policies += csp.parse_header_values(headers.get("content-security-policy-report-only", []), report_only=True)
    for policy in policies:
        for directive, sources in policy.directives.items():
            for source in sources:
                match = _CSP_HOST_SOURCE.match(source)
                if match and not source.startswith(_CSP_KEYWORDS):
                    port = match["port"] if match["scheme"] in (None, "https") else None
                    yield (match["host"], f"CSP {directive} of {page.get('url', host)}",
                           int(port) if port and port.isdigit() else None)


def _url(url: str, seen_from: str) -> Iterator[tuple[str, str, int | None]]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return
    if parts.scheme in ("http", "https") and parts.hostname:
        yield parts.hostname, seen_from, port if parts.scheme == "https" else None


def _name(raw: str) -> str | None:
    """The normalised host name, or None for a wildcard (it names no host) or a single label (no estate's)."""
    text = raw.strip().lower().rstrip(".")
    if not text or "*" in text:
        return None
    try:
        name = normalise_host(text)
    except ValueError:
        return None
    return name if "." in name or is_ip(name) else None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass
class Discovered:
    """One report's (or the seed list's) discoveries: the report with its rogue-asset findings, and the events
    to publish."""

    report: AssetReport | None
    at: datetime
    assets: list[AssetChange] = field(default_factory=list)
    third_parties: list[ThirdPartyDependency] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # in-scope names already in the inventory

    @property
    def changes(self) -> list[StateChange]:
        return [*self.assets, *self.third_parties]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS third_parties (
    name TEXT PRIMARY KEY,
    asset_id TEXT,
    seen_from TEXT NOT NULL,
    reported_at TEXT NOT NULL
);
"""


def reported_dependencies(db: sqlite3.Connection) -> list[tuple[str, str | None, str, str]]:
    """(name, asset id, where seen, when reported) of every third-party dependency reported, by name."""
    db.executescript(_SCHEMA)
    return list(db.execute("SELECT name, asset_id, seen_from, reported_at FROM third_parties ORDER BY name"))


class Discovery:
    """Judges each asset report's candidates against the scope; kept in the state database with the register."""

    def __init__(self, db: sqlite3.Connection, register: AssetRegister, settings: InventorySettings,
                 catalog: Catalog, *, rogue_rule: bool = True, rogue_severity: Severity | None = None) -> None:
        """``rogue_rule`` and ``rogue_severity``: the configuration's override of inventory.rogue_asset."""
        self._db = db
        self._db.executescript(_SCHEMA)
        self.register = register
        self.settings = settings
        self.catalog = catalog
        self.judge_rogues = bool(settings.scope.cidrs) and rogue_rule
        self.rogue_severity = rogue_severity or catalog[ROGUE_RULE].severity

    async def assess(self, report: AssetReport, resolve: Resolve) -> Discovered:
        """What the report reveals; changes nothing until ``apply``."""
        scope = self.settings.scope
        now = report.findings[0].observed_at if report.findings else utc_now()
        found = candidates(report)
        known = {record.asset.host for record in self.register.records()} if found else set()
        ours = [c for c in found if not is_ip(c.name) and scope.covers(c.name)]
        in_scope = {c.name for c in ours}
        outside = [c for c in found if c.name not in in_scope and c.name not in known]
        rogues = await self._rogues(report, [c for c in outside if not scope.excluded(c.name)], resolve)
        rogue_names = {finding.subject for finding in rogues}
        dependencies = [c for c in outside if not is_ip(c.name) and c.name not in rogue_names]
        reported = self._reported([c.name for c in dependencies])
        return Discovered(
            AssetReport(report.asset, [*report.findings, *rogues]), now,
            self.register.discovered([(_asset(c), c.seen_from) for c in ours if c.name not in known], now),
            [ThirdPartyDependency(c.name, report.asset, c.seen_from, now) for c in dependencies
             if c.name not in reported],
            [c.name for c in ours if c.name in known])

    def assess_seeds(self, now: datetime) -> Discovered:
        """The seed list's names: those in scope become assets, the others are reported as dependencies."""
        scope = self.settings.scope
        names = [name for name in map(_name, self.settings.seeds()) if name is not None and not is_ip(name)]
        where = f"seed list {self.settings.seeds_file}"
        ours = [name for name in names if scope.covers(name)]
        reported = self._reported(names)
        known = {record.asset.host for record in self.register.records()}
        return Discovered(
            None, now,
            self.register.discovered([(_asset(Candidate(name, where, "seeds")), where) for name in ours], now),
            [ThirdPartyDependency(name, None, where, now) for name in names
             if name not in ours and name not in reported and name not in known])

    def apply(self, discovered: Discovered) -> None:
        """Keep what ``assess`` found, once its events are durable."""
        self.register.record_discovered(discovered.assets, discovered.seen, discovered.at)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO third_parties (name, asset_id, seen_from, reported_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO NOTHING",
                [(dependency.name, dependency.asset.id if dependency.asset else None, dependency.seen_from,
                  dependency.at.isoformat()) for dependency in discovered.third_parties])

    def _reported(self, names: list[str]) -> set[str]:
        reported: set[str] = set()
        for start in range(0, len(names), 500):  # SQLite's bound-parameter limit
            chunk = names[start:start + 500]
            marks = ",".join("?" * len(chunk))
            reported |= {row[0] for row in self._db.execute(
                f"SELECT name FROM third_parties WHERE name IN ({marks})", chunk)}
        return reported

    async def _rogues(self, report: AssetReport, suspects: list[Candidate], resolve: Resolve) -> list[Finding]:
        """Names outside the scope and the inventory that resolve into an owned network; nothing is connected to.
        A name whose lookup failed (a timeout, SERVFAIL) was not judged: it is an error finding of the rule, so an
        open rogue finding on it stays open instead of resolving by absence. A name that does not exist is judged."""
        if not self.judge_rogues or not suspects:
            return []
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def addresses(candidate: Candidate) -> list[str] | ProbeError:
            if is_ip(candidate.name):
                return [candidate.name]
            async with gate:
                try:
                    return await resolve(candidate.name)
                except NameNotFound:
                    return []
                except ProbeError as exc:
                    return exc

        resolved = await asyncio.gather(*(addresses(candidate) for candidate in suspects))
        rogues = []
        for candidate, found in zip(suspects, resolved, strict=True):
            if isinstance(found, ProbeError):
                rogues.append(self._unjudged(report, candidate, found))
                continue
            inside = {address: network for address in found
                      if (network := self.settings.scope.owned_network(address)) is not None}
            if inside:
                rogues.append(self._rogue(report, candidate, inside))
        return rogues

    def _unjudged(self, report: AssetReport, candidate: Candidate, error: ProbeError) -> Finding:
        first = report.findings[0]
        return Finding(
            rule_id=ROGUE_RULE, check=candidate.check, status=Status.ERROR, severity=Severity.INFO,
            message=f"could not tell whether {candidate.name} (seen as {candidate.seen_from}) is a rogue asset: "
                    f"{error}",
            asset=report.asset, subject=candidate.name, evidence={"name": candidate.name, "error": str(error)},
            scan_id=first.scan_id, observed_at=first.observed_at, first_seen=first.observed_at,
            last_seen=first.observed_at)

    def _rogue(self, report: AssetReport, candidate: Candidate, inside: dict[str, str]) -> Finding:
        """Reported under the check that revealed the name, so a run where that check did not run completely
        (``--checks``, an error) does not resolve it by absence (see inventory.lifecycle)."""
        first = report.findings[0]
        where = ", ".join(f"{address} (in {network})" for address, network in inside.items())
        return Finding(
            rule_id=ROGUE_RULE, check=candidate.check, status=Status.FAIL, severity=self.rogue_severity,
            message=f"{candidate.name} resolves to {where}, an owned network, but is neither in the inventory nor "
                    f"under an owned suffix (seen as {candidate.seen_from})",
            asset=report.asset, subject=candidate.name,
            evidence={"name": candidate.name, "addresses": list(inside), "networks": sorted(set(inside.values())),
                      "seen_from": candidate.seen_from},
            scan_id=first.scan_id, observed_at=first.observed_at, first_seen=first.observed_at,
            last_seen=first.observed_at)


def _asset(candidate: Candidate) -> Asset:
    """A discovered asset: the name, at the HTTPS port a URL gave (else 443), low criticality until someone
    classifies it."""
    fields: dict[str, Any] = {"host": candidate.name, "tags": (DISCOVERED_TAG,), "criticality": Criticality.LOW}
    if candidate.https_port is not None:
        fields["ports"] = (candidate.https_port,)
    return Asset.model_validate(fields)

