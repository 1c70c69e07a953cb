"""The page grade of the MDN HTTP Observatory (score, letter, algorithm version) for each asset's home page.

The grade is computed by connector/observatory.py from the same kinds of requests the Observatory makes: the
HTTPS page, the plain-HTTP redirect chain, a CORS preflight from a foreign origin, and robots.txt for cookies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.core.errors import ProbeError
from connector.core.model import Asset, CheckOutcome, RuleResult, Status, Target
from connector.probes.http import Fetched
from connector.probes.web import CORS_PROBE_ORIGIN, Page, WebProbe
from connector.probes.web import meta_csp as meta_csp_of
from connector.scan.checks.base import Check
from connector.scan.checks.observatory.grader import GRADES, Response, SiteResponses, grade
from connector.scan.context import ScanContext

MAX_REDIRECTS = 10


class ObservatorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_grade: str = Field(default="C", description="a page graded below this is a finding")

    @field_validator("min_grade")
    @classmethod
    def _known_grade(cls, value: str) -> str:
        if value not in GRADES:
            raise ValueError(f"min_grade must be one of {', '.join(GRADES)}")
        return value

    def below(self, letter: str) -> bool:
        return GRADES.index(letter) > GRADES.index(self.min_grade)


@dataclass(frozen=True)
class ObservatoryObservation:
    responses: SiteResponses | None
    skipped: str | None = None


def _response(page: Page | Fetched, verified: bool = True) -> Response:
    headers: dict[str, list[str]] = {}
    for name, value in page.headers.multi_items():
        headers.setdefault(name.lower(), []).append(value)
    return Response(page.status, headers, page.body, verified)


class ObservatoryCheck(Check[ObservatoryObservation, ObservatorySettings]):
    name = "observatory"
    description = "MDN HTTP Observatory score and grade of the home page"
    settings_model = ObservatorySettings

    def targets(self, asset: Asset) -> list[Target]:
        return [Target(asset, asset.https_port, "/", scheme="https")]

    async def observe(self, target: Target, ctx: ScanContext, settings: ObservatorySettings) -> ObservatoryObservation:
        asset = target.asset
        web = ctx.web(asset)
        page = await web.page("/")
        if page.status < 200 or (page.status >= 400 and page.status not in (401, 403)):
            return ObservatoryObservation(None, f"the page answers {page.status}; the Observatory grades only "
                                                "2xx, 3xx, 401 and 403 answers")
        http_chain, http_final = await _http_chain(web, asset) if asset.http_port else ((), None)
        try:
            preflight = await ctx.http.get(page.url, address=asset.address, method="OPTIONS", verify=False, headers={
                "Origin": CORS_PROBE_ORIGIN, "Access-Control-Request-Method": "GET"})
            cors: Response | None = _response(preflight)
        except ProbeError:
            cors = None
        cookies = list(page.header_values("set-cookie"))
        try:
            robots = await web.page("/robots.txt")
            cookies += robots.header_values("set-cookie")
        except ProbeError:
            pass
        html = page.parse_html()
        meta_csp: tuple[str, ...] = ()
        meta_referrer = None
        if html is not None and (page.headers.get("content-type", "").split(";")[0].strip()
                                 in ("text/html", "application/xhtml+xml")):
            meta_csp = tuple(policy for policy in meta_csp_of(html) if policy)
            referrers = [node.attributes.get("content") for node in html.css("meta[name=referrer]")]
            meta_referrer = next((value for value in reversed(referrers) if value), None)
        auto = _response(page, page.certificate_valid)
        return ObservatoryObservation(SiteResponses(
            host=asset.host, session_https=True, auto=auto, https=auto, http=http_final,
            http_redirects=http_chain, cors=cors, cors_origin=CORS_PROBE_ORIGIN, cookies=tuple(cookies),
            meta_csp=meta_csp, meta_referrer=meta_referrer))

    def judge(self, target: Target, observation: ObservatoryObservation, settings: ObservatorySettings,
              now: datetime) -> CheckOutcome:
        if observation.responses is None:
            return CheckOutcome([RuleResult("observatory.grade", Status.ERROR, observation.skipped or "not graded")])
        result = grade(observation.responses)
        summary = result.as_dict()
        low = settings.below(result.grade)
        penalties = [f"{r.result} ({r.modifier})" for r in result.results if r.modifier < 0]
        message = f"Observatory grade {result.grade} (score {result.score}, algorithm {result.algorithm_version})"
        if low:
            message += f", below {settings.min_grade}: " + ", ".join(penalties[:6])
        return CheckOutcome(
            [RuleResult("observatory.grade", Status.FAIL if low else Status.PASS, message,
                        {**summary, "minimum": settings.min_grade})],
            {"observatory": summary},
        )


async def _http_chain(web: WebProbe, asset: Asset) -> tuple[tuple[str, ...], Response | None]:
    """The http:// session as the Observatory runs it: every hop followed across the configured assets, up to
    ten; the grade is then judged on the last response fetched."""
    url = Target(asset, asset.http_port, scheme="http").url or ""
    chain = [url]
    verified = True
    final: Fetched | None = None
    for _ in range(MAX_REDIRECTS + 1):
        try:
            final, hop_verified = await web.hop(url)
            verified &= hop_verified
        except ProbeError:
            if len(chain) == 1:
                return (), None  # nothing answers plain HTTP
            break
        if not final.is_redirect:
            break
        url = urljoin(url, final.location or "")
        chain.append(url)
        if web.refusal(url):
            break  # no configured asset answers there: recorded in the chain, never fetched
    return tuple(chain), _response(final, verified) if final is not None else None


CHECK = ObservatoryCheck()
