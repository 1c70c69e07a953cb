"""Protocol versions and cipher suites: which the server accepts, asked with as few ClientHellos as possible.

One hello per protocol version tells which versions are accepted. Weak suites are then asked about as classes:
a hello offering every still-undecided weak suite either gets a rejection (none of them is accepted: decided in
one round trip) or a ServerHello naming one, whose classes are then decided, and the rest are asked again.
The DH group of a DHE suite is read from the ServerKeyExchange of a hello that already chose one, else from one
more hello offering only DHE suites. A hardened TLS 1.2/1.3 server is fully described by seven connections.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Severity, Status, Target
from connector.probes.endpoint import endpoint_of
from connector.probes.tls.dh_groups import well_known_group
from connector.probes.tls.prober import HelloAnswer, TlsProber
from connector.probes.tls.suites import WEAK_CLASSES, SuiteClass, finite_field_dh_suites, legacy_suites_in, suite
from connector.probes.tls.wire import TlsVersion
from connector.scan.checks.base import Check, NoSettings
from connector.scan.context import ScanContext


@dataclass(frozen=True)
class ClassVerdict:
    accepted: bool | None  # None: a probe failed before the class was decided
    suite: str | None = None
    version: TlsVersion | None = None
    detail: str = ""


@dataclass(frozen=True)
class VersionVerdict:
    accepted: bool | None
    detail: str
    suite: str | None = None


@dataclass(frozen=True)
class DhVerdict:
    accepted: bool | None  # whether a DHE suite is accepted; None: the probe failed
    detail: str
    suite: str | None = None
    version: TlsVersion | None = None
    bits: int | None = None
    group: str | None = None  # the published name of a well-known group


@dataclass(frozen=True)
class ProtocolObservation:
    versions: dict[TlsVersion, VersionVerdict]
    classes: dict[SuiteClass, ClassVerdict]
    dh: DhVerdict
    default_version: TlsVersion | None
    default_suite: str | None
    connections: int = 0
    notes: list[str] = field(default_factory=list)


VERSION_RULES = {
    TlsVersion.SSL3: "tls.protocol.sslv3",
    TlsVersion.TLS1_0: "tls.protocol.tls10",
    TlsVersion.TLS1_1: "tls.protocol.tls11",
}
CLASS_RULES = {
    SuiteClass.NULL: "tls.cipher.null",
    SuiteClass.ANONYMOUS: "tls.cipher.anonymous",
    SuiteClass.EXPORT: "tls.cipher.export",
    SuiteClass.RC4: "tls.cipher.rc4",
    SuiteClass.DES: "tls.cipher.des",
    SuiteClass.STATIC_KX: "tls.cipher.static_kx",
    SuiteClass.CBC: "tls.cipher.cbc",
}
_CLASS_WORDS = {
    SuiteClass.NULL: "a suite without encryption",
    SuiteClass.ANONYMOUS: "an anonymous (unauthenticated) suite",
    SuiteClass.EXPORT: "an EXPORT-grade suite",
    SuiteClass.RC4: "an RC4 suite",
    SuiteClass.DES: "a DES/3DES (64-bit block) suite",
    SuiteClass.STATIC_KX: "a suite with static RSA/DH key exchange (no forward secrecy)",
    SuiteClass.CBC: "a CBC-mode suite",
}


async def probe_versions(prober: TlsProber) -> dict[TlsVersion, VersionVerdict]:
    async def ask(version: TlsVersion) -> VersionVerdict:
        try:
            answer = await prober.hello(version)
        except ProbeError as exc:
            return VersionVerdict(None, str(exc))
        return VersionVerdict(answer.accepted, answer.reason, answer.suite_name if answer.accepted else None)

    verdicts = await asyncio.gather(*(ask(version) for version in TlsVersion))
    return dict(zip(TlsVersion, verdicts, strict=True))


async def probe_weak_classes(
    prober: TlsProber, accepted: list[TlsVersion]
) -> dict[SuiteClass, ClassVerdict]:
    legacy = sorted((v for v in accepted if v <= TlsVersion.TLS1_2), reverse=True)
    decided: dict[SuiteClass, ClassVerdict] = {}

    def record(answer: HelloAnswer) -> None:
        if answer.accepted and answer.cipher_suite is not None:
            chosen = suite(answer.cipher_suite)
            for suite_class in chosen.classes - decided.keys():
                decided[suite_class] = ClassVerdict(True, chosen.name, answer.offered_version, "server hello")

    for version in legacy:  # the version probes' own choices are free answers
        record(await prober.hello(version))
    failure: str | None = None
    for version in legacy:
        pending = set(WEAK_CLASSES) - decided.keys()
        while pending:
            try:
                answer = await prober.hello(version, legacy_suites_in(pending))
            except ProbeError as exc:
                failure = str(exc)
                break
            if not answer.accepted:
                break
            before = set(decided)
            record(answer)
            learned = set(decided) - before
            pending -= learned
            if not learned:
                break  # the chosen suite taught nothing new; do not loop on a confused server
        if failure:
            break
    for suite_class in WEAK_CLASSES:
        if suite_class not in decided:
            decided[suite_class] = (
                ClassVerdict(None, detail=failure) if failure else ClassVerdict(False, detail="rejected by the server")
            )
    return decided


async def probe_dh_group(prober: TlsProber, accepted: list[TlsVersion]) -> DhVerdict:
    """The DH group of an accepted DHE suite: from a hello already answered if one chose DHE, else from one more."""
    legacy = [version for version in accepted if version <= TlsVersion.TLS1_2]
    seen = [answer for answer in prober.answers_so_far()
            if answer.accepted and answer.cipher_suite is not None and suite(answer.cipher_suite).finite_field_dh]
    if not seen and legacy:
        try:
            answer = await prober.hello(max(legacy), finite_field_dh_suites())
        except ProbeError as exc:
            return DhVerdict(None, str(exc))
        if not answer.accepted:
            return DhVerdict(False, f"no DHE suite accepted ({answer.reason})")
        seen = [answer]
    if not seen:
        return DhVerdict(False, "no DHE suite accepted (TLS 1.3 only)")
    answer = max(seen, key=lambda candidate: candidate.offered_version)
    name, version = answer.suite_name, answer.offered_version
    if answer.dh is None:
        return DhVerdict(None, f"{name} accepted but its DH group could not be read: {answer.dh_error}", name, version)
    return DhVerdict(True, "server key exchange", name, version, answer.dh.bits, well_known_group(answer.dh.prime))


class TlsProtocolCheck(Check[ProtocolObservation, NoSettings]):
    name = "tls"
    description = "accepted protocol versions, weak cipher suites and the default negotiated suite"

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, port, scheme="https") for port in asset.ports]

    async def observe(self, target: Target, ctx: ScanContext, settings: NoSettings) -> ProtocolObservation:
        prober = ctx.tls_prober(target.asset, endpoint_of(target))
        versions = await probe_versions(prober)
        if all(verdict.accepted is None for verdict in versions.values()):
            raise ProbeError(next(iter(versions.values())).detail)
        accepted = [version for version, verdict in versions.items() if verdict.accepted]
        if not accepted and not any(verdict.accepted is None for verdict in versions.values()):
            reasons = sorted({verdict.detail for verdict in versions.values()})
            raise ProbeError(f"{target}: the server rejected every protocol version ({'; '.join(reasons)})")
        classes = await probe_weak_classes(prober, accepted)
        dh = await probe_dh_group(prober, accepted)
        default = max(accepted) if accepted else None
        return ProtocolObservation(
            versions=versions,
            classes=classes,
            dh=dh,
            default_version=default,
            default_suite=versions[default].suite if default else None,
            connections=prober.connections,
        )

    def judge(
        self, target: Target, observation: ProtocolObservation, settings: NoSettings, now: datetime
    ) -> CheckOutcome:
        versions = observation.versions
        results = [_version_result(rule, version, versions[version]) for version, rule in VERSION_RULES.items()]
        modern = [versions[TlsVersion.TLS1_2].accepted, versions[TlsVersion.TLS1_3].accepted]
        if True in modern:
            results.append(RuleResult("tls.protocol.no_modern", Status.PASS, "TLS 1.2 or 1.3 is accepted"))
        elif None in modern:
            results.append(RuleResult("tls.protocol.no_modern", Status.ERROR,
                                      "could not tell whether TLS 1.2 or 1.3 is accepted"))
        else:
            results.append(RuleResult("tls.protocol.no_modern", Status.FAIL,
                                      "the server accepts neither TLS 1.2 nor TLS 1.3"))
        tls13 = versions[TlsVersion.TLS1_3]
        results.append(RuleResult(
            "tls.protocol.no_tls13",
            Status.ERROR if tls13.accepted is None else Status.PASS if tls13.accepted else Status.FAIL,
            tls13.detail if tls13.accepted is None else
            "TLS 1.3 is accepted" if tls13.accepted else "TLS 1.3 is not accepted",
        ))
        for suite_class, rule in CLASS_RULES.items():
            results.append(_class_result(rule, suite_class, observation.classes[suite_class]))
        results.append(_dh_result(observation.dh))
        accepted = [version.label for version, verdict in versions.items() if verdict.accepted]
        observed: dict[str, object] = {
            "tls_scan": {
                "accepted_versions": accepted,
                "weak_suites": {c.value: v.suite for c, v in observation.classes.items() if v.accepted},
                "connections": observation.connections,
            },
        }
        if observation.default_version is not None:
            protocol, number = observation.default_version.ecs
            observed["tls"] = {"version_protocol": protocol, "version": number, "cipher": observation.default_suite}
        return CheckOutcome(results, observed)


def _version_result(rule: str, version: TlsVersion, verdict: VersionVerdict) -> RuleResult:
    evidence = {"protocol": version.label, "accepted": verdict.accepted, "detail": verdict.detail}
    if verdict.accepted is None:
        return RuleResult(rule, Status.ERROR, f"could not tell whether {version.label} is accepted: {verdict.detail}",
                          evidence)
    if verdict.accepted:
        return RuleResult(rule, Status.FAIL, f"{version.label} is accepted (negotiated {verdict.suite})",
                          {**evidence, "suite": verdict.suite})
    return RuleResult(rule, Status.PASS, f"{version.label} is refused ({verdict.detail})", evidence)


def _class_result(rule: str, suite_class: SuiteClass, verdict: ClassVerdict) -> RuleResult:
    evidence = {"class": suite_class.value, "accepted": verdict.accepted, "suite": verdict.suite,
                "protocol": verdict.version.label if verdict.version else None}
    words = _CLASS_WORDS[suite_class]
    if verdict.accepted is None:
        return RuleResult(rule, Status.ERROR, f"could not tell whether {words} is accepted: {verdict.detail}",
                          evidence)
    if verdict.accepted:
        protocol = verdict.version.label if verdict.version else "?"
        return RuleResult(rule, Status.FAIL, f"accepts {words}: {verdict.suite} over {protocol}", evidence)
    return RuleResult(rule, Status.PASS, f"refuses {words}", evidence)


def _dh_result(verdict: DhVerdict) -> RuleResult:
    evidence = {"accepted": verdict.accepted, "suite": verdict.suite, "bits": verdict.bits,
                "well_known_group": verdict.group,
                "protocol": verdict.version.label if verdict.version else None}
    if verdict.accepted is None:
        return RuleResult("tls.dh_weak", Status.ERROR, f"could not read the server's DH group: {verdict.detail}",
                          evidence)
    if not verdict.accepted or verdict.bits is None:
        return RuleResult("tls.dh_weak", Status.PASS, f"not applicable: {verdict.detail}", evidence)
    group = f" ({verdict.group})" if verdict.group else ""
    if verdict.bits >= 2048:
        return RuleResult("tls.dh_weak", Status.PASS, f"DHE uses a {verdict.bits}-bit group{group}", evidence)
    return RuleResult(
        "tls.dh_weak", Status.FAIL, f"accepts {verdict.suite} with a {verdict.bits}-bit DH group{group}", evidence,
        severity=Severity.HIGH if verdict.bits <= 1024 else None,
    )


CHECK = TlsProtocolCheck()
