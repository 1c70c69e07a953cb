"""Exposure: sensitive files, admin logins, debug consoles, stack traces and directory listings, confirmed by content.

A probe's response must match what the exposed file looks like, a page must match a signature (a debugger, a
trace, an admin login: mappings/exposure.yaml), and neither may resemble the site's answer to a random path (the
soft-404 baseline), so sites that answer 200 to everything, or echo the path in their not-found page, yield
nothing. The baseline is read for signatures too: a framework in debug mode shows itself on its not-found page.
One finding per rule names every path it found; a rule confirmed by signatures takes the worst severity matched.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.core.resources import mappings_dir
from connector.probes.web import Page
from connector.scan.checks._signatures import Signature, SignatureMatch, compiles, strongest_matches
from connector.scan.checks.base import Check, check_loads, load_data_file
from connector.scan.context import ScanContext

BODY_WINDOW = 64 * 1024  # what is read of each probed path: a site answering all ~90 with 2 MiB cost 220 MB an asset
ADMIN_PANEL = "exposure.admin_panel"
_PASSWORD_CHALLENGE = re.compile(r"^\s*(basic|digest)\b", re.IGNORECASE)  # the browser's own password prompt


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
        return None if value is None else compiles(value)

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
    admin_paths: tuple[str, ...] = ()
    debug_paths: tuple[str, ...] = ()
    signatures: tuple[Signature, ...] = ()

    @model_validator(mode="after")
    def _one_way_per_rule(self) -> ExposureFile:
        """A finding's severity is the worst signature's or the catalog's: a rule mixing both would be ambiguous."""
        both = {probe.rule for probe in self.probes} & {signature.rule for signature in self.signatures}
        if both:
            raise ValueError(f"rules confirmed by both probes and signatures: {', '.join(sorted(both))}")
        names = [signature.name for signature in self.signatures]
        if len(names) != len(set(names)):
            raise ValueError(f"signature names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
        return self

    @property
    def paths(self) -> list[str]:
        """Every path requested, once, in data order."""
        probed = [path for probe in self.probes for path in probe.paths]
        return list(dict.fromkeys([*probed, *self.directories, *self.admin_paths, *self.debug_paths]))


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
    responses: dict[str, Page]  # path -> response (redirects not followed), for every path of the data file
    routes: dict[str, Page]  # the asset's key routes as a browser lands on them, read for signatures too
    failed: dict[str, str]  # path -> why it could not be fetched


class ExposureCheck(Check[ExposureObservation, ExposureSettings]):
    name = "exposure"
    description = ("sensitive files, admin logins, debug consoles, stack traces, directory listings "
                   "(confirmed by content)")
    settings_model = ExposureSettings

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, asset.https_port, scheme="https")]

    async def observe(self, target: Target, ctx: ScanContext, settings: ExposureSettings) -> ExposureObservation:
        web = ctx.web(target.asset)
        probes = settings.probes
        baseline = await web.page(f"/postern-{secrets.token_hex(8)}-not-here", follow=False, limit=BODY_WINDOW)
        paths = probes.paths
        fetched = await asyncio.gather(*(web.page(path, follow=False, limit=BODY_WINDOW) for path in paths),
                                       return_exceptions=True)
        routes = await asyncio.gather(*(web.page(route) for route in target.asset.routes), return_exceptions=True)
        responses = {path: page for path, page in zip(paths, fetched, strict=True) if isinstance(page, Page)}
        landed = {route: page for route, page in zip(target.asset.routes, routes, strict=True)
                  if isinstance(page, Page)}
        failed = {path: str(error) for path, error in zip([*paths, *target.asset.routes], [*fetched, *routes],
                                                          strict=True) if isinstance(error, BaseException)}
        unexpected = [error for error in [*fetched, *routes]
                      if isinstance(error, BaseException) and not isinstance(error, ProbeError)]
        if unexpected:
            raise unexpected[0]
        return ExposureObservation(baseline, responses, landed, failed)

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
        matched = _signature_matches(probes, observation)
        results += [_signature_result(rule, matched.get(rule, {}), observation)
                    for rule in dict.fromkeys(signature.rule for signature in probes.signatures)]
        results.append(_basic_auth(probes, observation, matched.get(ADMIN_PANEL, {})))
        results.append(_listing(probes, observation))
        observed = {"exposure": {
            "baseline_status": observation.baseline.status,
            "probed": len(observation.responses),
            "unreachable": dict(list(observation.failed.items())[:20]),
        }}
        return CheckOutcome(results, observed)


