"""MTA-STS (RFC 8461) TXT records and policy files, and TLS-RPT (RFC 8460) records."""

from __future__ import annotations

import re
from dataclasses import dataclass

from connector.parsers.taglist import TagListError, parse_tags

MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: at most one year


class MtaStsSyntaxError(ValueError):
    """Senders would treat the domain as having no usable policy (RFC 8461 3.1, 3.2)."""


@dataclass(frozen=True)
class StsPolicy:
    mode: str  # enforce, testing or none
    max_age: int
    mx: tuple[str, ...]

    def matches(self, host: str) -> bool:
        """RFC 8461 4.1: exact names, or ``*.example.net`` covering exactly one more left-most label."""
        name = host.lower().rstrip(".")
        for pattern in (written.lower().rstrip(".") for written in self.mx):
            if pattern.startswith("*."):
                head, _, rest = name.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def sts_records(strings: list[str]) -> list[str]:
    return [value for value in strings if re.match(r"v=STSv1[ \t]*(;|$)", value)]


def parse_sts_record(record: str) -> str:
    """The policy id of a ``_mta-sts`` TXT record."""
    tags = _versioned_tags(record, "STSv1")
    policy_id = tags.get("id", "")
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", policy_id):
        raise MtaStsSyntaxError(f"id={policy_id!r} must be 1 to 32 letters and digits")
    return policy_id


def parse_sts_policy(body: str) -> StsPolicy:
    """The policy file: ``key: value`` lines; unknown keys are extensions and ignored."""
    fields: dict[str, list[str]] = {}
    for number, line in enumerate(re.split(r"\r?\n", body), start=1):
        if not line.strip():
            continue
        key, separator, value = line.partition(":")
        if not separator or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", key.strip()):
            raise MtaStsSyntaxError(f"line {number} is not 'key: value': {line[:80]!r}")
        fields.setdefault(key.strip(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise MtaStsSyntaxError("version: STSv1 is missing")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise MtaStsSyntaxError(f"mode: {mode!r} is not enforce, testing or none")
    age = (fields.get("max_age") or [""])[0]
    if not re.fullmatch(r"\d{1,10}", age) or int(age) > MAX_AGE_LIMIT:
        raise MtaStsSyntaxError(f"max_age: {age!r} must be 0 to {MAX_AGE_LIMIT} seconds")
    mx = tuple(fields.get("mx", []))
    if mode != "none" and not mx:
        raise MtaStsSyntaxError(f"mode {mode} needs at least one mx: line")
    for pattern in mx:
        if not re.fullmatch(r"(\*\.)?([A-Za-z0-9-]+\.)+[A-Za-z0-9-]+\.?", pattern):
            raise MtaStsSyntaxError(f"mx: {pattern!r} is not a host name or *.domain pattern")
    return StsPolicy(mode, int(age), mx)


def tlsrpt_records(strings: list[str]) -> list[str]:
    return [value for value in strings if re.match(r"v=TLSRPTv1[ \t]*(;|$)", value)]


def parse_tlsrpt(record: str) -> tuple[str, ...]:
    """The report destinations (``rua``) of a ``_smtp._tls`` TXT record."""
    tags = _versioned_tags(record, "TLSRPTv1")
    if "rua" not in tags:
        raise MtaStsSyntaxError("rua= (where reports go) is missing")
    destinations = tuple(item.strip() for item in tags["rua"].split(","))
    for item in destinations:
        if not re.fullmatch(r"(mailto:[^@\s]+@[^@\s]+|https://\S+)", item, re.IGNORECASE):
            raise MtaStsSyntaxError(f"rua: {item!r} is neither mailto: nor https:")
    return destinations


def _versioned_tags(record: str, version: str) -> dict[str, str]:
    """The tags of a record whose first tag must be ``v=<version>`` (RFC 8461 3.1, RFC 8460 3)."""
    try:
        tags = parse_tags(record)
    except TagListError as exc:
        raise MtaStsSyntaxError(str(exc)) from None
    if next(iter(tags), None) != "v" or tags["v"] != version:
        raise MtaStsSyntaxError(f"the record must start with v={version}")
    return tags
