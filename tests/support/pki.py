"""A throwaway PKI for tests: a root, an intermediate, and leaves with any flaw a test needs.

cryptography refuses to sign with SHA-1, so weak-signature leaves are signed by the openssl command line.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Postern Tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Issued:
    certificate: x509.Certificate
    key: PrivateKey
    chain: list[x509.Certificate]  # what the server sends after the leaf

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """PEM files for a server: (certificate followed by the chain, key)."""
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                       for c in [self.certificate, *self.chain]))
        key_path.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return cert_path, key_path


class Authority:
    def __init__(self, common_name: str, issuer: Authority | None = None) -> None:
        self.key: PrivateKey = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(common_name)
        self.issuer = issuer
        signer_key = issuer.key if issuer else self.key
        builder = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(issuer.name if issuer else self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=30))
            .not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        self.certificate = builder.sign(signer_key, hashes.SHA256())

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate and its issuers below the root, as a server sends them."""
        chain = []
        authority: Authority | None = self
        while authority is not None and authority.issuer is not None:
            chain.append(authority.certificate)
            authority = authority.issuer
        return chain

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        names: list[str],
        *,
        days_valid: float = 365,
        starts_in_days: float = -1,
        key: PrivateKey | None = None,
        send_chain: bool = True,
        aia_url: str | None = None,
        signature_hash: str = "sha256",
        common_name: str | None = None,
    ) -> Issued:
        key = key or rsa.generate_private_key(65537, 2048)
        start = _now() + dt.timedelta(days=starts_in_days)
        end = _now() + dt.timedelta(days=days_valid)  # negative: already expired
        subject = _name(common_name or (names[0] if names else "no-san"))

        def builder(issuer_name: x509.Name) -> x509.CertificateBuilder:
            built = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            )
            if issuer_name == self.name:  # openssl takes an AKI naming another key as "not self-signed"
                built = built.add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            if names:
                built = built.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                                            critical=False)
            if aia_url:
                built = built.add_extension(x509.AuthorityInformationAccess([
                    x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS,
                                           x509.UniformResourceIdentifier(aia_url))]), critical=False)
            return built

        if signature_hash == "sha256":
            certificate = builder(self.name).sign(self.key, hashes.SHA256())
        else:
            # openssl re-signs only a certificate that verifies under its own key, so hand it a self-signed one.
            certificate = _resign_with_openssl(builder(subject).sign(key, hashes.SHA256()), self, signature_hash)
        return Issued(certificate, key, self.chain if send_chain else [])


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _resign_with_openssl(certificate: x509.Certificate, issuer: Authority, digest: str) -> x509.Certificate:
    """Re-sign ``certificate`` with a digest cryptography refuses (SHA-1, MD5), keeping every other field."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (folder / "ca.pem").write_bytes(issuer.pem())
        (folder / "ca.key").write_bytes(issuer.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        subprocess.run(
            ["openssl", "x509", "-in", "cert.pem", "-CA", "ca.pem", "-CAkey", "ca.key", f"-{digest}",
             "-set_serial", str(certificate.serial_number), "-out", "out.pem",
             "-days", "365"],
            cwd=folder, check=True, capture_output=True,
        )
        return x509.load_pem_x509_certificate((folder / "out.pem").read_bytes())


def self_signed(name: str, key: PrivateKey | None = None) -> Issued:
    key = key or rsa.generate_private_key(65537, 2048)
    subject = _name(name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key, [])


@dataclass
class Pki:
    root: Authority
    intermediate: Authority
    stranger: Authority  # a root nobody trusts
    bundle: Path  # trusts ``root`` only
