"""SPF records (RFC 7208): selecting the record among TXT strings and parsing it term by term, strictly.

A syntax error makes a receiver's evaluation end in "permerror" (RFC 7208 4.6), which DMARC treats as no SPF at
all, so the parser rejects exactly what section 12's ABNF rejects and says which term is wrong. Evaluating the
DNS-querying terms (include chains, the lookup limits) needs the resolver and lives in connector/checks/spf.py.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})  # each costs one of the ten lookups (4.6.4)
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

_VERSION = re.compile(r"^v=spf1(?: |$)", re.IGNORECASE)
_MODIFIER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_MACRO = re.compile(r"%\{(?P<letter>[slodiphcrtvSLODIPHCRTV])(?P<digits>\d*)(?P<reverse>[rR]?)"
                    r"(?P<delimiters>[.\-+,/_=]*)\}|%%|%_|%-")
_LITERAL = re.compile(r"[\x21-\x24\x26-\x7e]")
_TOPLABEL = re.compile(r"^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])$")
_DUAL_CIDR = re.compile(r"(?:/(?P<v4>0|[1-9]\d?))?(?://(?P<v6>0|[1-9]\d{0,2}))?$")


class SpfSyntaxError(ValueError):
    """The record would make receivers return "permerror"; the message names the offending term."""


@dataclass(frozen=True)
class Term:
    text: str
    name: str  # lower-case mechanism or modifier name
    qualifier: str = "+"
    value: str | None = None  # domain-spec, network, or modifier value
    is_modifier: bool = False

    @property
    def queries_dns(self) -> bool:
        return self.name in DNS_MECHANISMS or (self.is_modifier and self.name == "redirect")

    @property
    def result(self) -> str:
        return QUALIFIERS[self.qualifier]


@dataclass(frozen=True)
class SpfRecord:
    text: str
    terms: tuple[Term, ...]

    @property
    def mechanisms(self) -> list[Term]:
        return [term for term in self.terms if not term.is_modifier]

    @property
    def all(self) -> Term | None:
        return next((term for term in self.mechanisms if term.name == "all"), None)

    @property
    def redirect(self) -> str | None:
        """The redirect target, unless an ``all`` makes it unreachable (RFC 7208 6.1)."""
        if self.all is not None:
            return None
        return next((term.value for term in self.terms if term.is_modifier and term.name == "redirect"), None)

    @property
    def is_null(self) -> bool:
        """``v=spf1 -all`` (an exp= may ride along): the domain declares it sends no mail at all."""
        return [term.text.lower() for term in self.mechanisms] == ["-all"] and self.redirect is None

    @property
    def evaluated(self) -> list[Term]:
        """Mechanisms a receiver can reach: none after the first ``all`` (RFC 7208 5.1)."""
        reached: list[Term] = []
        for term in self.mechanisms:
            reached.append(term)
            if term.name == "all":
                break
        return reached


def spf_records(strings: list[str]) -> list[str]:
    """The TXT records that are SPF records (RFC 7208 4.5): those starting with exactly ``v=spf1``."""
    return [value for value in strings if _VERSION.match(value)]


def parse_spf(record: str) -> SpfRecord:
    if not _VERSION.match(record):
        raise SpfSyntaxError("the record does not start with v=spf1")
    if not record.isascii():
        raise SpfSyntaxError("the record contains non-ASCII characters")
    terms = tuple(_term(text) for text in record.split(" ")[1:] if text)
    for name in ("redirect", "exp"):
        if sum(1 for term in terms if term.is_modifier and term.name == name) > 1:
            raise SpfSyntaxError(f"the {name}= modifier appears more than once")
    return SpfRecord(record, terms)


def _term(text: str) -> Term:
    match = re.match(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", text)
    if match:
        name, value = match[1].lower(), match[2]
        if name in ("redirect", "exp"):
            _domain_spec(value, text)  # exp= names a domain; %{c}, %{r}, %{t} belong in the text found there
        else:
            _macro_string(value, text)
        return Term(text, name, value=value, is_modifier=True)
    qualifier = text[0] if text[0] in QUALIFIERS else "+"
    body = text[1:] if text[0] in QUALIFIERS else text
    name, separator, argument = _split_mechanism(body)
    if name not in MECHANISMS:
        raise SpfSyntaxError(f"unknown mechanism {text!r}")
    if name == "all":
        if separator:
            raise SpfSyntaxError(f"{text!r}: 'all' takes no argument")
        return Term(text, name, qualifier)
    if name in ("include", "exists"):
        if separator != ":" or not argument:
            raise SpfSyntaxError(f"{text!r}: {name} needs a domain (e.g. {name}:_spf.example.com)")
        _domain_spec(argument, text)
        return Term(text, name, qualifier, argument)
    if name in ("ip4", "ip6"):
        if separator != ":" or not argument:
            raise SpfSyntaxError(f"{text!r}: {name} needs a network")
        _network(name, argument, text)
        return Term(text, name, qualifier, argument)
    if separator == ":":  # a, mx, ptr with a domain (a and mx may end in CIDR lengths)
        spec = _strip_cidr(argument, text) if name in ("a", "mx") else argument
        if not spec:
            raise SpfSyntaxError(f"{text!r}: empty domain after ':'")
        _domain_spec(spec, text)
        return Term(text, name, qualifier, spec)
    if separator == "/":
        if name == "ptr" or _strip_cidr("/" + argument, text):
            raise SpfSyntaxError(f"{text!r}: invalid CIDR length")
        return Term(text, name, qualifier)
    if separator:
        raise SpfSyntaxError(f"unknown mechanism {text!r}")
    return Term(text, name, qualifier)


def expand_domain(spec: str, domain: str) -> str | None:
    """Expand the macros of a domain-spec that only depend on the current domain (%{d}, RFC 7208 7.3).

    None when the spec uses the sender's address, local part, IP or HELO: those differ per message, so the
    term can be counted but not followed by a static check.
    """
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("%%", "%_", "%-"):
            return {"%%": "%", "%_": " ", "%-": "%20"}[token]
        if match["letter"].lower() != "d":
            raise LookupError(token)
        parts = re.split("[" + re.escape(match["delimiters"] or ".") + "]", domain)
        if match["reverse"]:
            parts.reverse()
        digits = match["digits"]
        # ten digits or more exceed any DNS name's label count (and int() refuses thousands of them): all parts
        if digits and len(digits) < 10 and int(digits):
            parts = parts[-int(digits):]
        return ".".join(parts)

    try:
        return _MACRO.sub(replace, spec)
    except LookupError:
        return None


def _strip_cidr(argument: str, text: str) -> str:
    """``example.com/24//64`` -> ``example.com``, checking the IPv4 (0-32) and IPv6 (0-128) prefix lengths."""
    match = _DUAL_CIDR.search(argument)
    if match is None or not match.group(0):
        return argument
    if (match["v4"] and int(match["v4"]) > 32) or (match["v6"] and int(match["v6"]) > 128):
        raise SpfSyntaxError(f"{text!r}: invalid CIDR length")
    return argument[:match.start()]


