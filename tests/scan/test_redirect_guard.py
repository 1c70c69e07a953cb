"""Redirects a target chooses are judged, never followed off the asset: an observer on the far side sees nothing."""

from __future__ import annotations

import pytest

from connector.core.catalog import Catalog
from connector.core.model import Status
from support.hostile import Observer, hostile_site, redirects
from support.pki import Pki
from support.scanning import result, run_scan
from support.web import Reply

HOST = "moves.test"


@pytest.mark.parametrize(("path", "rule", "status"), [
    ("/to-port", "http.redirect_offhost", Status.FAIL),
    ("/to-loopback", "http.redirect_offhost", Status.FAIL),
    ("/to-host", "http.redirect_offhost", Status.FAIL),
    ("/with-query", "http.redirect_offhost", Status.FAIL),
    ("/to-file", "http.redirect_scheme", Status.FAIL),
    ("/to-data", "http.redirect_scheme", Status.FAIL),
    ("/to-javascript", "http.redirect_scheme", Status.FAIL),
])
def test_a_redirect_off_the_asset_is_a_finding_and_never_fetched(pki: Pki, catalog: Catalog, path: str, rule: str,
                                                                  status: Status) -> None:
    with Observer() as elsewhere:
        away = redirects(HOST, elsewhere.port)[path]
        with hostile_site(HOST, pki.intermediate.issue([HOST]), {"/": Reply(200, [], b"ok")},
                          http_routes={"/": away}) as site:
            findings = run_scan([site.asset], catalog, ca_bundle=pki.bundle, checks=["https"])
        elsewhere.assert_untouched()
    assert result(findings, rule).status is status
    no_redirect = result(findings, "http.no_redirect")
    assert "served over plain HTTP" not in no_redirect.message  # the file:// case used to say this
    assert no_redirect.status is (Status.FAIL if rule == "http.redirect_scheme" else Status.ERROR)
