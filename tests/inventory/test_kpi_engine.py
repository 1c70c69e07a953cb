"""The KPI engine on a history computed by hand: every figure below was worked out on paper from the fixture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.core.catalog import Catalog, Rule
from connector.core.lifecycle import AssetRecord, Detection, Episode, LatestVerdict
from connector.core.model import Asset, Criticality, Severity, Status
from connector.inventory.kpi import History, Kpis, KpiSettings, Scope, compute, scopes

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
P, F, E = Status.PASS, Status.FAIL, Status.ERROR
CRIT, HIGH, MED, LOW, INFO = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO
# control -> rules, in one framework (pci_dss_4_0), so that the compliance score can be counted by hand
CONTROLS = {"X1": ["https.missing", "http.no_redirect"], "X2": ["csp.missing"], "X3": ["cert.expired"],
            "X4": ["tls.protocol.sslv3"], "X5": ["tls.protocol.tls11"], "X6": ["dns.dnssec"]}
CATEGORIES = {"exposure.git_directory": "exposure"}


def catalog() -> Catalog:
    ids = {"https.missing", "http.no_redirect", "csp.missing", "cert.expired", "cert.expiring_soon",
           "cert.untrusted", "tls.protocol.sslv3", "tls.protocol.tls10", "tls.protocol.tls11", "tls.cipher.cbc",
           "tls.cipher.rc4", "exposure.git_directory", "dns.dnssec", "hsts.missing"}
    rules = {}
    for rule_id in sorted(ids):
        controls = [control for control, members in CONTROLS.items() if rule_id in members]
        rules[rule_id] = Rule(id=rule_id, title=rule_id, description="a fixture rule", severity=Severity.MEDIUM,
                              category=CATEGORIES.get(rule_id, "posture"), check=rule_id.split(".")[0],
                              remediation="fix it as documented", compliance={"pci_dss_4_0": controls})
    return Catalog("fixture", "1", rules)


def record(host: str, criticality: Criticality, owner: str, tags: tuple[str, ...] = (),
           removed: bool = False) -> AssetRecord:
    asset = Asset(host=host, criticality=criticality, owner=owner, tags=tags)
    return AssetRecord(asset, "config", None, NOW - 60 * DAY, NOW, NOW, NOW - 2 * DAY if removed else None)


def v(fingerprint: str, asset: str, rule: str, check: str, status: Status, severity: Severity = INFO,
      subject: str = "/", days_left: int | None = None) -> LatestVerdict:
    return LatestVerdict(fingerprint, asset, rule, check, subject, status, severity, subject,
                         {"days_left": days_left} if days_left is not None else {}, status is F)


VERDICTS = [
    v("a-https", "shop", "https.missing", "https", P),
    v("a-redirect", "shop", "http.no_redirect", "https", F, HIGH),
    v("a-hsts", "shop", "hsts.missing", "headers", P),
    v("a-csp", "shop", "csp.missing", "headers", F, MED),
    v("a-expired", "shop", "cert.expired", "certificate", P, subject="443", days_left=20),
    v("a-expiring", "shop", "cert.expiring_soon", "certificate", F, MED, "443", days_left=20),
    v("a-tls10", "shop", "tls.protocol.tls10", "tls", F, MED, "443"),
    v("a-sslv3", "shop", "tls.protocol.sslv3", "tls", P, subject="443"),
    v("a-cbc", "shop", "tls.cipher.cbc", "tls", F, LOW, "443"),
    v("a-git", "shop", "exposure.git_directory", "exposure", F, CRIT, "/.git/"),
    v("b-https", "blog", "https.missing", "https", P),
    v("b-redirect", "blog", "http.no_redirect", "https", P),
    v("b-csp", "blog", "csp.missing", "headers", P),
    v("b-untrusted", "blog", "cert.untrusted", "certificate", F, HIGH, "443"),
    v("b-expired", "blog", "cert.expired", "certificate", P, subject="443", days_left=200),
    v("b-tls10", "blog", "tls.protocol.tls10", "tls", P, subject="443"),
    v("b-tls11", "blog", "tls.protocol.tls11", "tls", P, subject="443"),
    v("b-rc4", "blog", "tls.cipher.rc4", "tls", F, HIGH, "443"),
    v("c-https", "api", "https.missing", "https", E),
    v("c-tls10", "api", "tls.protocol.tls10", "tls", E, subject="443"),
    v("c-expired", "api", "cert.expired", "certificate", E, subject="443"),
    v("c-dnssec", "api", "dns.dnssec", "dns", E, subject=""),
    v("d-https", "old", "https.missing", "https", F, HIGH),  # a removed asset: counted nowhere
]


def ep(fingerprint: str, asset: str, rule: str, severity: Severity, opened_days_ago: float,
       resolved_days_ago: float | None = None) -> Episode:
    return Episode(fingerprint, asset, rule, severity, NOW - opened_days_ago * DAY,
                   NOW - resolved_days_ago * DAY if resolved_days_ago is not None else None)


EPISODES = [
    ep("a-git", "shop", "exposure.git_directory", CRIT, 1),  # open, inside its 2 d SLA: not decided yet
    ep("a-redirect", "shop", "http.no_redirect", HIGH, 10),  # open past 7 d: missed
    ep("a-csp", "shop", "csp.missing", MED, 5),
    ep("a-expiring", "shop", "cert.expiring_soon", MED, 3),
    ep("a-tls10", "shop", "tls.protocol.tls10", MED, 40),  # opened before the window
    ep("a-cbc", "shop", "tls.cipher.cbc", LOW, 2),
    ep("b-untrusted", "blog", "cert.untrusted", HIGH, 20),  # open past 7 d: missed
    ep("b-rc4", "blog", "tls.cipher.rc4", HIGH, 6),  # open, inside 7 d
    ep("b-hsts", "blog", "hsts.missing", HIGH, 15, 14),  # fixed in 1 d: met
    ep("b-csp", "blog", "csp.missing", MED, 12, 11),  # fixed, reopened, fixed again inside the SLA: two met
    ep("b-csp", "blog", "csp.missing", MED, 9, 8),
    ep("a-exposed", "shop", "exposure.git_directory", CRIT, 25, 20),  # fixed in 5 d, SLA 2 d: missed
    ep("d-https", "old", "https.missing", HIGH, 30),
]
DETECTIONS = [
    Detection("shop", "certificate", "443", NOW - 2 * DAY, NOW - 2 * DAY + timedelta(seconds=40)),
    Detection("shop", "dns", "A", NOW - 3 * DAY, NOW - 3 * DAY + timedelta(seconds=20)),
    Detection("blog", "headers", "/", NOW - DAY, NOW - DAY + timedelta(seconds=100)),
    Detection("api", "dns", "A", NOW - 40 * DAY, NOW - 40 * DAY + timedelta(seconds=5)),  # before the window
    Detection("old", "dns", "A", NOW - DAY, NOW - DAY + timedelta(seconds=9)),  # a removed asset
]
ANALYST = {"a-csp": "false_positive", "b-rc4": "accepted_risk", "b-hsts": "fixed", "a-tls10": "false_positive"}
RECORDS = [record("shop", Criticality.CRITICAL, "web", ("pay",)), record("blog", Criticality.LOW, "marketing"),
           record("api", Criticality.HIGH, "web"), record("old", Criticality.HIGH, "web", removed=True)]
HISTORY = History(RECORDS, VERDICTS, EPISODES, DETECTIONS, ANALYST)


def kpis(scope: Scope, history: History = HISTORY) -> Kpis:
    return compute(scope, history, catalog(), KpiSettings(), NOW)


def test_the_overall_posture_figures_match_the_hand_count() -> None:
    overall = kpis(Scope("overall", "all"))
    assert overall.assets == 3
    assert (overall.https_routes.good, overall.https_routes.total, overall.https_routes.percent) == (1, 2, 50.0)
    assert (overall.header_baseline.good, overall.header_baseline.total) == (1, 2)
    assert (overall.valid_certificates.good, overall.valid_certificates.total) == (1, 2)
    assert overall.oldest_tls_protocol == "TLSv1.0"
    assert overall.ciphers == {"strong": 0, "acceptable": 1, "weak": 1}
    assert overall.next_expiry_days == 20
    assert overall.open_by_severity == {"critical": 1, "high": 3, "medium": 3, "low": 1, "info": 0}
    assert overall.errored_checks == 4


def test_rates_risk_mttd_and_compliance_match_the_hand_count() -> None:
    overall = kpis(Scope("overall", "all"))
    # decided: a-redirect missed, b-untrusted missed, b-hsts met, b-csp met twice, a-exposed missed
    assert (overall.remediation.good, overall.remediation.total, overall.remediation.percent) == (3, 6, 50.0)
    # 10 fingerprints opened in the window; a-csp is the one false positive among the 3 reviewed
    assert overall.false_positive_rate == 0.1
    assert overall.detection_accuracy == 0.6667
    assert (overall.mttd_median_seconds, overall.mttd_p95_seconds, overall.detections) == (40.0, 100.0, 3)
    # severity x criticality x (1 + age/90) x exploitability, summed over the 8 open failing findings
    expected = (10 * 2 * (1 + 1 / 90) * 1.5 + 5 * 2 * (1 + 10 / 90) + 2 * 2 * (1 + 5 / 90) + 2 * 2 * (1 + 3 / 90)
                + 2 * 2 * (1 + 40 / 90) + 1 * 2 * (1 + 2 / 90) + 5 * 0.5 * (1 + 20 / 90) + 5 * 0.5 * (1 + 6 / 90))
    assert overall.risk_score == round(expected, 1) == 63.3
    assert overall.risk_per_asset == round(expected / 3, 2)
    pci = overall.compliance["pci_dss_4_0"]
    assert (pci.passing, pci.evaluated, pci.score, pci.not_evaluated) == (3, 5, 60.0, ["X6"])
    assert overall.compliance["soc2"].score is None  # no control of it in the fixture: nothing evaluated


def test_the_trends_count_what_was_open_at_the_end_of_each_day() -> None:
    overall = kpis(Scope("overall", "all"))
    assert len(overall.open_trend) == 30 and overall.open_trend[-1] == (NOW.date().isoformat(), 8)
    assert dict(overall.open_trend)[(NOW - 10 * DAY).date().isoformat()] == 3  # a-redirect, a-tls10, b-untrusted
    assert dict(overall.open_trend)[(NOW - 24 * DAY).date().isoformat()] == 2  # a-tls10, a-exposed
    assert overall.risk_trend[-1][1] == overall.risk_score


def test_scopes_split_by_owner_tag_and_criticality() -> None:
    assert [str(scope) for scope in scopes(RECORDS, "owner")] == ["owner:marketing", "owner:web"]
    assert [str(scope) for scope in scopes(RECORDS, "tag")] == ["tag:pay"]
    marketing = kpis(Scope("owner", "marketing"))
    assert marketing.assets == 1 and marketing.https_routes.percent == 100.0
    assert marketing.oldest_tls_protocol == "TLSv1.2" and marketing.ciphers["weak"] == 1
    pci = marketing.compliance["pci_dss_4_0"]
    assert (pci.passing, pci.evaluated, pci.not_evaluated) == (4, 4, [])
    # b-hsts met, b-csp met twice, b-untrusted missed
    assert (marketing.remediation.good, marketing.remediation.total) == (3, 4)


def test_an_asset_whose_every_check_errored_is_not_evaluated_rather_than_compliant() -> None:
    api = kpis(Scope("criticality", "high"))
    assert api.assets == 1 and api.errored_checks == 4
    assert api.https_routes.percent is None and api.valid_certificates.percent is None
    assert api.oldest_tls_protocol is None
    pci = api.compliance["pci_dss_4_0"]
    assert pci.score is None and pci.not_evaluated == ["X1", "X3", "X6"]
    assert api.risk_score == 0 and api.mttd_median_seconds is None  # its one detection is older than the window


def test_no_assets_gives_empty_figures_not_errors() -> None:
    empty = kpis(Scope("overall", "all"), History([], [], [], [], {}))
    assert empty.assets == 0 and empty.risk_per_asset is None and empty.remediation.percent is None
    assert empty.false_positive_rate is None and empty.detection_accuracy is None
    assert all(score.score is None for score in empty.compliance.values())
    assert empty.as_dict()["scope"] == {"kind": "overall", "value": "all"}


@pytest.mark.parametrize("days", [6.9, 7.1])
def test_an_open_high_finding_counts_as_missed_only_once_past_its_sla(days: float) -> None:
    history = History(RECORDS[:1], [v("x", "shop", "csp.missing", "headers", F, HIGH)],
                      [ep("x", "shop", "csp.missing", HIGH, days)], [], {})
    remediation = kpis(Scope("overall", "all"), history).remediation
    assert (remediation.good, remediation.total) == ((0, 0) if days < 7 else (0, 1))
