"""MTA-STS (RFC 8461) and SMTP TLS reporting (RFC 8460) for domains that receive mail.

The policy is fetched the way sending servers fetch it: https://mta-sts.<domain>/.well-known/mta-sts.txt, a
certificate valid for that name, no redirects, status 200, text/plain. Its mx patterns are compared with the
domain's MX records. Domains without MX records receive no mail and get passing results.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Severity, Status, Target
from connector.parsers.mta_sts import (
    MtaStsSyntaxError,
    StsPolicy,
    parse_sts_policy,
    parse_sts_record,
    parse_tlsrpt,
    sts_records,
    tlsrpt_records,
)
from connector.probes.dns import Answer
from connector.probes.http import TlsVerificationError
from connector.scan.checks._mail import MailCheck
from connector.scan.context import ScanContext

POLICY_PATH = "/.well-known/mta-sts.txt"


class MtaStsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_port: int = Field(default=443, ge=1, le=65535,
                             description="HTTPS port of mta-sts.<domain>: 443 except behind a proxy or in tests")


@dataclass(frozen=True)
class PolicyFetch:
    url: str
    policy: StsPolicy | None
    problem: str | None  # why senders could not use it


@dataclass(frozen=True)
class MtaStsObservation:
    domain: str
    mx: Answer
    sts: Answer
    tlsrpt: Answer
    fetch: PolicyFetch | None  # None when there is no usable record to announce a policy


class MtaStsCheck(MailCheck[MtaStsObservation, MtaStsSettings]):
    name = "mta_sts"
    description = "MTA-STS record and policy (mode, mx coverage) and the TLS-RPT record"
    settings_model = MtaStsSettings

    async def observe_domain(
        self, domain: str, asset: Asset, ctx: ScanContext, settings: MtaStsSettings
    ) -> MtaStsObservation:
        mx, sts, tlsrpt = await asyncio.gather(ctx.dns.lookup(domain, "MX"),
                                               ctx.dns.lookup(f"_mta-sts.{domain}", "TXT"),
                                               ctx.dns.lookup(f"_smtp._tls.{domain}", "TXT"))
        fetch = await _fetch_policy(ctx, domain, settings.policy_port) if sts_records(sts.data) else None
        return MtaStsObservation(domain, mx, sts, tlsrpt, fetch)

    def judge(self, target: Target, observation: MtaStsObservation, settings: MtaStsSettings,
              now: datetime) -> CheckOutcome:
        domain = observation.domain
        exchangers = sorted({record.data.split()[-1].lower() for record in observation.mx.records} - {""})
        policy = observation.fetch.policy if observation.fetch else None
        observed = {"dns": observation.sts.ecs(), "email": {"domain": domain, "mx": exchangers, "mta_sts": {
            "record": next(iter(sts_records(observation.sts.data)), None),
            **({"mode": policy.mode, "mx": list(policy.mx), "max_age": policy.max_age} if policy else {})},
            "tls_rpt": {"record": next(iter(tlsrpt_records(observation.tlsrpt.data)), None)}}}
        if not exchangers or exchangers == ["."]:
            message = f"{domain} has no MX records (or a null MX): it receives no mail"
            rules = ("mta_sts.missing", "tlsrpt.missing")
            return CheckOutcome([RuleResult(rule, Status.PASS, message) for rule in rules], observed)
        results = _sts_results(observation, exchangers) + _tlsrpt_results(observation)
        return CheckOutcome(results, observed)


async def _fetch_policy(ctx: ScanContext, domain: str, port: int) -> PolicyFetch:
    host = f"mta-sts.{domain}"
    url = f"https://{host}{'' if port == 443 else f':{port}'}{POLICY_PATH}"
    try:
        addresses = await ctx.dns.addresses(host)
        if not addresses:
            return PolicyFetch(url, None, f"{host} has no address record")
        fetched = await ctx.http.get(url, address=addresses[0], verify=True)
    except TlsVerificationError as exc:
        return PolicyFetch(url, None, f"the certificate of {host} is not valid: {exc}")
    except ProbeError as exc:
        return PolicyFetch(url, None, f"cannot fetch the policy: {exc}")
    if fetched.is_redirect:
        return PolicyFetch(url, None, f"{url} redirects (HTTP {fetched.status}); senders do not follow redirects")
    if fetched.status != 200:
        return PolicyFetch(url, None, f"{url} answers HTTP {fetched.status}")
    media_type = (fetched.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        return PolicyFetch(url, None, f"{url} is served as {media_type or 'no content type'}, not text/plain")
    try:
        return PolicyFetch(url, parse_sts_policy(fetched.body.decode("utf-8", "replace")), None)
    except MtaStsSyntaxError as exc:
        return PolicyFetch(url, None, f"{url}: {exc}")


def _sts_results(observation: MtaStsObservation, exchangers: list[str]) -> list[RuleResult]:
    domain = observation.domain
    records = sts_records(observation.sts.data)
    if not records:
        return [RuleResult("mta_sts.missing", Status.FAIL, f"{domain} receives mail (MX: {', '.join(exchangers)}) "
                                                           "but publishes no MTA-STS record")]
    results = [RuleResult("mta_sts.missing", Status.PASS, f"_mta-sts.{domain} announces a policy")]
    problem = None
    if len(records) > 1:
        problem = f"_mta-sts.{domain} has {len(records)} v=STSv1 records"
    else:
        try:
            parse_sts_record(records[0])
        except MtaStsSyntaxError as exc:
            problem = f"_mta-sts.{domain}: {exc}"
    fetch = observation.fetch
    if problem is None and fetch is not None and fetch.problem is not None:
        problem = fetch.problem
    if problem is not None or fetch is None or fetch.policy is None:
        results.append(RuleResult("mta_sts.invalid", Status.FAIL, f"{problem}: senders ignore the policy",
                                  {"url": fetch.url if fetch else None}))
        return results
    policy = fetch.policy
    results.append(RuleResult("mta_sts.invalid", Status.PASS, f"policy served at {fetch.url}"))
    results.append(RuleResult("mta_sts.testing", Status.FAIL, f"{domain}: MTA-STS mode is testing",
                              {"mode": policy.mode}) if policy.mode == "testing" else
                   RuleResult("mta_sts.testing", Status.PASS, f"mode {policy.mode}"))
    results.append(RuleResult("mta_sts.disabled", Status.FAIL, f"{domain}: MTA-STS mode is none (policy withdrawn)",
                              {"mode": policy.mode}) if policy.mode == "none" else
                   RuleResult("mta_sts.disabled", Status.PASS, f"mode {policy.mode}"))
    if policy.mode != "none":
        uncovered = [host for host in exchangers if not policy.matches(host)]
        for host in uncovered:
            consequence = "senders refuse to deliver to it" if policy.mode == "enforce" else "senders report failures"
            results.append(RuleResult(
                "mta_sts.mx_mismatch", Status.FAIL, f"MX {host} matches no mx: line of the policy "
                                                    f"({', '.join(policy.mx)}); {consequence}",
                {"mx": host, "policy_mx": list(policy.mx), "mode": policy.mode},
                severity=None if policy.mode == "enforce" else Severity.MEDIUM, subject=host))
        if not uncovered:
            results.append(RuleResult("mta_sts.mx_mismatch", Status.PASS, "the policy covers every MX host"))
    return results


def _tlsrpt_results(observation: MtaStsObservation) -> list[RuleResult]:
    name = f"_smtp._tls.{observation.domain}"
    records = tlsrpt_records(observation.tlsrpt.data)
    if not records:
        return [RuleResult("tlsrpt.missing", Status.FAIL, f"no TLS-RPT record at {name}")]
    results = [RuleResult("tlsrpt.missing", Status.PASS, f"TLS-RPT record at {name}")]
    if len(records) > 1:
        results.append(RuleResult("tlsrpt.invalid", Status.FAIL, f"{name}: {len(records)} v=TLSRPTv1 records",
                                  {"records": records}))
        return results
    try:
        destinations = parse_tlsrpt(records[0])
    except MtaStsSyntaxError as exc:
        results.append(RuleResult("tlsrpt.invalid", Status.FAIL, f"{name}: {exc}", {"records": records}))
    else:
        results.append(RuleResult("tlsrpt.invalid", Status.PASS, f"reports go to {', '.join(destinations)}"))
    return results


CHECK = MtaStsCheck()
