"""SPF (RFC 7208): the record, its final "all", and the cost of evaluating it through every include.

Receivers stop at the first matching mechanism, so how many DNS lookups an evaluation takes depends on the
sender. The check counts the worst case, a sender matched by nothing: every include, a, mx, ptr, exists and
redirect in the record and, recursively, in every record it includes (RFC 7208 4.6.4), as checkdmarc and
receivers' "permerror" do. %{d} is expanded (it is the domain being evaluated); terms with other macros (%{i},
%{s}, %{l}...) depend on the message, so they are counted but not followed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.parsers.spf import SpfRecord, SpfSyntaxError, Term, expand_domain, parse_spf, spf_records
from connector.probes.dns import Answer, DnsClient, DnsError
from connector.scan.checks._mail import MailCheck
from connector.scan.checks.base import NoSettings
from connector.scan.context import ScanContext

LOOKUP_LIMIT = 10
VOID_LIMIT = 2
MX_LIMIT = 10
WALK_LIMIT = 40  # stop following includes well past the limit: a loop or a fan-out is already a finding


@dataclass
class Walk:
    """What evaluating the whole include tree costs and where it breaks."""

    lookups: int = 0
    void: list[str] = field(default_factory=list)  # terms whose lookup found nothing
    includes: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    ptr: list[str] = field(default_factory=list)
    mx_over_limit: list[str] = field(default_factory=list)
    not_followed: list[str] = field(default_factory=list)  # macro terms
    errors: list[str] = field(default_factory=list)  # DNS failures: the tree could not be evaluated
    final_all: Term | None = None  # the effective "all" (through redirects)
    redirect_unresolved: str | None = None  # a redirect whose target could not be evaluated: the "all" is unknown


@dataclass(frozen=True)
class SpfObservation:
    domain: str
    txt: Answer
    records: tuple[str, ...]
    record: SpfRecord | None = None
    syntax_error: str | None = None
    walk: Walk | None = None


class SpfCheck(MailCheck[SpfObservation, NoSettings]):
    name = "spf"
    description = "SPF record: presence, syntax, final all, 10-lookup and void-lookup limits, loops, ptr"

    async def observe_domain(
        self, domain: str, asset: Asset, ctx: ScanContext, settings: NoSettings
    ) -> SpfObservation:
        txt = await ctx.dns.lookup(domain, "TXT")
        records = tuple(spf_records(txt.data))
        if len(records) != 1:
            return SpfObservation(domain, txt, records)
        try:
            record = parse_spf(records[0])
        except SpfSyntaxError as exc:
            return SpfObservation(domain, txt, records, syntax_error=str(exc))
        walker = _Walker(ctx.dns)
        await walker.record(domain, record, [domain])
        return SpfObservation(domain, txt, records, record, walk=walker.walk)

    def judge(self, target: Target, observation: SpfObservation, settings: NoSettings, now: datetime) -> CheckOutcome:
        domain = observation.domain
        observed = {"dns": observation.txt.ecs(), "email": {"domain": domain, "spf": _summary(observation)}}
        if not observation.records:
            return CheckOutcome([RuleResult("spf.missing", Status.FAIL, f"{domain} publishes no SPF record",
                                            {"txt": observation.txt.data[:20]})], observed)
        results = [RuleResult("spf.missing", Status.PASS, f"{domain} publishes an SPF record")]
        if len(observation.records) > 1:
            results.append(RuleResult("spf.multiple", Status.FAIL, f"{domain} publishes {len(observation.records)} "
                                                                   "SPF records: receivers return permerror",
                                      {"records": list(observation.records)}))
            return CheckOutcome(results, observed)
        results.append(RuleResult("spf.multiple", Status.PASS, "exactly one SPF record"))
        if observation.syntax_error is not None or observation.record is None or observation.walk is None:
            results.append(RuleResult("spf.syntax", Status.FAIL, f"SPF record of {domain}: {observation.syntax_error}",
                                      {"record": observation.records[0]}))
            return CheckOutcome(results, observed)
        results.append(RuleResult("spf.syntax", Status.PASS, "the SPF record is well formed"))
        walk = observation.walk
        results += _all_results(domain, observation.record, walk)
        results += _tree_results(domain, walk)
        ptr = RuleResult("spf.ptr", Status.FAIL, f"the SPF evaluation uses ptr: {', '.join(walk.ptr)}",
                         {"terms": walk.ptr}) if walk.ptr else RuleResult("spf.ptr", Status.PASS, "no ptr mechanism")
        results.append(ptr)
        return CheckOutcome(results, observed)


class _Walker:
    """Follows a record's DNS-querying terms through the include tree, tallying into one Walk."""

    def __init__(self, dns: DnsClient) -> None:
        self.dns = dns
        self.walk = Walk()

    async def record(self, domain: str, record: SpfRecord, stack: list[str], *, effective: bool = True) -> None:
        """Count and follow every DNS-querying term of ``record`` (mechanisms in order, then redirect).

        ``effective``: the record's final "all" is the domain's (the top record, or one it redirects to), not
        that of an included record, whose "all" only ends the include.
        """
        walk = self.walk
        terms = [term for term in record.evaluated if term.queries_dns]
        if record.redirect is not None:
            terms.append(next(term for term in record.terms if term.is_modifier and term.name == "redirect"))
            if effective:
                walk.redirect_unresolved = f"redirect={record.redirect} (in {domain})"  # cleared once followed
        elif effective:
            walk.final_all = record.all
            walk.redirect_unresolved = None
        for term in terms:
            walk.lookups += 1
            where = f"{term.text} (in {domain})" if domain != stack[0] else term.text
            if term.name == "ptr":
                walk.ptr.append(where)
                continue
            target = expand_domain(term.value, domain) if term.value else domain
            if target is None:
                walk.not_followed.append(where)
                continue
            if walk.lookups > WALK_LIMIT:
                return
            try:
                await self._term(term, target.rstrip(".").lower(), where, stack,
                                 effective=effective and term.name == "redirect")
            except DnsError as exc:
                walk.errors.append(f"{where}: {exc}")

    async def _term(self, term: Term, target: str, where: str, stack: list[str], *, effective: bool) -> None:
        dns, walk = self.dns, self.walk
        if term.name in ("include", "redirect"):
            await self._follow(target, where, stack, effective=effective)
        elif term.name == "mx":
            answer = await dns.lookup(target, "MX")
            if answer.void:
                walk.void.append(where)
            elif len(answer.records) > MX_LIMIT:
                walk.mx_over_limit.append(f"{where}: {len(answer.records)} MX hosts")
        elif term.name == "a":
            # void only if neither family has an address: which one a receiver asks depends on the sender
            answers = await asyncio.gather(dns.lookup(target, "A"), dns.lookup(target, "AAAA"))
            if all(answer.void for answer in answers):
                walk.void.append(where)
        elif (await dns.lookup(target, "A")).void:  # exists
            walk.void.append(where)

    async def _follow(self, target: str, where: str, stack: list[str], *, effective: bool) -> None:
        walk = self.walk
        if target in stack:
            walk.loops.append(" -> ".join([*stack, target]))
            return
        answer = await self.dns.lookup(target, "TXT")
        if answer.void:
            walk.void.append(where)
        records = spf_records(answer.data)
        if len(records) != 1:
            walk.broken.append(f"{where}: {target} has {'no' if not records else len(records)} SPF record"
                               f"{'s' if len(records) > 1 else ''}")
            return
        try:
            included = parse_spf(records[0])
        except SpfSyntaxError as exc:
            walk.broken.append(f"{where}: the record of {target} is invalid: {exc}")
            return
        walk.includes.append(target)
        await self.record(target, included, [*stack, target], effective=effective)


