"""DNS lookups for the DNS and e-mail checks, through configurable resolvers, with answers told apart exactly.

A posture check must not mistake "the resolver failed" for "there is no record": an SPF check that reads a
SERVFAIL as "no SPF record" cries wolf, and one that reads it as "fine" hides a broken zone. So every lookup ends
in one of three ways: records, an authoritative absence (NXDOMAIN, or NODATA: the name exists without that type),
or a DnsError (SERVFAIL, REFUSED, timeouts, garbage), which checks turn into error findings.

The resolvers may be recursive (production) or the zone's authoritative servers themselves (tests, split-horizon
setups). Authoritative servers do not chase a CNAME out of their zone, so lookups follow CNAME chains themselves
when an answer stops at one. Answers are memoised per scan, so the SPF, DMARC, DKIM and MTA-STS checks of one
domain share their queries.

``probe_authority`` asks one nameserver directly, without recursion, whether it serves a zone: how lame and
unreachable delegations are found.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.core.errors import ProbeError

MAX_CNAME_HOPS = 8
_NAME_TYPES = frozenset({dns.rdatatype.NS, dns.rdatatype.CNAME, dns.rdatatype.MX, dns.rdatatype.PTR})
UDP_PAYLOAD = 1232  # the DNS flag day 2020 EDNS buffer size: avoids fragmentation, TCP for the rest


class ResolverSettings(BaseModel):
    """Which resolvers the DNS and e-mail checks ask, and how patiently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nameservers: tuple[str, ...] = Field(default=(), description="resolver IP addresses; none: /etc/resolv.conf")
    port: int = Field(default=53, ge=1, le=65535)
    timeout: float = Field(default=3.0, gt=0, le=60, description="seconds per query to one resolver")
    attempts: int = Field(default=2, ge=1, le=5, description="rounds over the resolvers before giving up")
    tcp_fallback: bool = Field(default=True, description="retry over TCP when UDP is truncated or unanswered")
    nameserver_port: int = Field(default=53, ge=1, le=65535,
                                 description="port of authoritative nameservers asked directly (lame delegation)")

    @field_validator("nameservers")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"nameservers are IP addresses, got {server!r}") from None
        return value


