"""Describe X.509 certificates in the vocabulary of ECS ``x509.*`` and match them against host names."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID, NameOID, SignatureAlgorithmOID

from connector.core.errors import ProbeError

# Go's crypto/x509 names, which ECS uses in its examples (``SHA256-RSA``).
_SIGNATURE_NAMES = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA1-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA224: "SHA224-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "SHA384-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512-RSA",
    SignatureAlgorithmOID.RSASSA_PSS: "RSAPSS",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "ECDSA-SHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "ECDSA-SHA224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ECDSA-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ECDSA-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ECDSA-SHA512",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "DSA-SHA1",
    SignatureAlgorithmOID.DSA_WITH_SHA224: "DSA-SHA224",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "DSA-SHA256",
    SignatureAlgorithmOID.ED25519: "Ed25519",
    SignatureAlgorithmOID.ED448: "Ed448",
}
_MD2_WITH_RSA = x509.ObjectIdentifier("1.2.840.113549.1.1.2")
_MD4_WITH_RSA = x509.ObjectIdentifier("1.2.840.113549.1.1.3")
WEAK_SIGNATURE_HASHES = {"MD2", "MD4", "MD5", "SHA1"}


@dataclass(frozen=True)
class CertificateInfo:
    """The facts about one certificate that findings and ECS events report."""

    subject: str
    subject_common_names: tuple[str, ...]
    issuer: str
    issuer_common_names: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    serial_number: str
    not_before: datetime
    not_after: datetime
    sha256: str
    sha1: str
    public_key_algorithm: str
    public_key_size: int | None
    public_key_curve: str | None
    signature_algorithm: str
    signature_hash: str | None
    version_number: str
    self_issued: bool
    ca_issuer_urls: tuple[str, ...]

    @property
    def alternative_names(self) -> tuple[str, ...]:
        return self.dns_names + self.ip_addresses

    def days_left(self, now: datetime) -> int:
        return int((self.not_after - now).total_seconds() // 86400)

    def ecs(self, now: datetime) -> dict[str, object]:
        """The ``x509.*`` field set as ECS defines it, plus ``days_left`` for our own namespace."""
        fields: dict[str, object] = {
            "subject": {"distinguished_name": self.subject, "common_name": list(self.subject_common_names)},
            "issuer": {"distinguished_name": self.issuer, "common_name": list(self.issuer_common_names)},
            "alternative_names": list(self.alternative_names),
            "serial_number": self.serial_number,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "public_key_algorithm": self.public_key_algorithm,
            "signature_algorithm": self.signature_algorithm,
            "version_number": self.version_number,
        }
        if self.public_key_size is not None:
            fields["public_key_size"] = self.public_key_size
        if self.public_key_curve is not None:
            fields["public_key_curve"] = self.public_key_curve
        return fields


def parse_certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ProbeError(f"the server sent a certificate that does not parse: {exc}") from exc


def describe(certificate: x509.Certificate) -> CertificateInfo:
    key = certificate.public_key()
    key_algorithm, key_size, curve = _key_facts(key)
    oid = certificate.signature_algorithm_oid
    signature_hash = signature_hash_name(certificate)
    name = _SIGNATURE_NAMES.get(oid) or {_MD2_WITH_RSA: "MD2-RSA", _MD4_WITH_RSA: "MD4-RSA"}.get(oid, oid.dotted_string)
    if name == "RSAPSS" and signature_hash:
        name = f"{signature_hash}-RSAPSS"
    dns_names, ip_addresses = _alternative_names(certificate)
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        subject_common_names=_common_names(certificate.subject),
        issuer=certificate.issuer.rfc4514_string(),
        issuer_common_names=_common_names(certificate.issuer),
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        serial_number=f"{certificate.serial_number:X}",
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        sha256=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        sha1=certificate.fingerprint(hashes.SHA1()).hex().upper(),
        public_key_algorithm=key_algorithm,
        public_key_size=key_size,
        public_key_curve=curve,
        signature_algorithm=name,
        signature_hash=signature_hash,
        version_number=str(certificate.version.value + 1),
        self_issued=certificate.subject == certificate.issuer,
        ca_issuer_urls=aia_issuer_urls(certificate),
    )


def _key_facts(key: object) -> tuple[str, int | None, str | None]:
    if isinstance(key, rsa.RSAPublicKey):
        return ("RSA", key.key_size, None)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ECDSA", key.curve.key_size, key.curve.name)
    if isinstance(key, dsa.DSAPublicKey):
        return ("DSA", key.key_size, None)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("Ed25519", 256, None)
    if isinstance(key, ed448.Ed448PublicKey):
        return ("Ed448", 456, None)
    return (type(key).__name__, None, None)


def signature_hash_name(certificate: x509.Certificate) -> str | None:
    oid = certificate.signature_algorithm_oid
    if oid == _MD2_WITH_RSA:
        return "MD2"
    if oid == _MD4_WITH_RSA:
        return "MD4"
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name.upper().replace("-", "") if algorithm else None


def _common_names(name: x509.Name) -> tuple[str, ...]:
    return tuple(str(attribute.value) for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME))


def _extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return certificate.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return None  # a malformed extension elsewhere in the certificate; reported through trust verification


def _alternative_names(certificate: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    extension = _extension(certificate, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if extension is None or not isinstance(extension.value, x509.SubjectAlternativeName):
        return ((), ())
    names = extension.value
    dns = tuple(name.lower() for name in names.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in names.get_values_for_type(x509.IPAddress))
    return (dns, ips)


def aia_issuer_urls(certificate: x509.Certificate) -> tuple[str, ...]:
    extension = _extension(certificate, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if extension is None or not isinstance(extension.value, x509.AuthorityInformationAccess):
        return ()
    return tuple(
        description.access_location.value
        for description in extension.value
        if description.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(description.access_location, x509.UniformResourceIdentifier)
    )


def matches_host(info: CertificateInfo, host: str) -> bool:
    """RFC 6125 matching as browsers do it: SANs only, a wildcard covers exactly one left-most label."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return str(address) in info.ip_addresses
    wanted = host.rstrip(".").lower()
    for name in info.dns_names:
        pattern = name.rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and pattern.count(".") >= 2:
            head, _, rest = wanted.partition(".")
            if head and rest == pattern[2:]:
                return True
    return False

