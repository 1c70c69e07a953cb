"""The posture report's model on a month of simulated history (tests/support/month.py), recorded by the real
ledger, register and baselines: every number below is counted by hand from the month's story there."""

from __future__ import annotations

import pytest

from connector.core.catalog import load_catalog
from connector.core.model import Status
from connector.inventory.kpi import History, KpiSettings, Scope, as_of, compute
from connector.inventory.report import PostureReport, build
from connector.runtime.state import StateStore
from support.month import DAY, DAYS, NOW, at, simulate_month

OVERALL = Scope("overall", "all")


@pytest.fixture(scope="module")
def month_history(tmp_path_factory: pytest.TempPathFactory) -> History:
    month = simulate_month(tmp_path_factory.mktemp("month"))
    store = StateStore(month.state_dir / "state.sqlite", exclusive=False)
    try:
        return History(store.assets.records(include_removed=True), store.findings.verdicts(),
                       store.findings.episodes(), store.baselines.detections(), {})
    finally:
        store.close()


def report(history: History, *scopes: Scope) -> PostureReport:
    return build(history, load_catalog(), KpiSettings(), NOW, window=DAYS * DAY, scopes=scopes or (OVERALL,))


def test_the_month_opens_eleven_episodes_and_resolves_five(month_history: History) -> None:
    month = report(month_history)
    assert month.window_days == 30 and len(month.days) == 30 and month.days[-1].at == NOW
    assert month.summary["opened"] == 11 and len(month.opened) == 11
    assert sorted((line.asset, line.rule) for line in month.resolved) == [
        ("admin", "cert.expiring_soon"), ("admin", "exposure.vcs"), ("api", "csp.missing"),
        ("blog", "cert.expiring_soon"), ("shop", "csp.missing")]
    assert [line.resolved_at for line in month.resolved] == sorted(
        (line.resolved_at or "" for line in month.resolved), reverse=True)  # most recent first
    # per day: E2 E3 E4 E7 E8 on d0; E5 on d5; E1 E9 E10 on d10; E6 on d20; E11 on d26
    assert {point.day: point.opened for point in month.days if point.opened} == {
        at(0).date().isoformat(): 5, at(5).date().isoformat(): 1, at(10).date().isoformat(): 3,
        at(20).date().isoformat(): 1, at(26).date().isoformat(): 1}
    assert sum(point.resolved for point in month.days) == 5


def test_what_is_open_now_and_its_remediation(month_history: History) -> None:
    month = report(month_history)
    assert month.summary["assets"] == 4  # legacy left on d20
    assert month.summary["open_findings"] == 5
    assert month.summary["open_by_severity"] | {"info": 0} == {"critical": 1, "high": 0, "medium": 4, "low": 0,
                                                               "info": 0}
    assert [(f.severity, f.asset, f.rule) for f in month.open_findings] == [
        ("critical", "admin", "cert.expired"), ("medium", "api", "csp.missing"),
        ("medium", "api", "tls.protocol.tls10"), ("medium", "blog", "csp.missing"),
        ("medium", "shop", "cert.expiring_soon")]
    catalog = load_catalog()
    assert all(f.remediation == catalog[f.rule].remediation.strip() for f in month.open_findings)
    assert month.open_findings[1].days_open == 9  # the reopened episode counts from d20, not d5
    assert month.top_assets[0].asset == "admin" and month.top_assets[0].open_findings == 1
    assert [a.asset for a in month.top_assets] == sorted(
        (a.asset for a in month.top_assets), key=lambda name: -next(x.risk for x in month.top_assets
                                                                   if x.asset == name))


def test_the_certificate_timeline_counts_days_left_from_each_not_after(month_history: History) -> None:
    month = report(month_history)
    # at the last scan (d29 06:00): admin until START+25d, shop +40d, blog +110d (renewed d15), api +200d
    assert [(c.asset, c.days_left, c.state) for c in month.certificates] == [
        ("admin", -4, "expired"), ("shop", 11, "expiring"), ("blog", 81, "valid"), ("api", 171, "valid")]
    assert month.summary["next_expiry_days"] == -4
    assert (month.summary["certificates_expired"], month.summary["certificates_expiring"]) == (1, 1)


def test_compliance_lists_the_failing_controls_behind_each_score(month_history: History) -> None:
    month = report(month_history)
    catalog = load_catalog()
    for framework in month.compliance:
        failing = {f.control for f in framework.failing}
        assert framework.evaluated - framework.passing == len(failing)
        for control in framework.failing:
            assert all(control.control in getattr(catalog[rule].compliance, framework.framework)
                       for rule in control.rules)
    pci = next(f for f in month.compliance if f.framework == "pci_dss_4_0")
    assert pci.not_evaluated == []  # nothing errored in the month
    expired = {c.control for c in pci.failing if "cert.expired" in c.rules}
    assert expired == set(catalog["cert.expired"].compliance.pci_dss_4_0)


def test_a_scope_restricts_the_report_to_its_assets(month_history: History) -> None:
    web = report(month_history, Scope("owner", "web"))
    assert web.scopes == ["owner:web"] and web.summary["assets"] == 2
    assert {line.asset for line in web.opened} == {"shop", "api"}
    assert {c.asset for c in web.certificates} == {"shop", "api"}
    both = report(month_history, Scope("owner", "web"), Scope("criticality", "critical"))
    assert both.summary["assets"] == 3  # shop, api and admin


def test_a_past_day_counts_only_what_existed_then(month_history: History) -> None:
    """Day 10 at noon: admin had just entered, legacy had not left; open were E1 E3 E4 E5 E7 E8 E9 E10."""
    moment = at(10, 6)
    catalog, settings = load_catalog(), KpiSettings()
    then = compute(OVERALL, as_of(month_history, moment), catalog, settings, moment)
    assert then.assets == 5
    # medium: E1 E3 E4 E5 E7 E10; high: E8 (https.missing), E9 (exposure.vcs)
    assert then.open_by_severity == {"info": 0, "low": 0, "medium": 6, "high": 2, "critical": 0}
    assert then.https_routes.good == 4 and then.https_routes.total == 5  # legacy's https.missing
    assert then.next_expiry_days == 14  # admin's certificate: START+25d; blog's (renewed d15) is not known
    # the history as the store keeps it now is not the history of day 10: the latest verdicts, no legacy
    current = History([r for r in month_history.records if r.removed_at is None], month_history.verdicts,
                      month_history.episodes, month_history.detections, {})
    naive = compute(OVERALL, current, catalog, settings, moment)
    assert naive.assets == 4 and naive.open_by_severity["critical"] == 1  # day 26's expired certificate
    assert compute(OVERALL, as_of(month_history, NOW), catalog, settings, NOW).open_by_severity == \
        compute(OVERALL, current, catalog, settings, NOW).open_by_severity


def test_as_of_reopens_episodes_resolved_later_and_drops_later_detections(month_history: History) -> None:
    moment = at(11)
    then = as_of(month_history, moment)
    assert all(e.opened_at <= moment for e in then.episodes)
    vcs = next(e for e in then.episodes if e.rule_id == "exposure.vcs")
    assert vcs.resolved_at is None  # resolved on d13
    assert not then.detections  # blog's renewal was detected on d15
    verdict = next(v for v in then.verdicts if v.asset_id == "api" and v.rule_id == "csp.missing")
    assert verdict.status is Status.FAIL and verdict.is_open  # E5, d5-d11
    blog = next(v for v in then.verdicts if v.asset_id == "blog" and v.rule_id == "cert.expiring_soon")
    assert "days_left" not in blog.facts  # the certificate served then was replaced since
    assert len(month_history.detections) == 1
