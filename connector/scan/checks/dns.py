"""DNS records of each asset: what they are (for drift detection), and dangling aliases, CAA and nameservers.

The A, AAAA, CNAME, NS, MX and CAA records are reported as observed values on every finding (and as ECS
``dns.*`` fields). A CNAME chain ending in NXDOMAIN is dangling; one ending at a provider known for takeovers is
fetched and compared with the provider's "no such site" page (mappings/takeover.yaml). Every nameserver of the
asset's zone is asked directly, without recursion, whether it serves the zone: lame and unreachable servers are
findings. A lookup that fails (SERVFAIL, timeout) is an error finding, never "no record".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.core.resources import mappings_dir
from connector.parsers.domains import organisational_domain
from connector.probes.dns import Answer, Authority, DnsClient, DnsError
from connector.scan.checks.base import Check, check_loads, load_data_file
from connector.scan.context import ScanContext

T = TypeVar("T")


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    suffixes: tuple[str, ...] = Field(min_length=1)
    fingerprints: tuple[str, ...] = ()

    def covers(self, name: str) -> bool:
        return any(name == suffix or name.endswith("." + suffix) for suffix in self.suffixes)


class TakeoverFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: tuple[Provider, ...]


class DnsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    takeover_file: Path | None = Field(default=None, description="default: mappings/takeover.yaml")
    nameservers: bool = Field(default=True, description="ask each of the zone's nameservers directly")
    ipv6_nameservers: bool = Field(default=False, description="also probe nameservers' IPv6 addresses")

    @property
    def providers(self) -> TakeoverFile:
        return load_data_file(TakeoverFile, self.takeover_file or mappings_dir() / "takeover.yaml")

    @model_validator(mode="after")
    def _loads(self) -> DnsSettings:
        check_loads(lambda: self.providers)
        return self


@dataclass(frozen=True)
class Takeover:
    """What the alias target said when fetched: the provider and whether its "no such site" page came back."""

    provider: str
    url: str
    fingerprint: str | None  # the matched text; None if the site answered normally
    error: str | None = None  # could not fetch it


@dataclass(frozen=True)
class Nameserver:
    name: str
    addresses: tuple[str, ...]
    authorities: tuple[Authority, ...]
    resolution_error: str | None = None


@dataclass(frozen=True)
class DnsObservation:
    answers: dict[str, Answer]  # A, AAAA, MX and the zone's NS
    caa: Answer | None  # the relevant CAA RRset (RFC 8659 climbing), None if none up to the organisational domain
    zone: str | None
    nameservers: tuple[Nameserver, ...]
    takeover: Takeover | None
    failures: dict[str, str]  # lookups that failed ("MX", "CAA", "NS"): only the rules needing them are errors


class DnsRecordsCheck(Check[DnsObservation, DnsSettings]):
    name = "dns"
    description = "A/AAAA/CNAME/NS/MX/CAA records, dangling CNAMEs, missing CAA, lame or unreachable nameservers"
    settings_model = DnsSettings

    def targets(self, asset: Asset) -> list[Target]:
        return [] if asset.is_ip else [Target(asset)]

    async def observe(self, target: Target, ctx: ScanContext, settings: DnsSettings) -> DnsObservation:
        """A and AAAA must answer (else the check is an error); MX, CAA and NS failures only void their rules."""
        dns = ctx.dns
        host = target.asset.host
        a, aaaa = await asyncio.gather(dns.lookup(host, "A"), dns.lookup(host, "AAAA"))
        answers = {"A": a, "AAAA": aaaa}
        failures: dict[str, str] = {}
        mx, caa, zone = await asyncio.gather(_attempt(dns.lookup(host, "MX")), _attempt(_relevant_caa(dns, host)),
                                             _attempt(_zone_apex(dns, host)))
        for kind, outcome in (("MX", mx), ("CAA", caa), ("NS", zone)):
            if isinstance(outcome, DnsError):
                failures[kind] = str(outcome)
        if isinstance(mx, Answer):
            answers["MX"] = mx
        nameservers: tuple[Nameserver, ...] = ()
        if isinstance(zone, str):
            try:
                answers["NS"] = await dns.lookup(zone, "NS", follow=False)
                if settings.nameservers:
                    nameservers = await _probe_nameservers(dns, zone, answers["NS"].data, settings.ipv6_nameservers)
            except DnsError as exc:
                failures["NS"] = str(exc)
        takeover = await _takeover(ctx, target.asset, answers, settings.providers)
        return DnsObservation(answers, caa if isinstance(caa, Answer) else None,
                              zone if isinstance(zone, str) else None, nameservers, takeover, failures)

    def judge(self, target: Target, observation: DnsObservation, settings: DnsSettings,
              now: datetime) -> CheckOutcome:
        host = target.asset.host
        a, aaaa = observation.answers["A"], observation.answers["AAAA"]
        chain = a.chain or aaaa.chain
        results = [*_address(target.asset, a, aaaa, chain, observation.answers.get("MX")),
                   _dangling(host, a, aaaa, chain, observation.takeover)]
        if not chain and "NXDOMAIN" in (a.rcode, aaaa.rcode):
            # a name that does not exist has no certificates to restrict; its zone's servers, if any, are judged
            results += _nameservers(observation) if observation.zone else []
        else:
            caa = RuleResult("dns.caa_missing", Status.ERROR, f"CAA lookup failed: {observation.failures['CAA']}") \
                if "CAA" in observation.failures else _caa(host, observation.caa)
            results += [caa, *_nameservers(observation)]
        return CheckOutcome(results, _observed(host, observation))


async def _relevant_caa(dns: DnsClient, host: str) -> Answer | None:
    """RFC 8659 3: the CAA RRset of the name or its closest ancestor that has one (not above the org domain)."""
    boundary = organisational_domain(host) or host
    name = host
    while True:
        answer = await dns.lookup(name, "CAA")
        if answer.exists:
            return answer
        if name == boundary or "." not in name:
            return None
        name = name.split(".", 1)[1]


async def _zone_apex(dns: DnsClient, host: str) -> str | None:
    """The closest enclosing name with its own NS records (a CNAME is never an apex)."""
    boundary = organisational_domain(host)
    name = host
    while True:
        answer = await dns.lookup(name, "NS", follow=False)
        if answer.exists and not answer.chain:
            return name
        if name == boundary or "." not in name:
            return None
        name = name.split(".", 1)[1]


async def _attempt(lookup: Awaitable[T]) -> T | DnsError:
    try:
        return await lookup
    except DnsError as exc:
        return exc


async def _probe_nameservers(dns: DnsClient, zone: str, listed: list[str], ipv6: bool) -> tuple[Nameserver, ...]:
    """Every nameserver of the zone: those in its own NS set and those the parent delegates to (with glue)."""
    delegated = await dns.delegation(zone)
    names = list(dict.fromkeys([*listed, *delegated]))
    return tuple(await asyncio.gather(*(_probe_nameserver(dns, name, zone, ipv6, delegated.get(name, []))
                                        for name in names)))


async def _probe_nameserver(dns: DnsClient, name: str, zone: str, ipv6: bool, glue: list[str]) -> Nameserver:
    kinds = ("A", "AAAA") if ipv6 else ("A",)
    try:
        addresses = [address for kind in kinds for address in (await dns.lookup(name, kind)).data]
    except DnsError as exc:
        if not glue:
            return Nameserver(name, (), (), str(exc))
        addresses = []
    addresses = list(dict.fromkeys(addresses + [g for g in glue if ipv6 or ":" not in g]))
    if not addresses:
        return Nameserver(name, (), (), f"{name} has no {'/'.join(kinds)} record")
    authorities = await asyncio.gather(*(dns.probe_authority(address, zone) for address in addresses))
    return Nameserver(name, tuple(addresses), tuple(authorities))


async def _takeover(ctx: ScanContext, asset: Asset, answers: dict[str, Answer],
                    providers: TakeoverFile) -> Takeover | None:
    """Fetch the alias target when it belongs to a provider with a known "no such site" page."""
    a, aaaa = answers["A"], answers["AAAA"]
    chain = a.chain or aaaa.chain
    provider = next((p for name in reversed(chain) for p in providers.providers if p.covers(name)), None)
    addresses = a.data + aaaa.data
    if provider is None or not provider.fingerprints or not addresses:
        return None
    scheme, port = ("http", asset.http_port) if asset.http_port else ("https", asset.https_port)
    default = 80 if scheme == "http" else 443
    url = f"{scheme}://{asset.host}{'' if port == default else f':{port}'}/"
    try:
        fetched = await ctx.http.get(url, address=addresses[0], verify=False)
    except ProbeError as exc:
        return Takeover(provider.name, url, None, str(exc))
    body = fetched.body.decode("utf-8", "replace")
    return Takeover(provider.name, url, next((text for text in provider.fingerprints if text in body), None))


def _address(asset: Asset, a: Answer, aaaa: Answer, chain: tuple[str, ...], mx: Answer | None) -> list[RuleResult]:
    host = asset.host
    if chain:
        return []  # an alias that leads nowhere is the dangling-CNAME finding, not this one
    if a.exists or aaaa.exists:
        return [RuleResult("dns.no_address", Status.PASS, f"{host} resolves to {', '.join(a.data + aaaa.data)}")]
    exchangers = [record for record in (mx.data if mx else []) if record.split()[-1:] != ["."]]
    if exchangers and not asset.has_web_role:  # a mail-only domain has deliberately no address
        return [RuleResult("dns.no_address", Status.PASS, f"{host} has no address but receives mail (MX "
                           f"{', '.join(exchangers)}) and no web service is configured for it: a mail-only domain",
                           {"mx": exchangers})]
    why = "does not exist (NXDOMAIN)" if "NXDOMAIN" in (a.rcode, aaaa.rcode) else "has no A or AAAA record"
    return [RuleResult("dns.no_address", Status.FAIL, f"{host} {why}", {"response_code": a.rcode})]


def _dangling(host: str, a: Answer, aaaa: Answer, chain: tuple[str, ...], takeover: Takeover | None) -> RuleResult:
    rule = "dns.dangling_cname"
    if not chain:
        return RuleResult(rule, Status.PASS, f"{host} is not an alias (no CNAME)")
    path = " -> ".join((host, *chain))
    evidence: dict[str, object] = {"cname_chain": list(chain), "target": chain[-1]}
    if not (a.exists or aaaa.exists) and "NXDOMAIN" in (a.rcode, aaaa.rcode):
        return RuleResult(rule, Status.FAIL, f"{path}: the alias target does not exist (NXDOMAIN); whoever "
                                             f"registers {chain[-1]} controls {host}", evidence)
    if takeover is not None:
        evidence |= {"provider": takeover.provider, "url": takeover.url}
        if takeover.error is not None:
            return RuleResult(rule, Status.ERROR, f"{path}: cannot fetch {takeover.url} to compare with "
                                                  f"{takeover.provider}'s unclaimed-site page: {takeover.error}",
                              evidence)
        if takeover.fingerprint is not None:
            return RuleResult(rule, Status.FAIL, f"{path}: {takeover.provider} answers with its unclaimed-site "
                                                 f"page ({takeover.fingerprint!r}); the resource can be claimed",
                              evidence | {"fingerprint": takeover.fingerprint})
    return RuleResult(rule, Status.PASS, f"{path}: the alias target exists", evidence)


def _caa(host: str, caa: Answer | None) -> RuleResult:
    if caa is None:
        return RuleResult("dns.caa_missing", Status.FAIL,
                          f"no CAA record at {host} or its parents: any certification authority may issue for it")
    where = caa.name if caa.name == host else f"{caa.name} (inherited)"
    return RuleResult("dns.caa_missing", Status.PASS, f"CAA at {where}: {'; '.join(caa.data)}",
                      {"caa": caa.data, "owner": caa.name})


def _nameservers(observation: DnsObservation) -> list[RuleResult]:
    if observation.zone is None or "NS" in observation.failures:
        reason = observation.failures.get("NS", "no zone apex with NS records found up to the registrable domain")
        return [RuleResult(rule, Status.ERROR, reason)
                for rule in ("dns.nameserver_lame", "dns.nameserver_unreachable")]
    zone = observation.zone
    lame: list[RuleResult] = []
    unreachable: list[RuleResult] = []
    for server in observation.nameservers:
        if server.resolution_error is not None:
            unreachable.append(RuleResult(
                "dns.nameserver_unreachable", Status.FAIL,
                f"nameserver {server.name} of {zone} cannot be reached: {server.resolution_error}",
                {"nameserver": server.name, "zone": zone}, subject=server.name))
            continue
        verdicts = {authority.verdict for authority in server.authorities}
        detail = "; ".join(f"{a.address}: {a.detail}" for a in server.authorities if a.verdict != "authoritative")
        evidence = {"nameserver": server.name, "zone": zone, "addresses": list(server.addresses),
                    "answers": {a.address: a.detail for a in server.authorities}}
        if "lame" in verdicts:
            lame.append(RuleResult("dns.nameserver_lame", Status.FAIL,
                                   f"nameserver {server.name} is not authoritative for {zone} ({detail})",
                                   evidence, subject=server.name))
        elif "unreachable" in verdicts:
            some = "does not answer" if verdicts == {"unreachable"} else "does not answer on every address"
            unreachable.append(RuleResult("dns.nameserver_unreachable", Status.FAIL,
                                          f"nameserver {server.name} of {zone} {some} ({detail})",
                                          evidence, subject=server.name))
    names = ", ".join(server.name for server in observation.nameservers) or "none probed"
    if not lame:
        lame.append(RuleResult("dns.nameserver_lame", Status.PASS, f"nameservers of {zone} answer "
                                                                   f"authoritatively ({names})"))
    if not unreachable:
        unreachable.append(RuleResult("dns.nameserver_unreachable", Status.PASS,
                                      f"every nameserver of {zone} answers ({names})"))
    return lame + unreachable


def _observed(host: str, observation: DnsObservation) -> dict[str, object]:
    answers = observation.answers
    a = answers["A"]
    ecs = a.ecs()
    for kind in ("AAAA", "MX", "NS"):
        if kind in answers:
            ecs["answers"] += [record.ecs() for record in answers[kind].records]
    if observation.caa is not None:
        ecs["answers"] += [record.ecs() for record in observation.caa.records]
    ecs["resolved_ip"] = a.data + answers["AAAA"].data
    ecs["question"]["registered_domain"] = organisational_domain(host)
    records = {
        "a": a.data, "aaaa": answers["AAAA"].data, "cname": list(a.chain or answers["AAAA"].chain),
        "mx": answers["MX"].data if "MX" in answers else [],
        "ns": answers["NS"].data if "NS" in answers else [],
        "caa": observation.caa.data if observation.caa else [], "zone": observation.zone,
        **({"lookup_failures": observation.failures} if observation.failures else {}),
    }
    return {"dns": ecs, "dns_records": records}


CHECK = DnsRecordsCheck()