def _all_results(domain: str, record: SpfRecord, walk: Walk) -> list[RuleResult]:
    rules = ("spf.all_pass", "spf.all_neutral", "spf.softfail")
    if walk.redirect_unresolved is not None:
        reason = (f"SPF of {domain} ends with {walk.redirect_unresolved}, which could not be evaluated "
                  "(see the include, loop or DNS findings): its final all is unknown")
        return [RuleResult(rule, Status.ERROR, reason, {"record": record.text}) for rule in rules]
    final = walk.final_all
    qualifier = final.qualifier if final is not None else None
    evidence = {"all": final.text if final is not None else None, "record": record.text}
    verdicts = {
        "spf.all_pass": (qualifier == "+", f"SPF of {domain} ends in {final.text if final else ''}: every host on "
                                           "the internet may send as the domain"),
        "spf.all_neutral": (qualifier in ("?", None),
                            f"SPF of {domain} " + ("ends in ?all" if qualifier == "?" else
                                                   "has no all and no redirect (neutral by default)")
                            + ": forged mail gets a neutral result"),
        "spf.softfail": (qualifier == "~", f"SPF of {domain} ends in ~all: other senders only soft-fail"),
    }
    results = []
    for rule, (failing, message) in verdicts.items():
        if failing:
            results.append(RuleResult(rule, Status.FAIL, message, evidence))
        else:
            results.append(RuleResult(rule, Status.PASS, f"SPF ends in {final.text if final else '?'}", evidence))
    return results


