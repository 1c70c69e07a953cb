"""A month of simulated history in a real state store, recorded by the project's own code: each day the asset
register is synced with the day's configuration, and each asset's verdicts of that day go through the finding
ledger (assess, then apply) and the observation baselines, with the scan time set to that day, as the collector
records a scan. Nothing is written to the tables by hand.

The estate (five assets, three owners, four criticalities) and what happens to it, day d at 06:00 UTC from START:

- shop (critical, web, tag pay): certificate until START+40d, so cert.expiring_soon (<= 30 days) fails from d10
  (E1, open); csp.missing fails d0-d2 (E2, resolved d3);
- blog (low, marketing): certificate until START+20d: cert.expiring_soon fails d0-d14 (E3), the certificate is
  renewed on d15 (until START+110d: resolved, and one certificate drift); csp.missing fails all month (E4);
- api (high, web): csp.missing fails d5-d11 (E5, resolved d12) and again from d20 (E6, a reopening);
  tls.protocol.tls10 fails all month (E7); certificate until START+200d;
- legacy (medium, ops): https.missing fails (E8) until the asset leaves the configuration on d20;
- admin (critical, ops) enters on d10: the .git directory is exposed d10-d12 (E9, high, resolved d13), its certificate
  until START+25d makes cert.expiring_soon fail from d10 (E10) until it expires: cert.expired fails from d26
  (E11, critical, open) and cert.expiring_soon passes then (E10 resolved d26).

So over the month 11 episodes open and 5 resolve (E2, E3, E5, E9, E10); at NOW five are open on the four present
assets: cert.expired (critical) on admin, and four medium (E1, E4, E6, E7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from connector.core.catalog import Catalog, load_catalog
from connector.core.model import Asset, AssetReport, Criticality, Finding, Severity, Status
from connector.inventory.baselines import DriftSettings
from connector.runtime.state import StateStore

START = datetime(2026, 11, 7, 6, 0, tzinfo=UTC)
DAY = timedelta(days=1)
DAYS = 30
NOW = START + (DAYS - 1) * DAY + timedelta(hours=6)  # the report's "now": six hours after the last day's scans


def at(day: int, hours: float = 0) -> datetime:
    """When day ``day``'s scans ran (plus ``hours``)."""
    return START + day * DAY + timedelta(hours=hours)


ASSETS = {
    "shop": Asset(host="shop.example.test", name="shop", criticality=Criticality.CRITICAL, owner="web", tags=("pay",)),
    "blog": Asset(host="blog.example.test", name="blog", criticality=Criticality.LOW, owner="marketing"),
    "api": Asset(host="api.example.test", name="api", criticality=Criticality.HIGH, owner="web"),
    "legacy": Asset(host="legacy.example.test", name="legacy", criticality=Criticality.MEDIUM, owner="ops"),
    "admin": Asset(host="admin.example.test", name="admin", criticality=Criticality.CRITICAL, owner="ops"),
}


@dataclass(frozen=True)
class Month:
    state_dir: Path
    config: Path
    catalog: Catalog


def present(day: int) -> list[str]:
    """The assets in the configuration on ``day``."""
    names = ["shop", "blog", "api"]
    if day < 20:
        names.append("legacy")
    if day >= 10:
        names.append("admin")
    return names


def not_after(name: str, day: int) -> datetime:
    if name == "blog":
        return START + (110 if day >= 15 else 20) * DAY
    return START + {"shop": 40, "api": 200, "legacy": 300, "admin": 25}[name] * DAY


def failing(name: str, day: int) -> set[str]:
    """The rules failing on ``name`` on ``day``, besides the certificate's (which follow from its dates)."""
    rules = {
        "shop": {"csp.missing"} if day <= 2 else set(),
        "blog": {"csp.missing"},
        "api": ({"csp.missing"} if 5 <= day <= 11 or day >= 20 else set()) | {"tls.protocol.tls10"},
        "legacy": {"https.missing"},
        "admin": {"exposure.vcs"} if day <= 12 else set(),
    }
    return rules[name]


# rule -> (check, port, path): the simulated scan of each asset evaluates all of them every day
RULES = {
    "cert.expired": ("certificate", 443, None), "cert.expiring_soon": ("certificate", 443, None),
    "cert.untrusted": ("certificate", 443, None), "csp.missing": ("headers", 443, "/"),
    "https.missing": ("https", None, None), "tls.protocol.tls10": ("tls", 443, None),
    "tls.protocol.sslv3": ("tls", 443, None), "exposure.vcs": ("exposure", 443, "/.git/"),
}


def report(name: str, day: int, catalog: Catalog) -> AssetReport:
    asset = ASSETS[name]
    when = at(day)
    expiry = not_after(name, day)
    days_left = int((expiry - when).total_seconds() // 86400)
    fails = failing(name, day)
    if days_left < 0:
        fails.add("cert.expired")
    elif days_left <= 30:
        fails.add("cert.expiring_soon")
    findings = []
    for rule_id, (check, port, path) in RULES.items():
        if rule_id == "exposure.vcs" and name != "admin":
            continue
        rule = catalog[rule_id]
        status = Status.FAIL if rule_id in fails else Status.PASS
        evidence: dict[str, object] = {}
        observed: dict[str, object] = {}
        if check == "certificate":
            evidence = {"days_left": days_left, "not_after": expiry.isoformat()}
            if rule_id == "cert.expired":  # the certificate as served: its baseline, and a drift when renewed
                observed = {"tls_server": {"hash": {"sha256": f"{name}-{expiry:%Y%m%d}"},
                                           "issuer": "CN=Simulated CA", "not_after": expiry.isoformat()}}
        findings.append(Finding(
            rule_id=rule_id, check=check, status=status,
            severity=rule.severity if status is Status.FAIL else Severity.INFO,
            message=f"{rule.title}: {status.value}", asset=asset, port=port, path=path,
            scheme="https" if path else None, evidence=evidence, observed=observed,
            scan_id=f"sim-{day:02d}", observed_at=when, first_seen=when, last_seen=when))
    return AssetReport(asset, findings)


def simulate_month(root: Path, catalog: Catalog | None = None) -> Month:
    """The month above in ``root/state/state.sqlite``, and a configuration (``root/config.yaml``) that reads it."""
    catalog = catalog or load_catalog()
    state_dir = root / "state"
    store = StateStore(state_dir / "state.sqlite")
    kinds = DriftSettings().enabled
    try:
        for day in range(DAYS):
            names = present(day)
            store.sync_assets([ASSETS[name] for name in names], at(day, -1), lambda changes: None)
            for name in names:
                scanned = report(name, day, catalog)
                assessment = store.findings.assess(scanned)
                baselines = store.baselines.assess(AssetReport(scanned.asset, assessment.findings), kinds)
                store.findings.apply(assessment)
                store.baselines.apply(baselines)
                store.assets.scanned(name, at(day))
                store.record_scan(f"sim-{day:02d}", name, at(day), len(scanned.findings))
    finally:
        store.close()
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"assets": [ASSETS[name].model_dump(mode="json", exclude_none=True)
                                                 for name in present(DAYS - 1)],
                                      "state_dir": str(state_dir)}))
    return Month(state_dir, config, catalog)
