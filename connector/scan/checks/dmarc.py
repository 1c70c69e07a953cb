"""DMARC (RFC 7489): the policy receivers apply to the domain, found as they find it, and how strong it is.

Policy discovery (6.6.3): _dmarc.<domain>, else _dmarc.<organisational domain> whose sp (or p) then applies.
External report destinations must authorise the reports with <domain>._report._dmarc.<destination> (7.1).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from connector.core.model import Asset, CheckOutcome, RuleResult, Severity, Status, Target
from connector.parsers.dmarc import POLICIES, DmarcRecord, DmarcSyntaxError, dmarc_records, parse_dmarc
from connector.parsers.domains import organisational_domain
from connector.probes.dns import Answer, DnsClient, DnsError
from connector.scan.checks._mail import MailCheck
from connector.scan.checks.base import NoSettings
from connector.scan.context import ScanContext


@dataclass(frozen=True)
class DmarcObservation:
    domain: str
    source: str  # where the record applying to the domain lives
    txt: Answer
    records: tuple[str, ...]
    record: DmarcRecord | None = None
    syntax_error: str | None = None
    authorised: dict[str, bool | str] | None = None  # external report domain -> authorised, or a DNS error


class DmarcCheck(MailCheck[DmarcObservation, NoSettings]):
    name = "dmarc"
    description = "DMARC policy: presence, syntax, p=none, weaker sp, pct, rua, report authorisation, alignment"

    async def observe_domain(
        self, domain: str, asset: Asset, ctx: ScanContext, settings: NoSettings
    ) -> DmarcObservation:
        source = domain
        txt = await ctx.dns.lookup(f"_dmarc.{domain}", "TXT")
        organisation = organisational_domain(domain)
        if not dmarc_records(txt.data) and organisation and organisation != domain:
            source = organisation
            txt = await ctx.dns.lookup(f"_dmarc.{organisation}", "TXT")
        records = tuple(dmarc_records(txt.data))
        if len(records) != 1:
            return DmarcObservation(domain, source, txt, records)
        try:
            record = parse_dmarc(records[0])
        except DmarcSyntaxError as exc:
            return DmarcObservation(domain, source, txt, records, syntax_error=str(exc))
        external = [d for d in record.report_domains() if organisational_domain(d) != organisational_domain(source)]
        checks = await asyncio.gather(*(_authorised(ctx.dns, source, destination) for destination in external))
        return DmarcObservation(domain, source, txt, records, record, authorised=dict(zip(external, checks,
                                                                                          strict=True)))

    def judge(self, target: Target, observation: DmarcObservation, settings: NoSettings,
              now: datetime) -> CheckOutcome:
        domain, source = observation.domain, observation.source
        record = observation.record
        observed = {"dns": observation.txt.ecs(),
                    "email": {"domain": domain, "dmarc": {**(record.summary() if record else
                                                              {"record": None}), "source": source}}}
        where = f"_dmarc.{source}" + (" (the organisational domain's record)" if source != domain else "")
        if not observation.records:
            return CheckOutcome([RuleResult("dmarc.missing", Status.FAIL,
                                            f"no DMARC record at _dmarc.{domain}" +
                                            (f" or _dmarc.{source}" if source != domain else ""))], observed)
        results = [RuleResult("dmarc.missing", Status.PASS, f"DMARC record at {where}")]
        if len(observation.records) > 1 or record is None:
            why = (f"{len(observation.records)} DMARC records at _dmarc.{source}: receivers apply none"
                   if len(observation.records) > 1 else f"{where}: {observation.syntax_error}; receivers ignore it")
            results.append(RuleResult("dmarc.invalid", Status.FAIL, why, {"records": list(observation.records)}))
            return CheckOutcome(results, observed)
        results.append(_validity(record, where))
        results += _policy_results(record, where, source != domain)
        results += _report_results(record, where, observation.authorised or {})
        relaxed = [name for name, mode in (("adkim", record.adkim), ("aspf", record.aspf)) if mode == "r"]
        results.append(RuleResult("dmarc.alignment_relaxed", Status.FAIL,
                                  f"{where}: relaxed alignment for {' and '.join(relaxed)}",
                                  {"adkim": record.adkim, "aspf": record.aspf}) if relaxed else
                       RuleResult("dmarc.alignment_relaxed", Status.PASS, "strict DKIM and SPF alignment"))
        return CheckOutcome(results, observed)


async def _authorised(dns: DnsClient, domain: str, destination: str) -> bool | str:
    try:
        answer = await dns.lookup(f"{domain}._report._dmarc.{destination}", "TXT")
    except DnsError as exc:
        return str(exc)
    return bool(dmarc_records(answer.data))


def _validity(record: DmarcRecord, where: str) -> RuleResult:
    if not record.problems:
        return RuleResult("dmarc.invalid", Status.PASS, "the DMARC record is valid")
    usable = record.policy_usable
    consequence = "receivers ignore those tags" if usable else \
        "receivers apply p=none instead (RFC 7489 6.6.3; a valid rua is present)"
    return RuleResult("dmarc.invalid", Status.FAIL, f"{where}: {'; '.join(record.problems)}; {consequence}",
                      {"problems": list(record.problems)}, severity=Severity.MEDIUM if usable else None)


def _policy_results(record: DmarcRecord, where: str, inherited: bool) -> list[RuleResult]:
    policy = record.effective_subdomain_policy if inherited else record.effective_policy
    results = [RuleResult("dmarc.policy_none", Status.FAIL,
                          f"{where}: the policy applied is none: failing mail is delivered as usual",
                          {"policy": policy}) if policy == "none" else
               RuleResult("dmarc.policy_none", Status.PASS, f"policy {policy}", {"policy": policy})]
    subdomain = record.effective_subdomain_policy
    strength = {name: rank for rank, name in enumerate(POLICIES)}
    if record.policy_usable and record.policy and subdomain and strength[subdomain] < strength[record.policy]:
        results.append(RuleResult("dmarc.subdomain_policy_weaker", Status.FAIL,
                                  f"{where}: sp={subdomain} is weaker than p={record.policy}",
                                  {"policy": record.policy, "subdomain_policy": subdomain}))
    else:
        results.append(RuleResult("dmarc.subdomain_policy_weaker", Status.PASS,
                                  f"subdomains get {subdomain or 'no'} policy"))
    results.append(RuleResult("dmarc.pct_partial", Status.FAIL,
                              f"{where}: pct={record.pct}: the policy covers {record.pct}% of failing mail",
                              {"pct": record.pct}) if record.pct < 100 else
                   RuleResult("dmarc.pct_partial", Status.PASS, "the policy covers all failing mail"))
    return results


def _report_results(record: DmarcRecord, where: str, authorised: dict[str, bool | str]) -> list[RuleResult]:
    results = [RuleResult("dmarc.rua_missing", Status.FAIL, f"{where}: no rua=, nobody gets aggregate reports")
               if not record.rua else
               RuleResult("dmarc.rua_missing", Status.PASS, f"aggregate reports to {', '.join(record.rua)}")]
    rule = "dmarc.external_reports_unauthorized"
    for destination, verdict in authorised.items():
        if isinstance(verdict, str):
            results.append(RuleResult(rule, Status.ERROR, f"cannot check report authorisation by {destination}: "
                                                          f"{verdict}", subject=destination))
        elif not verdict:
            results.append(RuleResult(
                rule, Status.FAIL, f"{where}: reports go to {destination}, which publishes no authorisation "
                                   f"record, so receivers must not send them", {"destination": destination},
                subject=destination))
    if not any(result.rule_id == rule for result in results):
        results.append(RuleResult(rule, Status.PASS, "every external report destination authorises the reports"
                                  if authorised else "no external report destination"))
    return results


CHECK = DmarcCheck()
