"""`connector report` as an auditor gets it, on a month of simulated history: the HTML page in a real browser
(Debian's chromium, driven by Playwright: no request but the file, no console error, every chart drawn, printable),
JSON and CSV that say the same numbers, and clear refusals of bad input."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import ConsoleMessage, Request, sync_playwright

from connector.inventory.kpi import History
from support.cli import connector
from support.month import DAYS, NOW, Month, simulate_month

CHROMIUM = "/usr/bin/chromium"  # Debian's package (tests/run installs it); Playwright downloads no browser
CHARTS = {"Open findings by severity at the end of each day", "Findings opened (up) and resolved (down) per day",
          "Risk score at the end of each day", "Posture KPIs at the end of each day", "Compliance score per framework",
          "Certificate expiry: days left per TLS endpoint", "Assets by risk score"}


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Month:
    return simulate_month(tmp_path_factory.mktemp("month"))


def report(month: Month, out: Path, *extra: str) -> Path:
    done = connector("report", "-c", str(month.config), "--until", NOW.isoformat(), "-o", str(out), *extra)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def page_file(month: Month, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report(month, tmp_path_factory.mktemp("html") / "posture.html")


def test_the_page_is_self_contained_and_every_chart_is_drawn_in_a_real_browser(page_file: Path,
                                                                              tmp_path: Path) -> None:
    text = page_file.read_text()
    assert "<script" not in text and "http-equiv" not in text
    assert 'src="' not in text and "@import" not in text and "<link" not in text
    assert not re.search(r"url\((?!#)", text)  # only the charts' own clip paths: url(#id)
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def console(message: ConsoleMessage) -> None:
                if message.type in ("error", "warning"):
                    problems.append(f"{message.type}: {message.text}")

            def request(sent: Request) -> None:
                requests.append(sent.url)

            page.on("console", console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", request)
            page.goto(page_file.as_uri(), wait_until="load")
            shot = tmp_path / "posture.png"
            page.screenshot(path=str(shot), full_page=True)
            charts: list[dict[str, Any]] = page.evaluate("""() => [...document.querySelectorAll('svg.chart')].map(s => {
                const box = s.getBoundingClientRect();
                const paths = [...s.querySelectorAll('path')];
                const drawn = paths.filter(p => { const b = p.getBBox(); return b.width > 0 || b.height > 0; });
                return {label: s.getAttribute('aria-label'), width: box.width, height: box.height,
                        paths: paths.length, drawn: drawn.length};
            })""")
            ids = page.evaluate("[...document.querySelectorAll('[id]')].map(e => e.id)")
            light = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
            page.emulate_media(color_scheme="dark")
            dark = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
            page.emulate_media(media="print", color_scheme="dark")
            printed = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
            printed_width = page.evaluate("document.querySelector('svg.chart').getBoundingClientRect().width")
            page.screenshot(path=str(tmp_path / "print.png"), full_page=True)
            pdf = page.pdf(format="A4")
        finally:
            browser.close()
    assert requests == [page_file.as_uri()]
    assert problems == []
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 50_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1200 and height > 3000  # the whole report, not a blank viewport
    assert {chart["label"] for chart in charts} == CHARTS
    assert len(ids) == len(set(ids))  # the charts' clip paths and markers do not collide
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 50, chart
        assert chart["drawn"] >= 3, chart  # axes, ticks and the series themselves
    assert (light, dark, printed) == ("rgb(255, 255, 255)", "rgb(20, 23, 29)", "rgb(255, 255, 255)")
    assert printed_width > 100
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000


def test_json_and_csv_say_what_the_page_says(month: Month, page_file: Path, tmp_path: Path) -> None:
    data = json.loads(report(month, tmp_path / "posture.json", "--format", "json").read_text())
    rows = list(csv.DictReader(io.StringIO(report(month, tmp_path / "posture.csv", "--format", "csv").read_text())))
    html = page_file.read_text()
    summary = data["summary"]
    assert (summary["opened"], summary["resolved"], summary["open_findings"], summary["assets"]) == (11, 5, 5, 4)
    for name in ("assets", "open_findings", "opened", "resolved", "risk_score"):
        assert f'data-kpi="{name}">{summary[name]}<' in html
    assert f'data-kpi="open.critical">{summary["open_by_severity"]["critical"]}<' in html
    assert [c["days_left"] for c in data["certificates"]] == [-4, 11, 81, 171]
    for certificate in data["certificates"]:
        assert f'<td class="num" data-days-left>{certificate["days_left"]}</td>' in html
    for finding in data["open_findings"]:
        assert f'data-fingerprint="{finding["fingerprint"]}"' in html
    assert len(data["days"]) == DAYS and data["days"][-1]["at"] == NOW.isoformat()

    assert list(rows[0]) == ["day", "at", "kpi", "value"]
    days = sorted({row["day"] for row in rows})
    assert len(days) == DAYS
    by_key = {(row["day"], row["kpi"]): row["value"] for row in rows}
    for point in data["days"]:
        for name, value in point["values"].items():
            assert by_key[(point["day"], name)] == ("" if value is None else str(value))
        assert by_key[(point["day"], "opened")] == str(point["opened"])
    last = data["days"][-1]["day"]
    assert float(by_key[(last, "risk_score")]) == summary["risk_score"]
    assert int(by_key[(last, "open.critical")]) == summary["open_by_severity"]["critical"]
    assert sum(int(by_key[(day, "opened")]) for day in days) == 11
    assert f'data-kpi="now:risk_score">{by_key[(last, "risk_score")]}<' in html


def test_what_users_typed_is_escaped_on_the_page(month: Month) -> None:
    """Owners and asset names are free text: the template autoescapes them, matplotlib escapes its own text."""
    from connector.inventory.report import build  # noqa: PLC0415
    from connector.report import render  # noqa: PLC0415
    from connector.runtime.config import load_config  # noqa: PLC0415
    from connector.runtime.kpis import history  # noqa: PLC0415
    from connector.runtime.state import StateStore  # noqa: PLC0415

    config = load_config(month.config)
    store = StateStore(month.state_dir / "state.sqlite", exclusive=False)
    try:
        known = history(config, store, include_removed=True)
    finally:
        store.close()
    hostile = "<script>alert(1)</script>"
    renamed = {record.asset.id: hostile + record.asset.id for record in known.records}
    records = [replace(record, asset=record.asset.model_copy(update={"owner": hostile,
                                                                     "name": renamed[record.asset.id]}))
               for record in known.records]
    verdicts = [replace(v, asset_id=renamed[v.asset_id]) for v in known.verdicts]
    episodes = [replace(e, asset_id=renamed[e.asset_id]) for e in known.episodes]
    tampered = History(records, verdicts, episodes, [], {})
    page = render(build(tampered, month.catalog, config.kpi, NOW, window=timedelta(days=DAYS)), "html").decode()
    assert "<script" not in page and "&lt;script&gt;" in page


def test_a_scope_and_a_window_narrow_the_report(month: Month, tmp_path: Path) -> None:
    data = json.loads(report(month, tmp_path / "web.json", "--format", "json", "--scope", "owner:web",
                             "--since", "10d").read_text())
    assert data["scopes"] == ["owner:web"] and data["window_days"] == 10 and len(data["days"]) == 10
    assert [(line["asset"], line["rule"]) for line in data["opened"]] == [("api", "csp.missing")]  # E6 on d20
    assert data["summary"]["assets"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (("--since", "soon"), "not a duration"),
    (("--since", "400d"), "outside 1d to 366d"),
    (("--scope", "region:eu"), "is not KIND:VALUE"),
    (("--until", "next tuesday"), "is not a date"),
    (("--format", "pdf"), "'pdf' is not one of"),
])
def test_bad_options_are_usage_errors(month: Month, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = connector("report", "-c", str(month.config), "-o", str(tmp_path / "x.html"), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "x.html").exists()


def test_no_history_and_an_empty_history_are_said_plainly(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"assets": [{"host": "a.report.test"}], "state_dir": str(tmp_path / "none")}))
    missing = connector("report", "-c", str(config), "-o", str(tmp_path / "r.html"))
    assert missing.returncode == 2 and "no history yet" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "none").exists()  # a report never creates a state directory
    (tmp_path / "empty").mkdir()
    from connector.runtime.state import StateStore  # noqa: PLC0415

    StateStore(tmp_path / "empty" / "state.sqlite").close()  # a store with nothing recorded in it
    config.write_text(yaml.safe_dump({"assets": [{"host": "a.report.test"}], "state_dir": str(tmp_path / "empty")}))
    empty = connector("report", "-c", str(config), "-o", str(tmp_path / "r.html"))
    assert empty.returncode == 1 and "nothing to report" in empty.stderr and "Traceback" not in empty.stderr
    assert not (tmp_path / "r.html").exists()
