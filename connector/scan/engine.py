"""Run checks over assets with bounded concurrency and time, and turn what they say into findings.

Every check either yields rule results or an explicit ``scan.error`` finding with the reason: a target that
could not be observed is never silently missing from the output. A check that does not apply to an asset (no
target there, or ``NotApplicable`` from observe) yields one ``scan.not_applicable`` finding with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from connector.core.catalog import Catalog
from connector.core.errors import ConfigError, NotApplicable, ProbeError, format_validation_error
from connector.core.model import Asset, AssetReport, Finding, RuleResult, Severity, Status, Target
from connector.scan.checks import AnyCheck, available_checks
from connector.scan.context import ScanContext

log = logging.getLogger(__name__)

SCAN_ERROR_RULE = "scan.error"
NOT_APPLICABLE_RULE = "scan.not_applicable"
ENGINE_RULES = (SCAN_ERROR_RULE, NOT_APPLICABLE_RULE)


@dataclass(frozen=True)
class RuleOverride:
    enabled: bool = True
    severity: Severity | None = None


@dataclass(frozen=True)
class ConfiguredCheck:
    check: AnyCheck
    settings: BaseModel


@dataclass
class ScanPlan:
    assets: Sequence[Asset]
    checks: Sequence[ConfiguredCheck]
    overrides: dict[str, RuleOverride] = field(default_factory=dict)

    def total_jobs(self) -> int:
        return sum(len(configured.check.targets(asset)) for asset in self.assets for configured in self.checks)


async def scan(
    plan: ScanPlan,
    catalog: Catalog,
    ctx: ScanContext,
    *,
    scan_id: str | Callable[[Asset], str],
) -> AsyncGenerator[AssetReport, None]:
    """Yield one report per asset as it finishes; at most ``ctx.settings.concurrency`` assets run at once."""
    queue: asyncio.Queue[AssetReport | None] = asyncio.Queue(maxsize=max(16, ctx.settings.concurrency))
    assets = iter(plan.assets)
    workers = max(1, min(ctx.settings.concurrency, len(plan.assets)))
    builder = _FindingBuilder(catalog, plan.overrides, ctx.now)
    ctx.configure(plan.assets)

    async def worker() -> None:
        for asset in assets:
            targeted = [(configured, configured.check.targets(asset)) for configured in plan.checks]
            jobs = [(configured, target) for configured, targets in targeted for target in targets]
            outcomes = await asyncio.gather(*(_run_job(configured, target, ctx) for configured, target in jobs))
            asset_scan_id = scan_id(asset) if callable(scan_id) else scan_id
            ran = [(configured, target, *outcome) for (configured, target), outcome in zip(jobs, outcomes, strict=True)]
            skipped = [_untargeted(configured, asset) for configured, targets in targeted if not targets]
            findings = [
                finding
                for configured, target, results, observed in [*ran, *skipped]
                for finding in builder.findings(configured.check.name, target, results, observed, asset_scan_id)
            ]
            ctx.release(asset)
            await queue.put(AssetReport(asset, findings))

    async def run_all() -> None:
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            await queue.put(None)

    runner = asyncio.create_task(run_all())
    try:
        while (report := await queue.get()) is not None:
            yield report
        await runner
    finally:
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await ctx.aclose()


async def _run_job(
    configured: ConfiguredCheck, target: Target, ctx: ScanContext
) -> tuple[list[RuleResult], dict[str, Any]]:
    check = configured.check
    timeout = ctx.settings.check_timeout
    try:
        async with asyncio.timeout(timeout):
            observation = await check.observe(target, ctx, configured.settings)
        outcome = check.judge(target, observation, configured.settings, ctx.now)
    except NotApplicable as exc:
        return [_not_applicable(check.name, str(exc))], {}
    except ProbeError as exc:
        return [_error(check.name, str(exc), "resource" if exc.kind == "resource" else "unreachable")], {}
    except TimeoutError:
        return [_error(check.name, f"{target}: check {check.name} did not finish within {timeout:g}s", "timeout")], {}
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the scan itself is being stopped: let it stop
        # something this check awaited was cancelled under it: the check failed, the scan goes on
        log.exception("check %s on %s was cancelled from outside", check.name, target)
        return [_error(check.name, f"{target}: check {check.name} was interrupted (a probe it waited for was "
                                   "cancelled)", "cancelled")], {}
    except Exception as exc:
        log.exception("check %s failed on %s", check.name, target)
        return [_error(check.name, f"{target}: internal error in check {check.name}: {exc!r}", "internal")], {}
    return list(outcome.results), dict(outcome.observed)


def _error(check: str, reason: str, kind: str) -> RuleResult:
    return RuleResult(SCAN_ERROR_RULE, Status.ERROR, reason, {"check": check, "error_kind": kind}, subject=check)


def _untargeted(configured: ConfiguredCheck, asset: Asset) -> tuple[ConfiguredCheck, Target, list[RuleResult],
                                                                    dict[str, Any]]:
    """A check with nothing to observe on the asset still says so, once, with the reason."""
    check = configured.check
    return configured, Target(asset), [_not_applicable(check.name, check.not_applicable(asset))], {}


def _not_applicable(check: str, reason: str) -> RuleResult:
    return RuleResult(NOT_APPLICABLE_RULE, Status.NOT_APPLICABLE, f"check {check} does not apply: {reason}",
                      {"check": check, "reason": reason}, subject=check)


class _FindingBuilder:
    def __init__(
        self,
        catalog: Catalog,
        overrides: dict[str, RuleOverride],
        now: datetime,
    ) -> None:
        self.catalog = catalog
        self.overrides = overrides
        self.now = now

    def findings(
        self, check: str, target: Target, results: Iterable[RuleResult], observed: dict[str, Any], scan_id: str
    ) -> Iterable[Finding]:
        for produced in results:
            result = produced
            rule = self.catalog.rules.get(result.rule_id)
            if rule is None or (rule.check != check and result.rule_id not in ENGINE_RULES):
                log.error("check %s produced rule %s, which the catalog does not give it", check, result.rule_id)
                result = _error(check, f"{target}: check {check} produced unknown rule {result.rule_id}", "internal")
                rule = self.catalog[SCAN_ERROR_RULE]
            override = self.overrides.get(rule.id, RuleOverride())
            if not override.enabled:
                continue
            severity = Severity.INFO
            if result.status is Status.FAIL:
                severity = override.severity or result.severity or rule.severity
            yield Finding(
                rule_id=rule.id,
                check=check,
                status=result.status,
                severity=severity,
                message=result.message,
                asset=target.asset,
                port=target.port,
                path=target.path,
                scheme=target.scheme,
                subject=result.subject,
                evidence=dict(result.evidence),
                observed=observed,
                scan_id=scan_id,
                observed_at=self.now,
                first_seen=self.now,
                last_seen=self.now,
            )


def build_checks(settings: dict[str, dict[str, Any]], only: list[str] | None = None) -> list[ConfiguredCheck]:
    """The enabled checks with their validated settings; ``only`` narrows to named checks (CLI --checks)."""
    checks = available_checks()
    unknown = sorted(set(settings) - set(checks)) + sorted(set(only or ()) - set(checks))
    if unknown:
        raise ConfigError(f"checks: unknown checks {unknown} (available: {sorted(checks)})")
    configured = []
    for name, check in checks.items():
        entry = dict(settings.get(name) or {})
        enabled = entry.pop("enabled", True)
        if only is not None and name not in only:
            continue
        if enabled is not True and only is None:
            continue
        configured.append(ConfiguredCheck(check, _check_settings(check, entry)))
    return configured


def _check_settings(check: AnyCheck, entry: dict[str, Any]) -> BaseModel:
    try:
        return check.settings_model.model_validate(entry)
    except ValidationError as exc:
        raise ConfigError(f"checks.{check.name}: {format_validation_error(exc)}") from None
