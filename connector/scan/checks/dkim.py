"""DKIM keys (RFC 6376, RFC 8301, RFC 8463) under the selectors the asset lists, or common ones.

Selectors cannot be enumerated through DNS. Selectors listed in the asset's ``dkim_selectors`` must have a usable
key; without a list, a few common selectors are tried, and only the keys found are judged (absence under a guessed
name proves nothing, so it is one low "none found" finding, and none at all for a domain whose SPF says it sends
no mail).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from connector.core.model import Asset, CheckOutcome, RuleResult, Severity, Status, Target
from connector.parsers.dkim import DkimKey, DkimSyntaxError, parse_dkim
from connector.parsers.spf import SpfSyntaxError, parse_spf, spf_records
from connector.probes.dns import Answer, DnsError
from connector.scan.checks._mail import MailCheck
from connector.scan.context import ScanContext


class DkimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    common_selectors: tuple[str, ...] = Field(
        default=("default", "dkim", "google", "k1", "k2", "mail", "s1", "s2", "selector1", "selector2", "smtp"),
        description="tried when an asset lists no dkim_selectors")
    min_rsa_bits: int = Field(default=2048, ge=1024, le=8192)


@dataclass(frozen=True)
class SelectorLookup:
    selector: str
    answer: Answer | None
    error: str | None = None


@dataclass(frozen=True)
class DkimObservation:
    domain: str
    configured: bool
    lookups: tuple[SelectorLookup, ...]
    sends_no_mail: bool  # SPF is exactly "v=spf1 -all"


class DkimCheck(MailCheck[DkimObservation, DkimSettings]):
    name = "dkim"
    description = "DKIM keys under configured (or common) selectors: missing, revoked, short RSA, testing mode"
    settings_model = DkimSettings

    async def observe_domain(
        self, domain: str, asset: Asset, ctx: ScanContext, settings: DkimSettings
    ) -> DkimObservation:
        selectors = asset.dkim_selectors or settings.common_selectors

        async def lookup(selector: str) -> SelectorLookup:
            try:
                return SelectorLookup(selector, await ctx.dns.lookup(f"{selector}._domainkey.{domain}", "TXT"))
            except DnsError as exc:
                return SelectorLookup(selector, None, str(exc))

        lookups = await asyncio.gather(*(lookup(selector) for selector in selectors))
        return DkimObservation(domain, bool(asset.dkim_selectors), tuple(lookups),
                               await _sends_no_mail(ctx, domain))

    def judge(self, target: Target, observation: DkimObservation, settings: DkimSettings,
              now: datetime) -> CheckOutcome:
        results: list[RuleResult] = []
        found: list[dict[str, object]] = []
        for lookup in observation.lookups:
            selector = lookup.selector
            name = f"{selector}._domainkey.{observation.domain}"
            if lookup.error is not None:
                if observation.configured:
                    results.append(RuleResult("dkim.key_missing", Status.ERROR, f"{name}: {lookup.error}",
                                              subject=selector))
                continue
            assert lookup.answer is not None
            records = [value for value in lookup.answer.data if "p=" in value]
            if not records:
                if observation.configured:
                    results.append(RuleResult("dkim.key_missing", Status.FAIL, f"{name} has no DKIM key record",
                                              {"dns": lookup.answer.ecs()}, subject=selector))
                continue
            if observation.configured:
                results.append(RuleResult("dkim.key_missing", Status.PASS, f"{name} publishes a key",
                                          subject=selector))
            verdicts, summary = _judge_key(name, selector, records[0], settings, lookup.answer)
            results += verdicts
            found.append(summary)
        if not observation.configured:
            results.append(_not_found(observation, found))
        observed = {"email": {"domain": observation.domain, "dkim": {"selectors_tried": [
            lookup.selector for lookup in observation.lookups], "keys": found}}}
        return CheckOutcome(results, observed)


def _judge_key(name: str, selector: str, record: str, settings: DkimSettings,
               answer: Answer) -> tuple[list[RuleResult], dict[str, object]]:
    evidence: dict[str, object] = {"dns": answer.ecs(), "dkim": {"selector": selector, "record": record[:200]}}
    try:
        key = parse_dkim(record)
    except DkimSyntaxError as exc:
        return ([RuleResult("dkim.invalid", Status.FAIL, f"{name}: {exc}", evidence, subject=selector)],
                {"selector": selector, "invalid": str(exc)})
    evidence["dkim"] = {"selector": selector, **key.summary()}
    results = [RuleResult("dkim.invalid", Status.PASS, f"{name}: a valid {key.key_type} key record", evidence,
                          subject=selector),
               _weak(name, selector, key, settings, evidence)]
    results.append(RuleResult("dkim.key_revoked", Status.FAIL, f"{name}: the key is revoked (empty p=)",
                              evidence, subject=selector) if key.revoked else
                   RuleResult("dkim.key_revoked", Status.PASS, f"{name}: the key is published", evidence,
                              subject=selector))
    results.append(RuleResult("dkim.testing", Status.FAIL, f"{name}: t=y, receivers treat signatures as a test",
                              evidence, subject=selector) if key.testing else
                   RuleResult("dkim.testing", Status.PASS, f"{name}: not in testing mode", evidence,
                              subject=selector))
    return results, {"selector": selector, **key.summary()}


def _weak(name: str, selector: str, key: DkimKey, settings: DkimSettings, evidence: dict[str, object]) -> RuleResult:
    if key.key_type == "rsa" and key.bits is not None and key.bits < settings.min_rsa_bits:
        severity = Severity.HIGH if key.bits < 1024 else None
        note = " (RFC 8301: receivers ignore signatures with keys under 1024 bits)" if key.bits < 1024 else ""
        return RuleResult("dkim.weak_key", Status.FAIL, f"{name}: {key.bits}-bit RSA key{note}", evidence,
                          severity=severity, subject=selector)
    size = f"{key.bits}-bit {key.key_type}" if key.bits else "revoked"
    return RuleResult("dkim.weak_key", Status.PASS, f"{name}: {size} key", evidence, subject=selector)


def _not_found(observation: DkimObservation, found: list[dict[str, object]]) -> RuleResult:
    tried = [lookup.selector for lookup in observation.lookups]
    errors = [f"{lookup.selector}: {lookup.error}" for lookup in observation.lookups if lookup.error]
    if found:
        selectors = ", ".join(str(key["selector"]) for key in found)
        return RuleResult("dkim.not_found", Status.PASS, f"DKIM keys under {selectors}")
    if errors:
        return RuleResult("dkim.not_found", Status.ERROR, f"DKIM lookups failed: {'; '.join(errors[:3])}")
    if observation.sends_no_mail:
        return RuleResult("dkim.not_found", Status.PASS, f"{observation.domain} declares that it sends no mail "
                                                         "(v=spf1 -all): no DKIM key is needed")
    return RuleResult("dkim.not_found", Status.FAIL,
                      f"no DKIM key under the common selectors ({', '.join(tried)}); list the domain's selectors in "
                      "dkim_selectors to check them", {"selectors_tried": tried})


async def _sends_no_mail(ctx: ScanContext, domain: str) -> bool:
    try:
        records = spf_records((await ctx.dns.lookup(domain, "TXT")).data)
        return len(records) == 1 and parse_spf(records[0]).is_null
    except (DnsError, SpfSyntaxError):
        return False


CHECK = DkimCheck()
