"""Exposure: well-known sensitive paths, directory listings, and stack traces, each confirmed by content.

Every probe's response must match what the exposed file or page looks like (mappings/exposure.yaml) and must not
resemble the site's answer to a random path (the soft-404 baseline), so sites that answer 200 to everything, or
echo the path in their not-found page, yield nothing. One finding per rule names every path it found.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.core.resources import mappings_dir
from connector.probes.web import Page
from connector.scan.checks.base import Check, check_loads, load_data_file
from connector.scan.context import ScanContext

BODY_WINDOW = 64 * 1024  # what is read of each probed path: a site answering all ~70 with 2 MiB cost 220 MB an asset


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: tuple[int, ...] = (200,)
    body_regex: str | None = None
    body_prefix: str | None = None
    body_prefix_hex: str | None = None
    header: dict[str, str] | None = None

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    def matches(self, page: Page) -> bool:
        if page.status not in self.status:
            return False
        body = page.body[:BODY_WINDOW]
        if self.body_prefix is not None and not body.startswith(self.body_prefix.encode()):
            return False
        if self.body_prefix_hex is not None and not body.startswith(bytes.fromhex(self.body_prefix_hex)):
            return False
        if self.body_regex is not None and not re.search(self.body_regex, body.decode("utf-8", "replace")):
            return False
        for name, pattern in (self.header or {}).items():
            if not any(re.search(pattern, value) for value in page.header_values(name)):
                return False
        return any(value is not None for value in (self.body_prefix, self.body_prefix_hex, self.body_regex,
                                                     self.header))


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    any: tuple[Matcher, ...] = Field(min_length=1)

    def matches(self, page: Page) -> bool:
        return any(matcher.matches(page) for matcher in self.any)


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(pattern=r"^exposure\.[a-z_]+$")
    paths: tuple[str, ...] = Field(min_length=1)
    confirm: Matcher | AnyOf


class ExposureFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probes: tuple[Probe, ...]
    directories: tuple[str, ...] = ()
    listing_patterns: tuple[str, ...] = ()
    error_patterns: tuple[str, ...] = ()


class ExposureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probes_file: Path | None = Field(default=None, description="default: mappings/exposure.yaml")

    @property
    def probes(self) -> ExposureFile:
        return load_data_file(ExposureFile, self.probes_file or mappings_dir() / "exposure.yaml")

    @model_validator(mode="after")
    def _loads(self) -> ExposureSettings:
        check_loads(lambda: self.probes)
        return self


@dataclass(frozen=True)
class ExposureObservation:
    baseline: Page
    responses: dict[str, Page]  # path -> response, for probes and directories
    pages: tuple[Page, ...]  # the key routes, read for stack traces too
    failed: dict[str, str]  # path -> why it could not be fetched


class ExposureCheck(Check[ExposureObservation, ExposureSettings]):
    name = "exposure"
    description = "sensitive files and consoles, directory listings, stack traces (confirmed by content)"
    settings_model = ExposureSettings

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, asset.https_port, scheme="https")]

    async def observe(self, target: Target, ctx: ScanContext, settings: ExposureSettings) -> ExposureObservation:
        web = ctx.web(target.asset)
        probes = settings.probes
        baseline = await web.page(f"/postern-{secrets.token_hex(8)}-not-here", follow=False, limit=BODY_WINDOW)
        paths = list(dict.fromkeys([path for probe in probes.probes for path in probe.paths]
                                   + list(probes.directories)))
        fetched = await asyncio.gather(*(web.page(path, follow=False, limit=BODY_WINDOW) for path in paths),
                                       return_exceptions=True)
        routes = await asyncio.gather(*(web.page(route) for route in target.asset.routes), return_exceptions=True)
        responses = {path: page for path, page in zip(paths, fetched, strict=True) if isinstance(page, Page)}
        failed = {path: str(error) for path, error in zip([*paths, *target.asset.routes], [*fetched, *routes],
                                                          strict=True) if isinstance(error, BaseException)}
        unexpected = [error for error in [*fetched, *routes]
                      if isinstance(error, BaseException) and not isinstance(error, ProbeError)]
        if unexpected:
            raise unexpected[0]
        pages = tuple(page for page in routes if isinstance(page, Page))
        return ExposureObservation(baseline, responses, pages, failed)

    def judge(self, target: Target, observation: ExposureObservation, settings: ExposureSettings,
              now: datetime) -> CheckOutcome:
        probes = settings.probes
        exposed: dict[str, list[str]] = {probe.rule: [] for probe in probes.probes}
        for probe in probes.probes:
            for path in probe.paths:
                page = observation.responses.get(path)
                if page is not None and probe.confirm.matches(page) and not looks_like(page, observation.baseline):
                    exposed[probe.rule].append(path)
        results = [_result(rule, paths, observation) for rule, paths in exposed.items()]
        results.append(_listing(probes, observation))
        results.append(_errors(probes, observation))
        observed = {"exposure": {
            "baseline_status": observation.baseline.status,
            "probed": len(observation.responses),
            "unreachable": dict(list(observation.failed.items())[:20]),
        }}
        return CheckOutcome(results, observed)


def looks_like(page: Page, baseline: Page) -> bool:
    """Whether ``page`` is the site's generic answer (what a random path gets), not the file asked for."""
    if page.status != baseline.status:
        return False
    if page.body == baseline.body:
        return True
    head, base = page.body[:4096], baseline.body[:4096]
    if not head or not base:
        return False
    matcher = difflib.SequenceMatcher(None, head, base, autojunk=False)
    return matcher.quick_ratio() > 0.9 and matcher.ratio() > 0.9  # the cheap upper bound first


