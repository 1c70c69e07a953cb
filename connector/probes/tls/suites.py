"""Cipher suites, classified by the weaknesses a posture check cares about.

The classes are derived from the IANA names, so a suite added to the registry table is classified without
touching this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from connector.probes.tls.iana import IANA_CIPHER_SUITES


class SuiteClass(StrEnum):
    """A family of suites that one probe can ask about in a single ClientHello."""

    NULL = "null"
    ANONYMOUS = "anonymous"
    EXPORT = "export"
    RC4 = "rc4"
    DES = "des"  # DES, 3DES and the other 64-bit block ciphers (IDEA, RC2): Sweet32
    STATIC_KX = "static_kx"  # static RSA or static (EC)DH key exchange: no forward secrecy
    CBC = "cbc"


WEAK_CLASSES: tuple[SuiteClass, ...] = tuple(SuiteClass)

_NON_INTERACTIVE_KX = re.compile(r"(^|_)(PSK|SRP|KRB5|ECCPWD|GOST)")
_STATIC_KX = {"RSA", "RSA_EXPORT", "RSA_EXPORT1024", "RSA_FIPS", "DH_RSA", "DH_DSS", "ECDH_RSA", "ECDH_ECDSA"}
_STATIC_KX_EXPORT = {"DH_DSS_EXPORT", "DH_RSA_EXPORT"}
_SIXTY_FOUR_BIT_BLOCK = ("DES", "IDEA", "RC2")


@dataclass(frozen=True)
class CipherSuite:
    code: int
    name: str
    key_exchange: str
    encryption: str
    tls13: bool
    classes: frozenset[SuiteClass]

    @property
    def needs_preshared_secret(self) -> bool:
        """PSK, SRP and Kerberos suites cannot be negotiated by an anonymous scanner; never offer them."""
        return bool(_NON_INTERACTIVE_KX.search(self.key_exchange))

    @property
    def finite_field_dh(self) -> bool:
        """DHE and DH_anon suites send their group in the ServerKeyExchange (the PSK variants are never offered)."""
        return self.key_exchange.startswith(("DHE_", "DH_anon")) and not self.needs_preshared_secret


def _classify(code: int, name: str) -> CipherSuite:
    bare = name.removeprefix("OLD_").removeprefix("TLS_").removeprefix("SSL_")
    if "_WITH_" not in bare:
        # TLS 1.3 suites name only the AEAD and hash; the integrity-only ones (RFC 9150) carry no cipher.
        encryption = "NULL" if re.fullmatch(r"SHA\d+_SHA\d+", bare) else bare
        classes = frozenset({SuiteClass.NULL}) if encryption == "NULL" else frozenset()
        return CipherSuite(code, name, "ANY", encryption, True, classes)
    key_exchange, encryption = bare.split("_WITH_", 1)
    found: set[SuiteClass] = set()
    if encryption.startswith("NULL"):
        found.add(SuiteClass.NULL)
    if "anon" in key_exchange:
        found.add(SuiteClass.ANONYMOUS)
    if "EXPORT" in key_exchange or "EXPORT" in encryption:
        found.add(SuiteClass.EXPORT)
    if "RC4" in encryption:
        found.add(SuiteClass.RC4)
    if any(cipher in encryption for cipher in _SIXTY_FOUR_BIT_BLOCK):
        found.add(SuiteClass.DES)
    if key_exchange in _STATIC_KX or key_exchange in _STATIC_KX_EXPORT:
        found.add(SuiteClass.STATIC_KX)
    if "_CBC" in encryption:
        found.add(SuiteClass.CBC)
    return CipherSuite(code, name, key_exchange, encryption, False, frozenset(found))


@cache
def all_suites() -> dict[int, CipherSuite]:
    return {code: _classify(code, name) for code, name in IANA_CIPHER_SUITES.items()}


def suite(code: int) -> CipherSuite:
    """The suite for a code point; unknown code points get a placeholder name rather than an error."""
    known = all_suites().get(code)
    if known is not None:
        return known
    return CipherSuite(code, f"UNKNOWN_0x{code:04X}", "UNKNOWN", "UNKNOWN", False, frozenset())


def suite_by_name(name: str) -> CipherSuite | None:
    for candidate in all_suites().values():
        if candidate.name == name:
            return candidate
    return None


# What a current browser offers first, so a server that honours client order picks what a browser would get.
_BROWSER_ORDER = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x009E, 0x009F, 0xCCAA, 0xC009, 0xC013,
                  0xC00A, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035)

TLS13_SUITES: tuple[int, ...] = (0x1301, 0x1302, 0x1303, 0x1304, 0x1305)


@cache
def offerable_legacy_suites() -> tuple[int, ...]:
    """Every pre-TLS-1.3 suite an anonymous client can negotiate, browser favourites first."""
    rest = sorted(
        code for code, candidate in all_suites().items()
        if not candidate.tls13 and not candidate.needs_preshared_secret and code not in _BROWSER_ORDER
    )
    return _BROWSER_ORDER + tuple(rest)


def legacy_suites_in(classes: set[SuiteClass] | frozenset[SuiteClass]) -> tuple[int, ...]:
    """Offerable suites that belong to at least one of ``classes``."""
    return tuple(code for code in offerable_legacy_suites() if all_suites()[code].classes & classes)


@cache
def finite_field_dh_suites() -> tuple[int, ...]:
    """Offerable suites with an ephemeral finite-field DH key exchange, to learn the server's DH group."""
    return tuple(code for code in offerable_legacy_suites() if all_suites()[code].finite_field_dh)
