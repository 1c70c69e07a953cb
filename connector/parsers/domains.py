"""Organisational (registrable) domains from the Public Suffix List, as DMARC (RFC 7489 3.2) and browsers use them."""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list bundled with the package: no download at scan time


def organisational_domain(name: str) -> str | None:
    """``mail.example.co.uk`` -> ``example.co.uk``; None for a public suffix itself or an empty name."""
    host = name.lower().rstrip(".")
    return _suffixes().privatesuffix(host) if host else None


def is_organisational(name: str) -> bool:
    return organisational_domain(name) == name.lower().rstrip(".")