_MESSAGES = {
    "exposure.vcs": "version-control metadata is downloadable",
    "exposure.env_file": "an environment file with settings (often credentials) is downloadable",
    "exposure.ds_store": "a macOS .DS_Store file lists directory contents",
    "exposure.backup": "a backup or database dump is downloadable",
    "exposure.server_status": "the web server's status page is public",
    "exposure.phpinfo": "a phpinfo() page is public",
    "exposure.actuator": "Spring Boot actuator endpoints (environment, heap dump) are public",
    "exposure.debug_console": "a debug console or profiler is reachable",
    "exposure.admin_panel": "an administration login is reachable from the internet",
    "exposure.dashboard": "an operations dashboard or metrics endpoint is public",
}


def _result(rule: str, paths: list[str], observation: ExposureObservation) -> RuleResult:
    if paths:
        return RuleResult(rule, Status.FAIL, f"{_MESSAGES.get(rule, rule)}: {', '.join(paths)}",
                          {"paths": paths, "statuses": {p: observation.responses[p].status for p in paths}})
    return RuleResult(rule, Status.PASS, "nothing found", {"paths": []})


def _listing(probes: ExposureFile, observation: ExposureObservation) -> RuleResult:
    listed = []
    for path in probes.directories:
        page = observation.responses.get(path)
        if page is None or page.status != 200:
            continue
        text = page.body[:BODY_WINDOW].decode("utf-8", "replace")
        if any(re.search(pattern, text) for pattern in probes.listing_patterns):
            listed.append(path)
    if listed:
        return RuleResult("exposure.directory_listing", Status.FAIL,
                          f"directory listings are enabled: {', '.join(listed)}", {"paths": listed})
    return RuleResult("exposure.directory_listing", Status.PASS, "no directory listing found", {"paths": []})


def _errors(probes: ExposureFile, observation: ExposureObservation) -> RuleResult:
    found: dict[str, str] = {}
    candidates: list[Page] = [observation.baseline, *observation.pages, *observation.responses.values()]
    for page in candidates:
        text = page.body[:BODY_WINDOW].decode("utf-8", "replace")
        for pattern in probes.error_patterns:
            match = re.search(pattern, text)
            if match:
                found.setdefault(page.requested, match.group(0)[:200])
                break
    evidence: dict[str, Any] = {"pages": found}
    if found:
        return RuleResult("exposure.verbose_errors", Status.FAIL,
                          f"stack traces or debug pages are shown to visitors: {', '.join(list(found)[:5])}", evidence)
    return RuleResult("exposure.verbose_errors", Status.PASS, "no stack trace or debug page seen", evidence)


CHECK = ExposureCheck()
