"""Does the served chain lead to a trusted root, and if not, why: self-signed, incomplete, or untrusted?

Validity dates and the host name are judged by their own rules, so trust is verified at a moment inside the
leaf's validity and without a name: an expired certificate from a good CA is "expired", not also "untrusted".
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from connector.core.errors import ConfigError, ProbeError
from connector.probes.http import Fetched
from connector.probes.tls.x509 import WEAK_SIGNATURE_HASHES, aia_issuer_urls, signature_hash_name

AIA_LIMIT = 64 * 1024  # a CA certificate or a small PKCS#7 bundle; anything larger is refused, not parsed
IssuerFetch = Callable[[str], Awaitable[Fetched]]
_SHA256 = hashes.SHA256()


@dataclass(frozen=True)
class TrustStore:
    source: str
    roots: tuple[x509.Certificate, ...]

    def contains(self, certificate: x509.Certificate) -> bool:
        return certificate in self.roots

    def issuer_known(self, certificate: x509.Certificate) -> bool:
        return any(root.subject == certificate.issuer for root in self.roots)


@cache
def load_trust_store(ca_bundle: Path | None) -> TrustStore:
    """The configured CA bundle, else the system store, else certifi's copy of Mozilla's."""
    if ca_bundle is None:
        system = ssl.get_default_verify_paths().cafile
        path = Path(system) if system and Path(system).is_file() else Path(certifi.where())
    else:
        path = ca_bundle
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # system stores carry a few roots with non-RFC serials
            roots = tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except OSError as exc:
        raise ConfigError(f"CA bundle {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"CA bundle {path}: not a PEM certificate bundle ({exc})") from None
    if not roots:
        raise ConfigError(f"CA bundle {path}: contains no certificates")
    return TrustStore(str(path), roots)


@dataclass(frozen=True)
class TrustVerdict:
    trusted: bool | None  # None: could not tell (the missing issuer could not be fetched)
    self_signed: bool
    incomplete: bool  # the server did not send an intermediate needed to reach a root
    fetched_issuers: tuple[str, ...]  # intermediates we fetched through AIA to complete the chain
    reason: str
    path: tuple[str, ...]  # subjects from leaf to anchor, when verified


def _verify(
    store: TrustStore, leaf: x509.Certificate, intermediates: list[x509.Certificate], moment: datetime
) -> list[x509.Certificate]:
    verifier = (
        PolicyBuilder()
        .store(Store(list(store.roots)))
        .time(moment)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    return list(verifier.verify(leaf, intermediates).chain)


def _verification_moment(leaf: x509.Certificate, now: datetime) -> datetime:
    """Now, or the nearest instant at which the leaf was (or will be) valid."""
    return min(max(now, leaf.not_valid_before_utc), leaf.not_valid_after_utc)


def _is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _walk_issuers(leaf: x509.Certificate, served: list[x509.Certificate], store: TrustStore) -> x509.Certificate | bool:
    """Follow issuer names through the served certificates.

    Returns True when the walk reaches a certificate issued by a trust-store root, False when it ends at an
    untrusted self-signed certificate or loops, and the certificate whose issuer nobody sent otherwise.
    """
    current, seen = leaf, {leaf.fingerprint(_SHA256)}
    while True:
        if store.issuer_known(current):
            return True
        if _is_self_signed(current):
            return False
        parent = next((cert for cert in served if cert.subject == current.issuer), None)
        if parent is None:
            return current
        marker = parent.fingerprint(_SHA256)
        if marker in seen:
            return False
        seen.add(marker)
        current = parent


async def assess_trust(
    served: list[x509.Certificate], store: TrustStore, now: datetime, fetch: IssuerFetch | None
) -> TrustVerdict:
    """``fetch``: how to get an AIA issuer the server did not send; None when AIA fetching is off."""
    leaf, intermediates = served[0], served[1:]
    moment = _verification_moment(leaf, now)
    if _is_self_signed(leaf):
        trusted = store.contains(leaf)
        reason = "self-signed certificate is in the trust store" if trusted else "self-signed certificate"
        return TrustVerdict(trusted, True, False, (), reason, (leaf.subject.rfc4514_string(),) if trusted else ())
    try:
        chain = _verify(store, leaf, intermediates, moment)
    except VerificationError as exc:
        failure = str(exc)
    else:
        return TrustVerdict(True, False, False, (), "chain verified", _subjects(chain))
    orphan = _walk_issuers(leaf, served, store)
    if orphan is True or orphan is False:
        if orphan and any(signature_hash_name(cert) in WEAK_SIGNATURE_HASHES for cert in served):
            # The verifier refuses SHA-1/MD5 outright. The chain reaches a trusted root by name, and the broken
            # signature hash is reported by cert.weak_signature; one cause, one finding.
            return TrustVerdict(True, False, False, (),
                                "chain reaches a trusted root, but signatures use a broken hash", ())
        return TrustVerdict(False, False, False, (), f"chain does not verify: {failure}", ())
    fetched, failures = await _fetch_issuers(orphan, fetch) if fetch is not None else ([], ["AIA fetching is off"])
    missing = [cert for cert in fetched if not _is_self_signed(cert)]
    if not missing:
        if orphan is not leaf or fetched:
            # The served chain ends at a CA whose issuer is a root we do not trust: complete, but untrusted.
            return TrustVerdict(False, False, False, (),
                                f"chain ends at {orphan.issuer.rfc4514_string()}, which is not a trusted root", ())
        return TrustVerdict(
            None, False, True, (),
            f"issuer {orphan.issuer.rfc4514_string()} not served and not fetchable through AIA"
            + (f" ({'; '.join(failures)})" if failures else ""), (),
        )
    try:
        chain = _verify(store, leaf, intermediates + missing, moment)
    except VerificationError as exc:
        return TrustVerdict(False, False, True, _subjects(missing), f"chain does not verify even with AIA: {exc}", ())
    return TrustVerdict(True, False, True, _subjects(missing), "chain verified after fetching the issuer",
                        _subjects(chain))


async def _fetch_issuers(certificate: x509.Certificate,
                         fetch: IssuerFetch) -> tuple[list[x509.Certificate], list[str]]:
    """Follow the AIA caIssuers URLs (RFC 5280, 4.2.2.1): DER, PEM or a certs-only PKCS#7 bundle; and why each
    URL that gave nothing was passed over."""
    failures: list[str] = []
    for url in aia_issuer_urls(certificate):
        if not url.startswith(("http://", "https://")):
            failures.append(f"{url}: not an http(s) URL")
            continue
        try:
            response = await fetch(url)
        except ProbeError as exc:
            failures.append(str(exc) if url in str(exc) else f"{url}: {exc}")
            continue
        if response.status != 200 or response.truncated or len(response.body) > AIA_LIMIT:
            failures.append(f"{url}: status {response.status}" if response.status != 200
                            else f"{url}: more than {AIA_LIMIT} bytes")
            continue
        for loader in (_load_der, x509.load_pem_x509_certificates, pkcs7.load_der_pkcs7_certificates):
            try:
                certificates = loader(response.body)
            except ValueError:
                continue
            if certificates:
                return certificates, []
        failures.append(f"{url}: not a certificate")
    return [], failures


def _load_der(body: bytes) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(body)]


def _subjects(chain: list[x509.Certificate]) -> tuple[str, ...]:
    return tuple(cert.subject.rfc4514_string() for cert in chain)
