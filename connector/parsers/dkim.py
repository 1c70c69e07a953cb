"""DKIM public key records (RFC 6376 3.6.1, RFC 8463 for Ed25519): tags, key type and key size."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from connector.parsers.taglist import TagListError, parse_tags


class DkimSyntaxError(ValueError):
    """Verifiers cannot use the record (RFC 6376 6.1.2: the signature would fail with a permanent error)."""


@dataclass(frozen=True)
class DkimKey:
    record: str
    key_type: str  # rsa or ed25519
    bits: int | None  # None when revoked
    revoked: bool  # empty p=
    testing: bool  # t=y
    flags: tuple[str, ...]

    def summary(self) -> dict[str, object]:
        return {"record": self.record[:200], "key_type": self.key_type, "key_bits": self.bits,
                "revoked": self.revoked, "testing": self.testing}


def parse_dkim(record: str) -> DkimKey:
    try:
        tags = parse_tags(record)
    except TagListError as exc:
        raise DkimSyntaxError(str(exc)) from None
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        raise DkimSyntaxError("v= must be the first tag and be DKIM1")
    if "p" not in tags:
        raise DkimSyntaxError("the required p= tag (the public key) is missing")
    key_type = tags.get("k", "rsa").lower()
    if key_type not in ("rsa", "ed25519"):
        raise DkimSyntaxError(f"unknown key type k={tags['k']!r}")
    flags = tuple(flag.strip() for flag in tags.get("t", "").split(":") if flag.strip())
    encoded = re.sub(r"\s+", "", tags["p"])
    if not encoded:
        return DkimKey(record, key_type, None, True, "y" in flags, flags)
    try:
        material = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise DkimSyntaxError("p= is not valid base64") from None
    return DkimKey(record, key_type, _bits(key_type, material), False, "y" in flags, flags)


def _bits(key_type: str, material: bytes) -> int:
    if key_type == "ed25519":
        if len(material) != 32:
            raise DkimSyntaxError(f"an Ed25519 key is 32 bytes, p= holds {len(material)}")
        return 256
    try:
        key = load_der_public_key(material)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DkimSyntaxError("p= does not hold a DER-encoded RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise DkimSyntaxError(f"k=rsa but p= holds a {type(key).__name__}")
    return key.key_size
