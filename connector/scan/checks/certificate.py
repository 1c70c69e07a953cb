"""Certificate checks: validity dates, trust, served chain, host name, key strength and signature hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.model import Asset, CheckOutcome, RuleResult, Severity, Status, Target
from connector.probes.endpoint import endpoint_of
from connector.probes.tls.trust import TrustVerdict, assess_trust
from connector.probes.tls.x509 import WEAK_SIGNATURE_HASHES, CertificateInfo, describe, matches_host, parse_certificate
from connector.scan.checks.base import Check
from connector.scan.context import ScanContext


class CertificateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expiry_warning_days: int = Field(default=60, ge=1, le=3650, description="medium finding inside this window")
    expiry_critical_days: int = Field(default=30, ge=0, le=3650, description="high finding inside this window")
    min_rsa_bits: int = Field(default=2048, ge=512)
    min_ec_bits: int = Field(default=256, ge=160)
    aia_fetch: bool = Field(default=False, description="fetch a missing intermediate from the AIA caIssuers URL "
                            "(public addresses only, unless scan.outbound.allow lists the range)")

    @model_validator(mode="after")
    def _windows_ordered(self) -> CertificateSettings:
        if self.expiry_critical_days > self.expiry_warning_days:
            raise ValueError("expiry_critical_days must not exceed expiry_warning_days")
        return self


@dataclass(frozen=True)
class CertificateObservation:
    chain: tuple[CertificateInfo, ...]  # as served, leaf first
    obtained_from: str
    trust: TrustVerdict

    @property
    def leaf(self) -> CertificateInfo:
        return self.chain[0]


class CertificateCheck(Check[CertificateObservation, CertificateSettings]):
    name = "certificate"
    description = "certificate validity, trust, chain, host name, key and signature"
    settings_model = CertificateSettings

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, port, scheme="https") for port in asset.ports]

    async def observe(self, target: Target, ctx: ScanContext, settings: CertificateSettings) -> CertificateObservation:
        prober = ctx.tls_prober(target.asset, endpoint_of(target))
        ders, obtained_from = await prober.served_chain()
        obtained_from += f" with {(await prober.address())[0]}"  # the address scanned, as the scan resolved it
        certificates = [parse_certificate(der) for der in ders]
        trust = await assess_trust(certificates, ctx.trust_store, ctx.now,
                                   ctx.fetch_public if settings.aia_fetch else None)
        return CertificateObservation(tuple(describe(cert) for cert in certificates), obtained_from, trust)

    def judge(
        self, target: Target, observation: CertificateObservation, settings: CertificateSettings, now: datetime
    ) -> CheckOutcome:
        leaf, trust = observation.leaf, observation.trust
        results = [
            *_validity(leaf, settings, now),
            _hostname(leaf, target.asset.host),
            _weak_key(leaf, settings),
            _weak_signature(observation.chain),
            RuleResult(
                "cert.self_signed", Status.FAIL if trust.self_signed else Status.PASS,
                "the certificate is self-signed" if trust.self_signed else "the certificate is issued by a CA",
                {"issuer": leaf.issuer},
            ),
        ]
        if not trust.self_signed:
            results.append(_chain_incomplete(trust))
            results.append(_untrusted(trust))
        observed = {
            "x509": leaf.ecs(now),
            "tls_server": {
                "hash": {"sha256": leaf.sha256, "sha1": leaf.sha1},
                "not_after": leaf.not_after.isoformat(),
                "not_before": leaf.not_before.isoformat(),
                "subject": leaf.subject,
                "issuer": leaf.issuer,
            },
            "certificate": {
                "days_left": leaf.days_left(now),
                "obtained_from": observation.obtained_from,
                "chain": [{"subject": cert.subject, "issuer": cert.issuer, "sha256": cert.sha256}
                          for cert in observation.chain],
                "trusted": trust.trusted,
                "trust_reason": trust.reason,
            },
        }
        return CheckOutcome(results, observed)


def _validity(leaf: CertificateInfo, settings: CertificateSettings, now: datetime) -> list[RuleResult]:
    dates = {"not_before": leaf.not_before.isoformat(), "not_after": leaf.not_after.isoformat(),
             "days_left": leaf.days_left(now)}
    expired = now > leaf.not_after
    early = now < leaf.not_before
    results = [
        RuleResult("cert.expired", Status.FAIL if expired else Status.PASS,
                   f"expired on {leaf.not_after:%Y-%m-%d}" if expired else f"valid until {leaf.not_after:%Y-%m-%d}",
                   dates),
        RuleResult("cert.not_yet_valid", Status.FAIL if early else Status.PASS,
                   f"not valid before {leaf.not_before:%Y-%m-%d}" if early else "validity period has started", dates),
    ]
    if not expired:
        days = leaf.days_left(now)
        severity: Severity | None = None
        if days <= settings.expiry_critical_days:
            severity = Severity.HIGH
        elif days <= settings.expiry_warning_days:
            severity = Severity.MEDIUM
        results.append(RuleResult(
            "cert.expiring_soon", Status.FAIL if severity else Status.PASS,
            f"expires in {days} days, on {leaf.not_after:%Y-%m-%d}",
            {**dates, "warning_days": settings.expiry_warning_days, "critical_days": settings.expiry_critical_days},
            severity=severity,
        ))
    return results


def _hostname(leaf: CertificateInfo, host: str) -> RuleResult:
    evidence = {"host": host, "alternative_names": list(leaf.alternative_names),
                "subject_common_name": list(leaf.subject_common_names)}
    if matches_host(leaf, host):
        return RuleResult("cert.hostname_mismatch", Status.PASS, f"the certificate covers {host}", evidence)
    message = f"the certificate does not cover {host}"
    if not leaf.alternative_names and host in leaf.subject_common_names:
        message += " (the name is only in the subject CN; browsers require a subjectAltName)"
    elif leaf.alternative_names:
        message += f"; it names {', '.join(leaf.alternative_names[:5])}"
    return RuleResult("cert.hostname_mismatch", Status.FAIL, message, evidence)


def _weak_key(leaf: CertificateInfo, settings: CertificateSettings) -> RuleResult:
    algorithm, size = leaf.public_key_algorithm, leaf.public_key_size
    minimum = {"RSA": settings.min_rsa_bits, "DSA": settings.min_rsa_bits, "ECDSA": settings.min_ec_bits}.get(algorithm)
    evidence = {"public_key_algorithm": algorithm, "public_key_size": size, "minimum": minimum}
    if minimum is not None and size is not None and size < minimum:
        return RuleResult("cert.weak_key", Status.FAIL, f"{algorithm} key of {size} bits (minimum {minimum})", evidence)
    return RuleResult("cert.weak_key", Status.PASS, f"{algorithm} key of {size} bits", evidence)


def _weak_signature(chain: tuple[CertificateInfo, ...]) -> RuleResult:
    # A root's self-signature is never checked by clients, so only issued certificates count.
    weak = [cert for cert in chain if not cert.self_issued and cert.signature_hash in WEAK_SIGNATURE_HASHES]
    evidence = {"certificates": [{"subject": cert.subject, "signature_algorithm": cert.signature_algorithm}
                                 for cert in weak or chain[:1]]}
    if weak:
        names = ", ".join(f"{cert.subject_common_names[0] if cert.subject_common_names else cert.subject} "
                          f"({cert.signature_algorithm})" for cert in weak)
        return RuleResult("cert.weak_signature", Status.FAIL, f"signed with a broken hash: {names}", evidence)
    return RuleResult("cert.weak_signature", Status.PASS, f"signed with {chain[0].signature_algorithm}", evidence)


def _chain_incomplete(trust: TrustVerdict) -> RuleResult:
    evidence = {"fetched_issuers": list(trust.fetched_issuers), "reason": trust.reason}
    if trust.incomplete:
        return RuleResult("cert.chain_incomplete", Status.FAIL,
                          "the server does not send the intermediate certificate(s) needed to reach a root", evidence)
    return RuleResult("cert.chain_incomplete", Status.PASS, "the server sends a complete chain", evidence)


def _untrusted(trust: TrustVerdict) -> RuleResult:
    evidence = {"reason": trust.reason, "path": list(trust.path)}
    if trust.trusted is None:
        return RuleResult("cert.untrusted", Status.ERROR, f"trust could not be decided: {trust.reason}", evidence)
    if trust.trusted:
        return RuleResult("cert.untrusted", Status.PASS, "the chain leads to a trusted root", evidence)
    return RuleResult("cert.untrusted", Status.FAIL, f"the chain is not trusted: {trust.reason}", evidence)


CHECK = CertificateCheck()
