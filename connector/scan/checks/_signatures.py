"""Signatures for the exposure check: what a debugger, a stack trace or an admin login looks like, on any page.

Each signature (mappings/exposure.yaml) names what it recognises and how much that leaks, so a finding takes the
worst severity seen, and its evidence says which signature matched, with a short excerpt. The excerpt has its
secrets masked: stack traces quote connection strings and keys, and a finding travels to a SIEM many people read.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.core.model import Severity

EXCERPT_CHARS = 300
MASK = "***"


def compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return value


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    rule: str = Field(pattern=r"^exposure\.[a-z_]+$")
    severity: Severity
    regex: str
    where: Literal["anywhere", "admin_paths"] = "anywhere"

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return compiles(value)


@dataclass(frozen=True)
class SignatureMatch:
    signature: Signature
    excerpt: str

    @property
    def evidence(self) -> dict[str, str]:
        return {"signature": self.signature.name, "severity": self.signature.severity.value,
                "excerpt": self.excerpt}


def strongest_matches(text: str, signatures: Iterable[Signature], *, admin_path: bool) -> dict[str, SignatureMatch]:
    """Per rule, the most severe signature found in ``text`` (the first listed among equals)."""
    found: dict[str, SignatureMatch] = {}
    for signature in signatures:
        if signature.where == "admin_paths" and not admin_path:
            continue
        known = found.get(signature.rule)
        if known is not None and known.signature.severity.rank >= signature.severity.rank:
            continue
        match = re.search(signature.regex, text)
        if match is not None:
            found[signature.rule] = SignatureMatch(signature, excerpt(text, match))
    return found


_TAG = re.compile(r"<[^>]*>")


def excerpt(text: str, match: re.Match[str]) -> str:
    """The matched text and what follows it (where a trace names files and errors), as plain text, secrets masked.

    Masking runs on the raw HTML (table cells pair a setting with its value) and again on the text, both before
    the excerpt is cut: a secret cut in half no longer looks like one and would slip through.
    """
    start = text.rfind("<", 0, match.start())
    if start == -1 or ">" in text[start: match.start()]:  # a match inside a tag is cut from the tag's start
        start = match.start()
    window = mask_secrets(text[start: match.end() + 4 * EXCERPT_CHARS])
    plain = " ".join(html.unescape(_TAG.sub(" ", window)).split())
    return mask_secrets(plain)[:EXCERPT_CHARS]


# a name starts a word and is bounded, so a long run of letters costs one pass, not one per letter
_SECRET_NAME = (r"(?<![\w.-])[\w.-]{0,40}?(?:pass(?:word|wd|phrase)?|pwd|secret|token|key|credentials?|auth"
                r"|session(?:id)?|cookie|dsn|salt)[\w.-]{0,40}")
_CELL_BREAK = r"</t[dh]>\s*<td[^>]*>\s*(?:<[^>]+>\s*)*"
_SCHEME_WORD = r"(?:(?:bearer|basic|digest|token)\s+)?"
_SECRETS = (
    # scheme://user:password@host in URLs and connection strings; up to the last "@", the safe mistake
    re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s/]*(?=@)", re.IGNORECASE),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)", re.DOTALL),
    # NAME=value, "name": "value", 'name' => 'value', and <td>NAME</td><td>value</td> in environment tables
    re.compile(rf"""(?P<keep>(?P<name>{_SECRET_NAME})["']?\s*(?:=>|[:=]|{_CELL_BREAK})\s*["']?{_SCHEME_WORD})"""
               r"""(?:&amp;|[^\s"'<>&,;])+""", re.IGNORECASE),
    re.compile(r"(?P<keep>\b(?:bearer|basic)\s+)[\w.~+/=-]{8,}", re.IGNORECASE),
    # well-known key formats: AWS access keys, Stripe, GitHub and Slack tokens, JWTs
    re.compile(r"\b(?:AKIA[0-9A-Z]{16}|[sprk]k_(?:live|test)_\w{8,}|gh[pousr]_\w{20,}|xox[abprs]-[\w-]{10,}"
               r"|eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]+)"),
)


def mask_secrets(text: str) -> str:
    """``text`` with passwords, tokens, keys and the password of connection strings replaced by ``***``."""
    for pattern in _SECRETS:
        text = pattern.sub(_masked, text)
    return text


def _masked(match: re.Match[str]) -> str:
    groups = match.groupdict()
    if (groups.get("name") or "").endswith(("Error", "Exception")):  # KeyError: 'x' names an exception
        return match.group(0)
    return (groups.get("keep") or "") + MASK
