"""HTTPS transport: is plain HTTP redirected to HTTPS properly, and does HTTPS pin itself with HSTS?

Redirects are followed hop by hop from ``http://host/`` so the status, target host and number of hops of each
redirect can be judged. HSTS is read only from HTTPS responses with a valid certificate, as browsers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.parsers.hsts import ONE_YEAR, Hsts, HstsError, parse_hsts
from connector.probes.http import TlsHandshakeError
from connector.probes.web import WebProbe
from connector.scan.checks.base import Check
from connector.scan.context import ScanContext

MAX_HOPS = 10
PERMANENT_REDIRECTS = (301, 308)


class TransportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hsts_min_max_age: int = Field(default=ONE_YEAR, ge=0, description="seconds; shorter max-age is flagged")


@dataclass(frozen=True)
class Hop:
    url: str
    status: int
    location: str | None


@dataclass(frozen=True)
class RedirectView:
    """What following ``http://host/`` hop by hop showed."""

    http_url: str
    listening: bool
    error: str | None = None
    hops: tuple[Hop, ...] = ()
    reached_https: str | None = None  # the first https:// URL the redirects led to
    hsts_over_http: bool = False
    refused: tuple[str, str] | None = None  # (why, where): a redirect recorded but not followed
    address: str | None = None  # where http:// was fetched


@dataclass(frozen=True)
class HttpsView:
    """What ``GET https://host/`` showed, as a browser would judge it."""

    url: str
    error: str | None = None  # nothing usable answers HTTPS
    unusable: str | None = None  # something answers, but a standard client cannot complete a request
    status: int | None = None
    certificate_valid: bool | None = None
    hsts_values: tuple[str, ...] = ()
    address: str | None = None  # where it was fetched: pinned, or as the scan's resolver answered


@dataclass(frozen=True)
class TransportObservation:
    https: HttpsView
    redirects: RedirectView | None  # None: the asset declares no plain-HTTP port


class HttpsTransportCheck(Check[TransportObservation, TransportSettings]):
    name = "https"
    description = "HTTP to HTTPS redirects and HTTP Strict Transport Security"
    settings_model = TransportSettings

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, asset.https_port, scheme="https")]

    async def observe(self, target: Target, ctx: ScanContext, settings: TransportSettings) -> TransportObservation:
        asset = target.asset
        web = ctx.web(asset)
        https = await _probe_https(web, target.url or "")
        redirects = None
        if asset.http_port is not None:
            redirects = await _probe_redirects(web, Target(asset, asset.http_port, scheme="http").url or "")
        return TransportObservation(https, redirects)

    def judge(
        self, target: Target, observation: TransportObservation, settings: TransportSettings, now: datetime
    ) -> CheckOutcome:
        redirects = observation.redirects
        results = _redirect_results(target.asset.host, redirects) if redirects else []
        results.extend(_hsts_results(target.asset.host, observation, settings))
        observed = {
            "http_transport": {
                "http_url": redirects.http_url if redirects else None,
                "redirects": [{"url": hop.url, "status": hop.status, "location": hop.location}
                              for hop in (redirects.hops if redirects else ())],
                "https_url": observation.https.url,
                "https_status": observation.https.status,
                "hsts": list(observation.https.hsts_values),
            },
            "url": _url_fields(observation.https.url),
        }
        return CheckOutcome(results, observed)


async def _probe_redirects(web: WebProbe, http_url: str) -> RedirectView:
    """Follow ``http://host/`` hop by hop, but only where a configured asset answers: a redirect elsewhere, or to
    another scheme than HTTP(S), is recorded and never fetched, so its query string goes nowhere."""
    hops: list[Hop] = []
    hsts_over_http = False
    url = http_url
    address = None
    try:
        for _ in range(MAX_HOPS):
            response, _verified = await web.hop(url)
            address = address or response.address
            hsts_over_http |= bool(response.header_values("strict-transport-security"))
            if not response.is_redirect:
                hops.append(Hop(url, response.status, None))
                break
            location = urljoin(url, response.location or "")
            hops.append(Hop(url, response.status, location))
            refusal = web.refusal(location)
            if location.startswith("https://"):
                return RedirectView(http_url, True, None, tuple(hops), location, hsts_over_http,
                                    (refusal, location) if refusal else None, address)
            if refusal:
                return RedirectView(http_url, True, None, tuple(hops), None, hsts_over_http, (refusal, location),
                                    address)
            if any(hop.url == location for hop in hops):
                break  # a loop: reported as never reaching HTTPS
            url = location
    except ProbeError as exc:
        if exc.kind == "dns" and not hops:
            raise  # the host cannot be reached at all: one scan.error, not a redirect verdict
        if not hops and exc.kind == "refused":
            return RedirectView(http_url, False)
        return RedirectView(http_url, bool(hops), str(exc), tuple(hops), None, hsts_over_http, None, address)
    return RedirectView(http_url, True, None, tuple(hops), None, hsts_over_http, None, address)