def _tree_results(domain: str, walk: Walk) -> list[RuleResult]:
    tree_rules = ("spf.lookup_limit", "spf.void_lookup_limit", "spf.include_loop", "spf.include_broken")
    if walk.errors:
        reason = f"the include tree of {domain} could not be evaluated: {'; '.join(walk.errors[:3])}"
        return [RuleResult(rule, Status.ERROR, reason, {"errors": walk.errors}) for rule in tree_rules]
    counted = {"lookups": walk.lookups, "limit": LOOKUP_LIMIT, "includes": walk.includes}
    results = []
    if walk.lookups > LOOKUP_LIMIT or walk.mx_over_limit:
        detail = f"{walk.lookups} DNS lookups (limit {LOOKUP_LIMIT})" if walk.lookups > LOOKUP_LIMIT else \
            "; ".join(walk.mx_over_limit)
        results.append(RuleResult("spf.lookup_limit", Status.FAIL, f"evaluating SPF of {domain} needs {detail}: "
                                                                   "receivers return permerror", counted))
    else:
        results.append(RuleResult("spf.lookup_limit", Status.PASS,
                                  f"{walk.lookups} of {LOOKUP_LIMIT} DNS lookups", counted))
    void = {"void_lookups": len(walk.void), "terms": walk.void, "limit": VOID_LIMIT}
    results.append(RuleResult("spf.void_lookup_limit", Status.FAIL,
                              f"{len(walk.void)} lookups of SPF of {domain} find nothing (limit {VOID_LIMIT}): "
                              f"{', '.join(walk.void)}", void) if len(walk.void) > VOID_LIMIT else
                   RuleResult("spf.void_lookup_limit", Status.PASS, f"{len(walk.void)} void lookups", void))
    results.append(RuleResult("spf.include_loop", Status.FAIL, f"SPF include loop: {'; '.join(walk.loops)}",
                              {"loops": walk.loops}) if walk.loops else
                   RuleResult("spf.include_loop", Status.PASS, "no include loop"))
    results.append(RuleResult("spf.include_broken", Status.FAIL, "; ".join(walk.broken), {"broken": walk.broken})
                   if walk.broken else RuleResult("spf.include_broken", Status.PASS,
                                                  f"every include resolves to one valid record ({len(walk.includes)})"))
    return results


def _summary(observation: SpfObservation) -> dict[str, object]:
    walk = observation.walk
    summary: dict[str, object] = {"record": observation.records[0] if len(observation.records) == 1 else None,
                                  "records": len(observation.records)}
    if walk is not None:
        summary |= {"lookups": walk.lookups, "void_lookups": len(walk.void), "includes": walk.includes,
                    "all": walk.final_all.text if walk.final_all else None}
    return summary


CHECK = SpfCheck()
