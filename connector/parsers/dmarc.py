"""DMARC policy records (RFC 7489 6.3, 6.4): selection among TXT strings and strict parsing of every known tag.

Unknown tags are ignored, as receivers must; an invalid value of a known tag is reported. A record whose ``p`` is
missing or invalid but which has a usable ``rua`` is treated as ``p=none`` (RFC 7489 6.6.3), as receivers do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connector.parsers.taglist import TagListError, parse_tags

POLICIES = ("none", "quarantine", "reject")  # weakest first
_VERSION = re.compile(r"^[vV]\s*=\s*DMARC1\s*(;|$)")  # tag names are case-insensitive ABNF, the value is not
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MAILTO = re.compile(rf"mailto:[^@\s]+@(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+", re.IGNORECASE)
_URI = re.compile(r"^(?P<uri>[A-Za-z][A-Za-z0-9+.-]*:[^!\s]+)(?:!\d+[kmgt]?)?$")


class DmarcSyntaxError(ValueError):
    """The record is not a valid DMARC record; receivers would not apply it."""


@dataclass(frozen=True)
class DmarcRecord:
    text: str
    policy: str | None  # None if missing or invalid
    subdomain_policy: str | None  # sp as written; None if absent
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())
    policy_usable: bool = True  # RFC 7489 6.6.3 step 6: a missing or invalid p, or an invalid sp, voids them

    @property
    def effective_policy(self) -> str | None:
        """What receivers apply: p, or none when the policy tags are unusable but reports can be sent."""
        if not self.policy_usable:
            return "none" if self.rua else None
        return self.policy

    @property
    def effective_subdomain_policy(self) -> str | None:
        if not self.policy_usable:
            return self.effective_policy
        return self.subdomain_policy or self.effective_policy

    def report_domains(self) -> list[str]:
        """Domains of the mailto: report destinations, in order, without duplicates."""
        domains = [uri.split("?", 1)[0].split("@", 1)[1].lower().rstrip(".") for uri in (*self.rua, *self.ruf)
                   if uri.lower().startswith("mailto:") and "@" in uri]
        return list(dict.fromkeys(domains))

    def summary(self) -> dict[str, object]:
        return {"record": self.text, "policy": self.policy, "subdomain_policy": self.subdomain_policy,
                "pct": self.pct, "adkim": self.adkim, "aspf": self.aspf, "rua": list(self.rua),
                "ruf": list(self.ruf)}


def dmarc_records(strings: list[str]) -> list[str]:
    """The TXT records that are DMARC records: those whose first tag is v=DMARC1 (RFC 7489 6.6.3 step 3)."""
    return [value for value in strings if _VERSION.match(value)]


def parse_dmarc(record: str) -> DmarcRecord:
    """Parse; raises DmarcSyntaxError when receivers could not apply the record at all."""
    try:
        tags = {name.lower(): value for name, value in parse_tags(record).items()}
    except TagListError as exc:
        raise DmarcSyntaxError(str(exc)) from None
    if tags.get("v") != "DMARC1" or next(iter(tags)) != "v":
        raise DmarcSyntaxError("the record must start with v=DMARC1")
    problems: list[str] = []
    policy = _choice(tags, "p", POLICIES, problems)
    if "p" not in tags:
        problems.append("the required p= tag is missing")
    subdomain_policy = _choice(tags, "sp", POLICIES, problems)
    usable = policy is not None and ("sp" not in tags or subdomain_policy is not None)
    adkim = _choice(tags, "adkim", ("r", "s"), problems) or "r"
    aspf = _choice(tags, "aspf", ("r", "s"), problems) or "r"
    pct = 100
    if "pct" in tags:
        if re.fullmatch(r"\d{1,3}", tags["pct"]) and int(tags["pct"]) <= 100:
            pct = int(tags["pct"])
        else:
            problems.append(f"pct={tags['pct']!r} is not a number from 0 to 100")
    rua = _uris(tags, "rua", problems)
    ruf = _uris(tags, "ruf", problems)
    for name, pattern in (("fo", r"[01ds](:[01ds])*"), ("ri", r"\d{1,10}"), ("rf", r"[A-Za-z0-9-]+(:[A-Za-z0-9-]+)*")):
        if name in tags and not re.fullmatch(pattern, tags[name]):
            problems.append(f"{name}={tags[name]!r} is invalid")
    if not usable and not rua:
        raise DmarcSyntaxError("; ".join(problems))
    return DmarcRecord(record, policy, subdomain_policy, pct, adkim, aspf, rua, ruf, tuple(problems), usable)


def _choice(tags: dict[str, str], name: str, allowed: tuple[str, ...], problems: list[str]) -> str | None:
    if name not in tags:
        return None
    value = tags[name].lower()
    if value not in allowed:
        problems.append(f"{name}={tags[name]!r} is not one of {', '.join(allowed)}")
        return None
    return value


def _uris(tags: dict[str, str], name: str, problems: list[str]) -> tuple[str, ...]:
    if name not in tags:
        return ()
    uris = []
    for item in (part.strip() for part in tags[name].split(",")):
        match = _URI.match(item)
        if not match:
            problems.append(f"{name}: {item!r} is not a URI (e.g. mailto:dmarc@example.com)")
            continue
        uri = match["uri"]
        if uri.lower().startswith("mailto:") and not _MAILTO.fullmatch(uri.split("?", 1)[0]):
            problems.append(f"{name}: {item!r} is not a valid mailto: address")
            continue
        uris.append(uri)
    return tuple(uris)