# how evidence names the soft-404 probe, whose path is random per scan (a stable name keeps one finding unchanged)
NOT_FOUND_PAGE = "(not-found page)"


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
    "exposure.debug_console": "a debug console, profiler or error log is reachable",
    "exposure.admin_panel": "an administration login is reachable from the internet",
    "exposure.admin_basic_auth": "an administration path is reachable from the internet, behind a password only",
    "exposure.verbose_errors": "stack traces or debug pages are shown to visitors",
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


def _signature_matches(probes: ExposureFile, observation: ExposureObservation) -> dict[str, dict[str, SignatureMatch]]:
    """rule -> path -> the worst signature of that rule on the page; pages like the baseline count as the baseline."""
    baseline = observation.baseline
    admin_paths = set(probes.admin_paths)
    matched: dict[str, dict[str, SignatureMatch]] = {}
    for path, page in _pages_read(observation):
        if page is not baseline and looks_like(page, baseline):
            continue
        text = page.body[:BODY_WINDOW].decode("utf-8", "replace")
        if page is baseline:  # a not-found page may echo the random path: keep the evidence the same every scan
            text = text.replace(baseline.path, NOT_FOUND_PAGE)
        for rule, match in strongest_matches(text, probes.signatures, admin_path=path in admin_paths).items():
            known = matched.setdefault(rule, {}).get(path)  # a route may be a probed path too ("/")
            if known is None or match.signature.severity.rank > known.signature.severity.rank:
                matched[rule][path] = match
    return matched


def _pages_read(observation: ExposureObservation) -> list[tuple[str, Page]]:
    return [(NOT_FOUND_PAGE, observation.baseline), *observation.routes.items(),
            *observation.responses.items()]


def _signature_result(rule: str, matches: dict[str, SignatureMatch], observation: ExposureObservation) -> RuleResult:
    if not matches:
        return RuleResult(rule, Status.PASS, "nothing found", {"paths": [], "signatures": {}})
    worst = max((match.signature.severity for match in matches.values()), key=lambda severity: severity.rank)
    named = [f"{path} ({match.signature.name})" for path, match in matches.items()]
    more = f" and {len(named) - 5} more" if len(named) > 5 else ""
    statuses = {path: page.status for path, page in _pages_read(observation) if path in matches}
    return RuleResult(rule, Status.FAIL, f"{_MESSAGES.get(rule, rule)}: {', '.join(named[:5])}{more}",
                      {"paths": list(matches), "statuses": statuses,
                       "signatures": {path: match.evidence for path, match in matches.items()}}, severity=worst)


def _basic_auth(probes: ExposureFile, observation: ExposureObservation,
                panels: dict[str, SignatureMatch]) -> RuleResult:
    """Admin paths that answer with a password prompt of the browser's, unless the whole site does (the baseline)."""
    challenged: dict[str, str] = {}
    for path in probes.admin_paths:
        page = observation.responses.get(path)
        if page is None or page.status != 401 or path in panels or looks_like(page, observation.baseline):
            continue
        challenge = next((value for value in page.header_values("www-authenticate")
                          if _PASSWORD_CHALLENGE.match(value)), None)
        if challenge is not None:
            challenged[path] = challenge[:200]
    if challenged:
        return RuleResult("exposure.admin_basic_auth", Status.FAIL,
                          f"{_MESSAGES['exposure.admin_basic_auth']}: {', '.join(challenged)}",
                          {"paths": list(challenged), "challenges": challenged})
    return RuleResult("exposure.admin_basic_auth", Status.PASS, "no admin path asks for a password by HTTP auth",
                      {"paths": []})


CHECK = ExposureCheck()