async def _probe_https(web: WebProbe, url: str) -> HttpsView:
    try:
        response, valid = await web.hop(url)
    except TlsHandshakeError as exc:
        return HttpsView(url, unusable=str(exc))
    except ProbeError as exc:
        if exc.kind == "dns":
            raise
        if exc.kind == "timeout":
            return HttpsView(url, unusable=str(exc))
        return HttpsView(url, error=str(exc))
    hsts = tuple(response.header_values("strict-transport-security"))
    return HttpsView(url, status=response.status, certificate_valid=valid, hsts_values=hsts,
                     address=response.address)


def _url_fields(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    fields: dict[str, object] = {"full": url, "scheme": parts.scheme, "domain": parts.hostname, "path": parts.path}
    if parts.port:
        fields["port"] = parts.port
    return fields


def _redirect_results(host: str, observation: RedirectView) -> list[RuleResult]:
    hops = observation.hops
    evidence: dict[str, object] = {
        "http_url": observation.http_url, "address": observation.address,
        "redirects": [f"{hop.status} {hop.url} -> {hop.location}" for hop in hops if hop.location]}
    if not observation.listening:
        return [RuleResult("http.no_redirect", Status.PASS, "no plain-HTTP listener", evidence)]
    if observation.error and not observation.reached_https:
        return [RuleResult("http.no_redirect", Status.ERROR, observation.error, evidence)]
    why, where = observation.refused or (None, None)
    scheme = _scheme_result(hops, observation.refused, evidence)
    if not observation.reached_https:
        last = hops[-1] if hops else None
        if why == "scheme":
            message = f"{observation.http_url} redirects to a {urlsplit(where or '').scheme}: URL, never to HTTPS"
        elif why == "offhost":
            message = (f"{observation.http_url} redirects to {where}, plain HTTP off the asset (not followed), "
                       "without reaching HTTPS")
        elif last is not None and last.location is None and len(hops) == 1:
            message = f"{observation.http_url} is served over plain HTTP (status {last.status}) without a redirect"
        else:
            message = f"{observation.http_url} redirects, but never to HTTPS"
        results = [RuleResult("http.no_redirect", Status.FAIL, message, evidence)]
        if why == "offhost":
            results.append(RuleResult(
                "http.redirect_offhost", Status.FAIL,
                f"a redirect leaves {host} for {where}, where no configured asset answers; it was not followed",
                {**evidence, "not_followed": where}))
        return [*results, *([scheme] if scheme else [])]
    results = [RuleResult("http.no_redirect", Status.PASS, f"redirects to {observation.reached_https}", evidence)]
    temporary = [hop for hop in hops if hop.status not in PERMANENT_REDIRECTS]
    results.append(RuleResult(
        "http.redirect_temporary",
        Status.FAIL if temporary else Status.PASS,
        f"redirect uses temporary status {temporary[0].status}; browsers and crawlers will not remember it"
        if temporary else "redirects are permanent (301/308)",
        {**evidence, "statuses": [hop.status for hop in hops]},
    ))
    results.append(RuleResult(
        "http.redirect_chain",
        Status.FAIL if len(hops) > 1 else Status.PASS,
        f"{len(hops)} redirects before reaching HTTPS" if len(hops) > 1 else "one redirect straight to HTTPS",
        {**evidence, "hops": len(hops)},
    ))
    first_host = urlsplit(hops[0].location or "").hostname
    if first_host != host:
        message = f"the first redirect leaves {host} for {first_host}; HSTS for {host} is never set from HTTP"
    elif why == "offhost":
        message = f"the redirect goes to {where}, a port no configured asset answers on"
    else:
        message = "the first redirect stays on the same host"
    results.append(RuleResult(
        "http.redirect_offhost",
        Status.PASS if first_host == host and why is None else Status.FAIL,
        message,
        {**evidence, "first_redirect_host": first_host},
    ))
    return [*results, *([scheme] if scheme else [])]


def _scheme_result(hops: tuple[Hop, ...], refused: tuple[str, str] | None,
                   evidence: dict[str, object]) -> RuleResult | None:
    """Judged wherever the site redirects at all: a file:, data: or javascript: target was never fetched."""
    if not any(hop.location for hop in hops):
        return None
    if refused is not None and refused[0] == "scheme":
        scheme = urlsplit(refused[1]).scheme or "an unknown"
        return RuleResult("http.redirect_scheme", Status.FAIL,
                          f"a redirect points at a {scheme}: URL, which no browser should be sent to from a "
                          "site; it was not followed", {**evidence, "not_followed": refused[1][:200]})
    return RuleResult("http.redirect_scheme", Status.PASS, "every redirect goes to an http(s) URL", evidence)


def _hsts_results(host: str, observation: TransportObservation, settings: TransportSettings) -> list[RuleResult]:
    https = observation.https
    if https.error is not None:
        return [RuleResult("https.missing", Status.FAIL, f"HTTPS is not available: {https.error}",
                           {"https_url": https.url})]
    if https.unusable is not None:
        return [RuleResult("https.missing", Status.ERROR,
                           f"HTTPS could not be used by a standard client: {https.unusable}", {"https_url": https.url})]
    results = [RuleResult("https.missing", Status.PASS, f"{https.url} answers over HTTPS",
                          {"https_url": https.url, "status": https.status, "address": https.address})]
    over_http = bool(observation.redirects and observation.redirects.hsts_over_http)
    evidence: dict[str, object] = {"headers": list(https.hsts_values), "sent_over_plain_http": over_http}
    if not https.certificate_valid:
        results.append(RuleResult("hsts.missing", Status.ERROR,
                                  "HSTS not evaluated: browsers ignore it from a host whose certificate is invalid",
                                  evidence))
        return results
    try:
        hsts = parse_hsts(list(https.hsts_values))
    except HstsError as exc:
        message = f"no valid HSTS policy: {exc}"
        if over_http and not https.hsts_values:
            message += " (a header sent over plain HTTP is ignored by browsers)"
        results.append(RuleResult("hsts.missing", Status.FAIL, message, evidence))
        return results
    evidence.update(max_age=hsts.max_age, include_subdomains=hsts.include_subdomains, preload=hsts.preload)
    if hsts.max_age == 0:
        results.append(RuleResult("hsts.missing", Status.FAIL, "max-age=0 tells browsers to drop HSTS", evidence))
        return results
    results.append(RuleResult("hsts.missing", Status.PASS, f"HSTS max-age={hsts.max_age}", evidence))
    short = hsts.max_age < settings.hsts_min_max_age
    results.append(RuleResult(
        "hsts.max_age_short", Status.FAIL if short else Status.PASS,
        f"max-age={hsts.max_age} is below {settings.hsts_min_max_age}" if short else f"max-age={hsts.max_age}",
        {**evidence, "minimum": settings.hsts_min_max_age},
    ))
    results.append(RuleResult(
        "hsts.no_include_subdomains", Status.PASS if hsts.include_subdomains else Status.FAIL,
        "includeSubDomains is set" if hsts.include_subdomains else "includeSubDomains is missing", evidence,
    ))
    results.append(_preload(host, observation, hsts, evidence))
    return results


def _preload(host: str, observation: TransportObservation, hsts: Hsts, evidence: dict[str, object]) -> RuleResult:
    """hstspreload.org's submission requirements that can be seen from outside, judged when preload is asked for."""
    unmet = []
    if hsts.max_age < ONE_YEAR:
        unmet.append(f"max-age must be at least {ONE_YEAR}")
    if not hsts.include_subdomains:
        unmet.append("includeSubDomains is required")
    redirects = observation.redirects
    if redirects is not None and redirects.listening:
        first = redirects.hops[0] if redirects.hops else None
        if not first or not first.location or urlsplit(first.location).hostname != host \
                or not first.location.startswith("https://"):
            unmet.append("plain HTTP must redirect to HTTPS on the same host first")
    evidence = {**evidence, "eligible": not unmet, "unmet": unmet}
    if not hsts.preload:
        eligibility = "it would be eligible" if not unmet else "it would not be eligible: " + "; ".join(unmet)
        return RuleResult("hsts.preload_ineligible", Status.PASS, f"preloading is not requested ({eligibility})",
                          evidence)
    if unmet:
        return RuleResult("hsts.preload_ineligible", Status.FAIL,
                          "the preload directive is set, but the preload list will refuse or drop the domain: "
                          + "; ".join(unmet), evidence)
    return RuleResult("hsts.preload_ineligible", Status.PASS, "meets the HSTS preload requirements", evidence)


CHECK = HttpsTransportCheck()
