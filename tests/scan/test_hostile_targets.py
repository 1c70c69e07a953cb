"""Hostile targets cost bounded memory and time: each case is scanned by a fresh connector process, measured."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import sys
import tracemalloc
from contextlib import ExitStack
from pathlib import Path

import pytest

from connector.core.model import Asset
from connector.probes.guard import OutboundGuard, Resolver
from connector.probes.http import MAX_BODY, Fetched, HttpFetcher
from support.hostile import (
    GIB,
    MIB,
    HostileServer,
    RawServer,
    aia_body,
    aia_leaf,
    endless_chunked,
    gzip_bomb,
    hostile_site,
    huge_header,
    link_flood,
    many_headers,
    nested_html,
    oversized_body,
    run_measured,
    slow_drip,
    tls_huge_handshake,
    tls_huge_record,
    tls_random_bytes,
    tls_truncated_record,
)
from support.pki import Pki
from support.web import Reply, tls_context

HOST = "hostile.test"
BUDGET_MB = 300
# 32 targets at once (the default concurrency) each hold up to a 2 MiB body while it is read, a copy as it is
# handed over, and the memoised key route: ~6 MiB each, ~200 MiB on top of the ~75 MiB of one scan. Measured peaks
# of the hundred-target drill ranged from 280 to 422 MB over runs (the allocator keeps what fragments), so a bound
# of 300 failed by chance; unbounded reading of its 25 GiB-bombs and 25 endless bodies would be gigabytes.
CONCURRENT_BUDGET_MB = 512


def scan_measured(pki: Pki, tmp_path: Path, assets: list[Asset], checks: str, timeout: float = 60,
                  check_settings: dict | None = None, **scan: object):
    """``connector scan -c`` in a fresh process over ``assets``; its state events, peak RSS and wall time."""
    config, events = tmp_path / "config.json", tmp_path / "events.jsonl"
    config.write_text(json.dumps({
        "assets": [asset.model_dump(mode="json", exclude_none=True) for asset in assets],
        "scan": {"ca_bundle": str(pki.bundle), "connect_timeout": 3, "check_timeout": 30, **scan},
        "checks": check_settings or {}, "state_dir": str(tmp_path / "state")}))
    snippet = ("import sys; from connector.cli import main; "
               f"sys.argv = ['connector', 'scan', '-c', {str(config)!r}, '--checks', {checks!r}, '-o', "
               f"{str(events)!r}, '-q']; main()")
    measured = run_measured(snippet, timeout=timeout, cwd=Path(__file__).parents[2])
    lines = events.read_text().splitlines() if events.exists() else []
    return measured, [event for event in map(json.loads, lines) if event["event"]["kind"] == "state"]


@pytest.mark.parametrize(("name", "route"), [
    ("double-gzip bomb of 1 GiB", gzip_bomb(GIB, layers=2)),
    ("endless chunked body", endless_chunked()),
    ("500 MB body", oversized_body()),
    ("200,000 links", link_flood(200_000)),
    ("10,000 headers", many_headers(10_000)),
    ("a 1 MiB header", huge_header()),
])
def test_a_page_built_to_exhaust_memory_costs_at_most_its_cap(pki: Pki, tmp_path: Path, name: str, route) -> None:
    issued = pki.intermediate.issue([HOST])
    with hostile_site(HOST, issued, {"/": route, "*": route}) as site:
        measured, events = scan_measured(pki, tmp_path, [site.asset], "headers,content")
    assert measured.returncode in (0, 1), measured.stderr[-2000:]
    assert measured.peak_rss_mb < BUDGET_MB, f"{name}: {measured.peak_rss_mb:.0f} MB"
    assert events and "Traceback" not in measured.stderr
    print(f"{name}: {measured.peak_rss_mb:.0f} MB peak, {measured.seconds:.1f} s", file=sys.stderr)


def fetch_traced(pki: Pki, route: Reply) -> tuple[Fetched, float]:
    """One GET of ``route`` in this process, and the most Python memory it held at once, in MiB (after a first GET
    has made the client and imported what it imports lazily)."""
    routes = {"/warm": Reply(200, [], b"ok"), "*": route}
    with HostileServer(routes, tls=tls_context(pki.intermediate.issue([HOST]))) as server:

        async def get() -> tuple[Fetched, float]:
            http = HttpFetcher(timeout=10, ca_bundle=pki.bundle, user_agent="test",
                               guard=OutboundGuard(Resolver(None, 5)))
            try:
                await http.get(f"https://{HOST}:{server.port}/warm", address="127.0.0.1")
                tracemalloc.start()
                fetched = await http.get(f"https://{HOST}:{server.port}/", address="127.0.0.1")
                return fetched, tracemalloc.get_traced_memory()[1] / MIB
            finally:
                tracemalloc.stop()
                await http.aclose()

        return asyncio.run(get())


def test_a_double_gzip_bomb_is_read_within_a_few_times_the_body_limit(pki: Pki) -> None:
    """Each 64 KiB of the outer layer used to get a 2 MiB budget of its own: 37 MiB held to read a 2 MiB page."""
    fetched, held_mib = fetch_traced(pki, gzip_bomb(GIB, layers=2))
    assert fetched.truncated and fetched.body == bytes(MAX_BODY)
    assert held_mib < 4 * MAX_BODY / MIB, f"{held_mib:.1f} MiB held to read {MAX_BODY // MIB} MiB"


def test_layers_of_gzip_decode_exactly_up_to_the_limit(pki: Pki) -> None:
    """Incompressible content twice gzipped: the inner layer is as large as the page, so the outer one stops at
    the budget mid-stream, and what it held back must still be decoded in order."""
    content = random.Random(7).randbytes(3 * MAX_BODY)
    twice = Reply(200, [("Content-Encoding", "gzip, gzip")], gzip.compress(gzip.compress(content, mtime=0), mtime=0))
    fetched, _ = fetch_traced(pki, twice)
    assert fetched.truncated and fetched.body == content[:MAX_BODY]
    page = b"<p>twice</p>" * 1000
    fetched, _ = fetch_traced(pki, Reply(200, [("Content-Encoding", "gzip, gzip")],
                                         gzip.compress(gzip.compress(page))))
    assert not fetched.truncated and fetched.body == page


def test_a_crawl_of_link_floods_holds_one_page_at_a_time(pki: Pki, tmp_path: Path) -> None:
    """Every page links to 200,000 others: the crawl reads 20, each 2 MiB with a tree of 20,000 tags. Memoised with
    their trees until the asset was done, one such site cost 250 MB, and 25 of them at once over 2 GB."""
    with hostile_site(HOST, pki.intermediate.issue([HOST]), {"*": link_flood(200_000)}, plain_http=False) as site:
        measured, events = scan_measured(pki, tmp_path, [site.asset], "content")
    assert measured.returncode in (0, 1) and "Traceback" not in measured.stderr, measured.stderr[-2000:]
    crawled = {event["postern"]["subject"] for event in events if event["rule"]["id"] == "content.mixed_active"}
    assert len(crawled) == 20  # max_pages: the crawl did read them all
    assert measured.peak_rss_mb < 150, f"{measured.peak_rss_mb:.0f} MB"


def test_probing_every_path_of_a_site_that_answers_each_with_500_mb_costs_their_window(pki: Pki,
                                                                                      tmp_path: Path) -> None:
    """The exposure check holds ~70 probed pages until it judges them: read whole, 2 MiB each, 220 MB an asset."""
    with hostile_site(HOST, pki.intermediate.issue([HOST]), {"*": oversized_body()}, plain_http=False) as site:
        measured, events = scan_measured(pki, tmp_path, [site.asset], "exposure")
    assert measured.returncode in (0, 1) and "Traceback" not in measured.stderr, measured.stderr[-2000:]
    assert {event["rule"]["id"] for event in events} >= {"exposure.directory_listing", "exposure.verbose_errors"}
    assert measured.peak_rss_mb < 150, f"{measured.peak_rss_mb:.0f} MB"


def test_eight_endless_bodies_at_once_stay_within_the_budget(pki: Pki, tmp_path: Path) -> None:
    with hostile_site(HOST, pki.intermediate.issue([HOST]), {"*": endless_chunked()}) as one:
        sites = [one]
        with ExitStack() as stack:
            for index in range(7):
                name = f"h{index}.{HOST}"
                sites.append(stack.enter_context(hostile_site(name, pki.intermediate.issue([name]),
                                                              {"*": endless_chunked()})))
            measured, events = scan_measured(pki, tmp_path, [site.asset for site in sites], "headers,content")
    assert measured.peak_rss_mb < BUDGET_MB and {e["url"]["domain"] for e in events if "url" in e} >= {HOST}


def test_a_slow_drip_is_cut_at_connect_timeout_not_check_timeout(pki: Pki, tmp_path: Path) -> None:
    with hostile_site(HOST, pki.intermediate.issue([HOST]), {"*": slow_drip(0.5)}, plain_http=False) as site:
        measured, events = scan_measured(pki, tmp_path, [site.asset], "headers", connect_timeout=2, check_timeout=60)
    assert measured.seconds < 20, f"{measured.seconds:.1f} s"
    errors = [event for event in events if event["rule"]["id"] == "scan.error"]
    assert errors and any("no complete response within 2s" in event["message"] for event in errors)


def test_deeply_nested_html_does_not_stall_the_scan(pki: Pki, tmp_path: Path) -> None:
    with hostile_site(HOST, pki.intermediate.issue([HOST]), {"*": nested_html(200_000)}) as site:
        measured, events = scan_measured(pki, tmp_path, [site.asset], "headers,content", timeout=90)
    assert measured.returncode in (0, 1) and measured.seconds < 30, f"{measured.seconds:.1f} s"
    judged = {event["rule"]["id"] for event in events if event["rule"]["id"].startswith("content.")}
    assert "content.mixed_active" in judged  # the page was parsed and judged, not given up on
    assert measured.peak_rss_mb < BUDGET_MB


def test_an_aia_url_serving_500_mb_costs_at_most_its_cap(pki: Pki, tmp_path: Path) -> None:
    with HostileServer({"*": aia_body()}) as aia:
        issued = aia_leaf(pki.intermediate, HOST, f"http://127.0.0.1:{aia.port}/issuer.der")
        with hostile_site(HOST, issued, {"*": Reply(200, [], b"ok")}, plain_http=False) as site:
            measured, events = scan_measured(pki, tmp_path, [site.asset], "certificate", check_settings={
                "certificate": {"aia_fetch": True}}, outbound={"allow": ["127.0.0.0/8"]})
    assert measured.peak_rss_mb < BUDGET_MB and measured.seconds < 20
    assert aia.targets == ["/issuer.der"]
    untrusted = next(event for event in events if event["rule"]["id"] == "cert.untrusted")
    assert "not fetchable through AIA" in untrusted["message"] and "more than 65536 bytes" in untrusted["message"]


def test_a_hundred_hostile_targets_at_once_stay_within_the_budget(pki: Pki, tmp_path: Path) -> None:
    """Bombs, endless and oversized bodies and link floods, 25 of each, scanned together by one process."""
    kinds = [gzip_bomb(GIB, layers=2), endless_chunked(), oversized_body(), link_flood(200_000)]
    with ExitStack() as stack:
        sites = []
        for index in range(100):
            name = f"t{index}.{HOST}"
            route = kinds[index % len(kinds)]
            sites.append(stack.enter_context(hostile_site(name, pki.intermediate.issue([name]), {"*": route},
                                                          plain_http=False)))
        measured, events = scan_measured(pki, tmp_path, [site.asset for site in sites], "headers,content", timeout=240)
    assert measured.returncode in (0, 1), measured.stderr[-2000:]
    assert measured.peak_rss_mb < CONCURRENT_BUDGET_MB, f"{measured.peak_rss_mb:.0f} MB"
    assert len({event["url"]["domain"] for event in events if "url" in event}) == 100  # every target reported
    print(f"100 hostile targets: {measured.peak_rss_mb:.0f} MB peak, {measured.seconds:.1f} s", file=sys.stderr)


@pytest.mark.parametrize(("name", "answer"), [
    ("random bytes", tls_random_bytes(1_000_000)),
    ("a truncated record", tls_truncated_record),
    ("a 16 MiB record", tls_huge_record),
    ("an endless handshake", tls_huge_handshake),
])
def test_tls_garbage_is_an_error_finding_in_bounded_time_and_memory(pki: Pki, tmp_path: Path, name: str,
                                                                     answer) -> None:
    with RawServer(answer) as garbage:
        asset = Asset(host=HOST, address="127.0.0.1", ports=(garbage.port,), http_port=None)
        measured, events = scan_measured(pki, tmp_path, [asset], "tls,certificate")
    assert measured.returncode in (0, 1) and "Traceback" not in measured.stderr, measured.stderr[-2000:]
    assert measured.peak_rss_mb < BUDGET_MB and measured.seconds < 30, f"{name}: {measured.peak_rss_mb:.0f} MB"
    assert any(event["rule"]["id"] == "scan.error" or event["result"]["evaluation"] == "unknown" for event in events)