class DnsError(ProbeError):
    """The lookup got no usable answer (SERVFAIL, REFUSED, timeout, a malformed reply): not "no record"."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="dns")


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    ttl: int
    data: str  # presentation form; TXT as its character-strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)
    rdata: dns.rdata.Rdata = field(compare=False, repr=False)

    def ecs(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "class": "IN", "ttl": self.ttl, "data": self.data}


@dataclass(frozen=True)
class Answer:
    """What the DNS says about (name, type): records, or NXDOMAIN / NODATA; ``chain`` lists CNAMEs followed."""

    name: str
    type: str
    rcode: str  # NOERROR or NXDOMAIN
    records: tuple[Record, ...] = ()
    chain: tuple[str, ...] = ()  # CNAME targets, in order; the records belong to the last one

    @property
    def exists(self) -> bool:
        return bool(self.records)

    @property
    def void(self) -> bool:
        """NXDOMAIN or NODATA: what RFC 7208 4.6.4 calls a void lookup."""
        return not self.records

    @property
    def data(self) -> list[str]:
        return [record.data for record in self.records]

    @property
    def canonical_name(self) -> str:
        return self.chain[-1] if self.chain else self.name

    def ecs(self) -> dict[str, Any]:
        """The ECS ``dns.*`` fields of this lookup."""
        cnames = []
        owner = self.name
        for target in self.chain:
            cnames.append({"name": owner, "type": "CNAME", "class": "IN", "data": target})
            owner = target
        addresses = [r.data for r in self.records if r.type in ("A", "AAAA")]
        return {
            "question": {"name": self.name, "type": self.type, "class": "IN"},
            "answers": cnames + [record.ecs() for record in self.records],
            "response_code": self.rcode,
            **({"resolved_ip": addresses} if addresses else {}),
        }


@dataclass(frozen=True)
class Authority:
    """How one nameserver address answered "SOA of <zone>?" without recursion."""

    address: str
    verdict: str  # "authoritative", "lame" or "unreachable"
    detail: str


def text(rdata: dns.rdata.Rdata) -> str:
    """Presentation form, with TXT character-strings joined and names without their final dot."""
    if rdata.rdtype == dns.rdatatype.TXT:
        # undecodable bytes become U+FFFD, so parsers see a non-ASCII record instead of a different name
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    presentation = str(rdata.to_text())
    if rdata.rdtype in _NAME_TYPES and presentation.endswith(".") and not presentation.endswith(" .") \
            and presentation != ".":
        return presentation[:-1]  # www.example.com, but a null MX stays "0 ."
    return presentation


def absolute(name: str) -> str:
    return name.rstrip(".").lower() + "."


def relative(name: str) -> str:
    return name.rstrip(".").lower()


class DnsClient:
    """Memoised lookups for one scan against the configured resolvers."""

    def __init__(self, settings: ResolverSettings) -> None:
        self.settings = settings
        self.nameservers = list(settings.nameservers) or _system_nameservers()
        self._answers: dict[tuple[str, str, bool], asyncio.Task[Answer]] = {}
        self.queries = 0

    async def lookup(self, name: str, rdtype: str, *, follow: bool = True) -> Answer:
        """Records of ``rdtype`` at ``name`` (following CNAMEs unless ``follow`` is off); DnsError if unknowable."""
        try:
            dns.name.from_text(absolute(name))
        except (dns.exception.DNSException, ValueError) as exc:
            raise DnsError(f"{name!r} is not a valid domain name: {exc}") from None
        key = (relative(name), rdtype.upper(), follow)
        task = self._answers.get(key)
        if task is None:
            task = asyncio.ensure_future(self._lookup(*key))
            self._answers[key] = task
        return await asyncio.shield(task)

    async def addresses(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            found += (await self.lookup(name, rdtype)).data
        return found

    async def _lookup(self, name: str, rdtype: str, follow: bool) -> Answer:
        chain: list[str] = []
        current = name
        for _ in range(MAX_CNAME_HOPS + 1):
            response = await self._ask(current, rdtype)
            records, cnames, rcode = _read(response, current, rdtype, follow)
            for target in cnames:
                if target in chain or target == name:
                    raise DnsError(f"{name} {rdtype}: CNAME loop through {target}")
                chain.append(target)
            if records or not follow or not cnames or rcode == "NXDOMAIN":
                return Answer(name, rdtype, rcode, tuple(records), tuple(chain))
            current = chain[-1]  # an authoritative server stopped at a CNAME out of its zone: chase it
        raise DnsError(f"{name} {rdtype}: more than {MAX_CNAME_HOPS} CNAMEs")

    async def _ask(self, name: str, rdtype: str) -> dns.message.Message:
        """One question to the resolvers in turn, until one gives a usable answer."""
        query = dns.message.make_query(absolute(name), rdtype, use_edns=0, payload=UDP_PAYLOAD)
        failures: list[str] = []
        for _ in range(self.settings.attempts):
            for server in self.nameservers:
                self.queries += 1
                try:
                    response = await self._exchange(query, server, self.settings.port)
                except DnsError as exc:
                    failures.append(str(exc))
                    continue
                rcode = response.rcode()
                if _is_referral(response):
                    failures.append(f"a referral from {server}, which does not recurse")
                elif rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                    return response
                else:
                    failures.append(f"{dns.rcode.to_text(rcode)} from {server}")
        unique = list(dict.fromkeys(failures))
        raise DnsError(f"{relative(name)} {rdtype}: no usable answer ({'; '.join(unique)})")

    async def _exchange(self, query: dns.message.Message, server: str, port: int) -> dns.message.Message:
        timeout = self.settings.timeout
        where = f"{server}:{port}" if ":" not in server else f"[{server}]:{port}"
        try:
            if self.settings.tcp_fallback:
                try:
                    response, _ = await dns.asyncquery.udp_with_fallback(query, server, timeout=timeout, port=port)
                except dns.exception.Timeout:
                    response = await dns.asyncquery.tcp(query, server, timeout=timeout, port=port)
            else:
                response = await dns.asyncquery.udp(query, server, timeout=timeout, port=port)
        except dns.exception.Timeout:
            raise DnsError(f"timed out after {timeout:g}s asking {where}") from None
        except ConnectionRefusedError:
            raise DnsError(f"{where}: connection refused") from None
        except (ConnectionResetError, EOFError):
            raise DnsError(f"{where} closed the connection before answering") from None
        except OSError as exc:
            raise DnsError(f"{where}: {exc.strerror or exc}") from None
        except dns.exception.DNSException as exc:  # FormError, TrailingJunk, BadLabelType, UnexpectedSource...
            raise DnsError(f"malformed answer from {where}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # the wire is untrusted input: whatever dnspython trips on is an error finding
            raise DnsError(f"{where}: {type(exc).__name__} {exc}".rstrip()) from None
        if response.flags & dns.flags.TC:
            raise DnsError(f"truncated answer from {where} and tcp_fallback is off")
        return response

    async def delegation(self, zone: str) -> dict[str, list[str]]:
        """The NS set the parent zone hands out for ``zone`` (name -> glue addresses), asked of the parent's own
        servers without recursion: the half of a delegation resolvers see first and the zone's NS set may hide.

        Empty when the parent cannot be found or asked (a best effort: the child's NS set is still checked).
        """
        parent = relative(zone).partition(".")[2]
        if not parent:
            return {}
        try:
            servers = [address for name in (await self.lookup(parent, "NS", follow=False)).data
                       for address in (await self.lookup(name, "A")).data]
        except DnsError:
            return {}
        query = dns.message.make_query(absolute(zone), "NS", use_edns=0, payload=UDP_PAYLOAD)
        query.flags &= ~dns.flags.RD
        owner = dns.name.from_text(absolute(zone))
        for server in servers:
            try:
                response = await self._exchange(query, server, self.settings.nameserver_port)
            except DnsError:
                continue
            referral = _find(response.authority, owner, dns.rdatatype.NS) or _find(response.answer, owner,
                                                                                  dns.rdatatype.NS)
            if referral is None:
                continue
            glue: dict[str, list[str]] = {}
            for rdata in referral:
                target = rdata.target
                glue[relative(target.to_text())] = [text(r) for kind in (dns.rdatatype.A, dns.rdatatype.AAAA)
                                                    if (rrset := _find(response.additional, target, kind))
                                                    for r in rrset]
            return glue
        return {}

    async def probe_authority(self, address: str, zone: str) -> Authority:
        """Ask ``address`` (on ``nameserver_port``) for the zone's SOA without recursion, as a resolver would."""
        query = dns.message.make_query(absolute(zone), "SOA", use_edns=0, payload=UDP_PAYLOAD)
        query.flags &= ~dns.flags.RD
        try:
            response = await self._exchange(query, address, self.settings.nameserver_port)
        except DnsError as exc:
            return Authority(address, "unreachable", str(exc))
        rcode = dns.rcode.to_text(response.rcode())
        soa = response.get_rrset(response.answer, dns.name.from_text(absolute(zone)), dns.rdataclass.IN,
                                 dns.rdatatype.SOA)
        if rcode == "NOERROR" and response.flags & dns.flags.AA and soa is not None:
            return Authority(address, "authoritative", "answers with the zone's SOA, authoritatively")
        if rcode != "NOERROR":
            return Authority(address, "lame", f"answers {rcode} for the zone")
        if response.authority and not response.flags & dns.flags.AA:
            return Authority(address, "lame", "answers with a referral, not authoritatively")
        return Authority(address, "lame", "answers without the zone's SOA or without the authoritative flag")


def _is_referral(response: dns.message.Message) -> bool:
    """NOERROR, nothing answered, NS but no SOA in authority, not authoritative: a non-recursive server pointing
    elsewhere. Taking it for "no record" would report missing SPF or DMARC records that exist."""
    if response.rcode() != dns.rcode.NOERROR or response.answer or response.flags & dns.flags.AA:
        return False
    kinds = {rrset.rdtype for rrset in response.authority}
    return dns.rdatatype.NS in kinds and dns.rdatatype.SOA not in kinds


def _read(response: dns.message.Message, name: str, rdtype: str,
          follow: bool) -> tuple[list[Record], list[str], str]:
    """Records of ``rdtype`` at the end of the CNAME chain in the answer section, and the chain itself."""
    wanted = dns.rdatatype.from_text(rdtype)
    owner = dns.name.from_text(absolute(name))
    cnames: list[str] = []
    for _ in range(MAX_CNAME_HOPS + 1):
        rrset = _find(response.answer, owner, wanted)
        if rrset is not None:
            return ([Record(relative(owner.to_text()), rdtype, rrset.ttl, text(rdata), rdata) for rdata in rrset],
                    cnames, "NOERROR")
        cname = _find(response.answer, owner, dns.rdatatype.CNAME) if follow and wanted != dns.rdatatype.CNAME \
            else None
        if cname is None:
            break
        owner = cname[0].target
        cnames.append(relative(owner.to_text()))
    return [], cnames, dns.rcode.to_text(response.rcode())


def _find(section: Sequence[dns.rrset.RRset], owner: dns.name.Name,
          rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == owner and rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN:
            return rrset
    return None


def _system_nameservers() -> list[str]:
    try:
        return [str(server) for server in dns.resolver.Resolver().nameservers]
    except dns.resolver.NoResolverConfiguration:
        return ["127.0.0.1"]