def _split_mechanism(body: str) -> tuple[str, str, str]:
    match = re.match(r"^([A-Za-z0-9]+)([:/]?)(.*)$", body)
    if not match:
        raise SpfSyntaxError(f"unknown mechanism {body!r}")
    return match[1].lower(), match[2], match[3]


def _network(name: str, value: str, text: str) -> None:
    address, slash, length = value.partition("/")
    if slash and not length:
        raise SpfSyntaxError(f"{text!r}: '/' without a CIDR length")
    if "%" in address:
        raise SpfSyntaxError(f"{text!r}: a zone index is not allowed in an SPF network")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise SpfSyntaxError(f"{text!r}: {address!r} is not an IPv{name[-1]} address") from None
    if (name == "ip4") != (parsed.version == 4):
        raise SpfSyntaxError(f"{text!r}: {address!r} is not an IPv{name[-1]} address")
    limit = 32 if name == "ip4" else 128
    if length and not (re.fullmatch(r"0|[1-9]\d{0,2}", length) and int(length) <= limit):
        raise SpfSyntaxError(f"{text!r}: CIDR length must be 0-{limit}")


def _macro_string(value: str, text: str, *, explanation: bool = False) -> None:
    position = 0
    while position < len(value):
        macro = _MACRO.match(value, position)
        if macro:
            letter = (macro["letter"] or "").lower()
            if letter in ("c", "r", "t") and not explanation:
                raise SpfSyntaxError(f"{text!r}: macro %{{{letter}}} is only allowed in explanations")
            position = macro.end()
        elif _LITERAL.match(value, position):
            position += 1
        else:
            raise SpfSyntaxError(f"{text!r}: invalid character or macro at {value[position:]!r}")


def _domain_spec(value: str, text: str) -> None:
    """RFC 7208 7.1: a macro-string ending in a top label or a macro (so a bare IP address is not a domain)."""
    _macro_string(value, text)
    if any(match.end() == len(value) for match in _MACRO.finditer(value)):
        return
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if len(labels) < 2 or not _TOPLABEL.match(labels[-1]) or any(not label for label in labels):
        raise SpfSyntaxError(f"{text!r}: {value!r} is not a valid domain")
    if "%" not in name and (len(name) > 253 or any(len(label) > 63 for label in labels)):
        raise SpfSyntaxError(f"{text!r}: {value!r} is longer than DNS allows (labels 63, names 253 characters)")
