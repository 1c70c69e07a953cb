"""Published finite-field Diffie-Hellman groups, by the first 128 bits of SHA-256 over the prime (big-endian).

A server using one of these shares its group with much of the internet, which is what made precomputation
against 1024-bit groups (Logjam) pay off. The fingerprints were computed from OpenSSL 3's built-in named groups
and the RFC 2409 prime.
"""

from __future__ import annotations

import hashlib

_WELL_KNOWN = {
    "3f35a3f5f6c4376a744acad409bb22f8": "RFC 2409 Oakley group 2 (1024-bit MODP)",
    "44c55cfee5c075927cf682da5b681bde": "RFC 5114 1024-bit MODP with 160-bit subgroup",
    "bfe545862ca102ad1eeddb5fbfa5bf85": "RFC 5114 2048-bit MODP with 224-bit subgroup",
    "0b7835722cb619827610c2549fdda558": "RFC 5114 2048-bit MODP with 256-bit subgroup",
    "64fcc83ec403930bf18393dbc883ccaa": "RFC 3526 group 5 (1536-bit MODP)",
    "d66436f79bbd6b2e38c0ffbd079be904": "RFC 3526 group 14 (2048-bit MODP)",
    "48cf8b092fbce4359d9871abf74f98e2": "RFC 3526 group 15 (3072-bit MODP)",
    "4ee95187682bcb230ad26a95205f6920": "RFC 3526 group 16 (4096-bit MODP)",
    "d1bfe6d0925ce7e4da262b62861514a7": "RFC 3526 group 17 (6144-bit MODP)",
    "39ab4feab950a3128fb71accb9fc3965": "RFC 3526 group 18 (8192-bit MODP)",
    "9cd3b7f336872f46c09428d1bbc19877": "RFC 7919 ffdhe2048",
    "0eaf67db3a839156d5013494a5318a77": "RFC 7919 ffdhe3072",
    "4648414224ac881b3d0dc59b466f96d0": "RFC 7919 ffdhe4096",
    "227ac9066b3ddd9e193670cda2388fa8": "RFC 7919 ffdhe6144",
    "770b14efaf6f049929c523113b3fa99a": "RFC 7919 ffdhe8192",
}


def well_known_group(prime: int) -> str | None:
    """The published name of ``prime``'s group, or None for a group the server generated itself."""
    digest = hashlib.sha256(prime.to_bytes((prime.bit_length() + 7) // 8, "big")).hexdigest()
    return _WELL_KNOWN.get(digest[:32])
