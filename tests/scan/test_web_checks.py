"""Browser, content, exposure and port checks against real HTTP(S) servers on 127.0.0.1.

One hardened site yields no failing finding from any check (also when it answers 200 to every path); each
misconfigured variant differs from it by one planted problem and yields exactly that rule, once. Each debug page
and admin login the exposure signatures know is served beside its hardened twin (support/debug_pages.py).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from connector.core.model import Asset, Finding, Severity, Status, Target
from connector.scan.checks.exposure import ExposureSettings
from connector.scan.checks.ports import OpenPort, PortObservation, PortsCheck, PortSettings
from support.debug_pages import DJANGO_404, PLANTED, TOMCAT_404, WERKZEUG_CONSOLE, WHOOPS, html, login_page
from support.pki import Pki
from support.scanning import errors, failing, result, run_scan
from support.sites import HARDENED_HEADERS, NONCE, SESSION_COOKIE, hardened_routes, page, site
from support.web import Reply, closed_port

ALL_CHECKS = ("certificate", "tls", "https", "headers", "content", "exposure", "ports", "observatory")
WEB_CHECKS = ("headers", "content", "exposure", "ports")


@contextmanager
def web_site(pki: Pki, name: str = "www.web.test", **routes_kwargs: object) -> Iterator[Asset]:
    default = routes_kwargs.pop("default", None)
    extra = routes_kwargs.pop("extra_routes", {})
    routes = {**hardened_routes(**routes_kwargs), **extra}  # type: ignore[arg-type]
    with site(name, pki.intermediate.issue([name]), https_routes=routes) as hosted:
        if default is not None:
            hosted.https.routes.setdefault("__default__", default)
            hosted.https._server.default = default
        asset = hosted.asset
        yield asset.model_copy(update={
            "expected_ports": (asset.https_port, asset.http_port),
            "scan_ports": (asset.https_port, asset.http_port, closed_port()),
        })


def scan(asset: Asset, pki: Pki, catalog, checks: tuple[str, ...] = WEB_CHECKS) -> list[Finding]:
    # HTTP servers never speak first: do not wait long for a banner from the site's own ports
    return run_scan([asset], catalog, ca_bundle=pki.bundle, checks=checks,
                    check_settings={"ports": {"banner_timeout": 0.2}})


def scan_planted(pki: Pki, catalog, name: str, replies: dict[str, Reply], routes: tuple[str, ...] = ("/",),
                 **kwargs: object) -> list[Finding]:
    with web_site(pki, name, extra_routes=replies, **kwargs) as asset:
        return scan(asset.model_copy(update={"routes": routes}), pki, catalog, ("exposure",))


def named_signatures(findings: list[Finding]) -> dict[tuple[str, str], str]:
    """(rule, path) -> the signature its failing finding names for that path."""
    return {(finding.rule_id, path): matched["signature"] for finding in findings if finding.status is Status.FAIL
            for path, matched in finding.evidence.get("signatures", {}).items()}


def soft_404(handler) -> Reply:  # type: ignore[no-untyped-def]
    return Reply(200, list(HARDENED_HEADERS), page(f"<h1>Sorry</h1><p>We could not find {handler.path}.</p>"))


def test_hardened_site_yields_no_failing_finding_from_any_check(pki: Pki, catalog) -> None:
    with web_site(pki) as asset:
        findings = scan(asset, pki, catalog, ALL_CHECKS)
    assert failing(findings) == set()
    assert errors(findings) == []
    evaluated = {f.rule_id for f in findings}
    assert {"csp.unsafe_inline", "csp.base_uri_missing", "cookies.httponly_missing", "cors.reflects_origin",
            "content.mixed_active", "content.sri_missing", "content.sensitive_cacheable", "exposure.vcs",
            "exposure.verbose_errors", "ports.unexpected_open"} <= evaluated
    pages = {f.subject for f in findings if f.rule_id == "content.mixed_active"}
    assert pages == {"/", "/login", "/about"}  # followed same-origin links, never /logout
    graded = result(findings, "observatory.grade").evidence
    assert (graded["grade"], graded["algorithm_version"]) == ("A+", 6)
    assert graded["score"] == 155  # all bonuses but default-src 'none' (+10, the site uses 'self') and HSTS preload


EXPOSURE_RULES = {"exposure.vcs", "exposure.admin_panel", "exposure.admin_basic_auth", "exposure.debug_console",
                  "exposure.verbose_errors"}


@pytest.mark.parametrize("default", [
    soft_404,
    login_page("Shop"),  # a single-page app: its login shell, password field and all, on every path
    Reply(401, [("WWW-Authenticate", 'Basic realm="staging"')], b"Unauthorized"),  # all of it behind a password
], ids=["soft-404", "login-everywhere", "basic-auth-everywhere"])
def test_a_site_that_answers_alike_to_everything_yields_no_exposure(default: object, pki: Pki, catalog) -> None:
    with web_site(pki, default=default) as asset:
        findings = scan(asset, pki, catalog, ("exposure",))
    assert failing(findings) == set()
    assert {rule: result(findings, rule).status for rule in EXPOSURE_RULES} == dict.fromkeys(EXPOSURE_RULES,
                                                                                            Status.PASS)


MIXED_SCRIPT = page('<script src="http://cdn.example.com/app.js"></script>')
MIXED_IMAGE = page(f'<script nonce="{NONCE}"></script><img src="http://img.example.com/a.png">')
NO_SRI = page('<script src="https://cdn.example.com/lib.js" nonce="' + NONCE + '"></script>')


@pytest.mark.parametrize(
    ("name", "variant", "expected"),
    [
        ("nocsp", {"drop": ("Content-Security-Policy",)}, {"csp.missing"}),
        ("reportonly", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy-Report-Only", "default-src 'self'")]}, {"csp.missing"}),
        ("inline", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; object-src 'none'; "
                                        "frame-ancestors 'none'")]}, {"csp.unsafe_inline"}),
        ("eval", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-eval'; object-src 'none'; "
                                        "frame-ancestors 'none'")]}, {"csp.unsafe_eval"}),
        ("broad", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy", "default-src 'self'; script-src 'self' https:; object-src 'none'; "
                                        "frame-ancestors 'none'")]}, {"csp.broad_script_source"}),
        ("object", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy", "script-src 'self'; frame-ancestors 'none'")]}, {"csp.object_src_missing"}),
        ("baseuri", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy", f"script-src 'nonce-{NONCE}' 'strict-dynamic'; object-src 'none'; "
                                        "frame-ancestors 'none'")]}, {"csp.base_uri_missing"}),
        ("framing", {"drop": ("Content-Security-Policy", "X-Frame-Options"), "extra_headers": [
            ("Content-Security-Policy", f"script-src 'nonce-{NONCE}' 'strict-dynamic'; object-src 'none'; "
                                        "base-uri 'none'")]}, {"headers.clickjacking"}),
        ("xfoonly", {"drop": ("Content-Security-Policy",), "extra_headers": [
            ("Content-Security-Policy", f"script-src 'nonce-{NONCE}' 'strict-dynamic'; object-src 'none'; "
                                        "base-uri 'none'")]}, {"headers.frame_ancestors_missing"}),
        ("sniff", {"drop": ("X-Content-Type-Options",)}, {"headers.nosniff_missing"}),
        ("referrer", {"drop": ("Referrer-Policy",), "extra_headers": [("Referrer-Policy", "unsafe-url")]},
         {"headers.referrer_policy_unsafe"}),
        ("permissions", {"drop": ("Permissions-Policy",)}, {"headers.permissions_policy_missing"}),
        ("coop", {"drop": ("Cross-Origin-Opener-Policy",)}, {"headers.coop_missing"}),
        ("corp", {"drop": ("Cross-Origin-Resource-Policy",)}, {"headers.corp_missing"}),
        ("insecurecookie", {"cookie": ("Set-Cookie", "prefs=dark; HttpOnly; SameSite=Lax")},
         {"cookies.secure_missing"}),
        ("jscookie", {"cookie": ("Set-Cookie", "sessionid=1; Secure; SameSite=Lax")}, {"cookies.httponly_missing"}),
        ("samesite", {"cookie": ("Set-Cookie", "prefs=dark; Secure; HttpOnly")}, {"cookies.samesite_missing"}),
        ("server", {"drop": ("Server",), "extra_headers": [("Server", "Apache/2.4.41 (Ubuntu)"),
                                                          ("X-Powered-By", "PHP/7.4.3")]},
         {"headers.version_disclosure"}),
        ("mixedactive", {"home": MIXED_SCRIPT}, {"content.mixed_active"}),
        ("mixedpassive", {"home": MIXED_IMAGE}, {"content.mixed_passive"}),
        ("sri", {"home": NO_SRI}, {"content.sri_missing"}),
        ("cacheable", {"login_headers": [("Cache-Control", "private, max-age=600")]},
         {"content.sensitive_cacheable"}),
    ],
)
def test_each_misconfiguration_yields_exactly_its_rule(name: str, variant: dict[str, object], expected: set[str],
                                                       pki: Pki, catalog) -> None:
    with web_site(pki, f"{name}.web.test", **variant) as asset:
        findings = scan(asset, pki, catalog)
    assert failing(findings) == expected
    assert errors(findings) == []
    failures = [f for f in findings if f.status is Status.FAIL]
    assert len(failures) == 1, [f.message for f in failures]


def test_cors_reflecting_any_origin_with_credentials(pki: Pki, catalog) -> None:
    def reflect(handler) -> Reply:  # type: ignore[no-untyped-def]
        origin = handler.headers.get("Origin")
        headers = [*HARDENED_HEADERS, SESSION_COOKIE]
        if origin:
            headers += [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true")]
        return Reply(200, headers, page("<p>api</p>"))

    with web_site(pki, "cors.web.test", extra_routes={"/": reflect}) as asset:
        findings = scan(asset, pki, catalog, ("headers",))
    assert failing(findings) == {"cors.reflects_origin"}
    assert result(findings, "cors.reflects_origin").severity is Severity.HIGH


ACTUATOR_INDEX = (b'{"_links":{"self":{"href":"https://shop/actuator","templated":false},'
                  b'"health":{"href":"https://shop/actuator/health","templated":false}%s}}')
EXPOSED = {
    "exposure.vcs": {"/.git/HEAD": Reply(200, [("Content-Type", "text/plain")], b"ref: refs/heads/main\n"),
                     "/.git/config": Reply(200, [], b"[core]\n\trepositoryformatversion = 0\n")},
    "exposure.env_file": {"/.env": Reply(200, [("Content-Type", "text/plain")],
                                         b"APP_KEY=base64:abc\nDB_PASSWORD=hunter2\n")},
    "exposure.ds_store": {"/.DS_Store": Reply(200, [], b"\x00\x00\x00\x01Bud1" + b"\x00" * 32)},
    "exposure.backup": {"/backup.zip": Reply(200, [("Content-Type", "application/zip")], b"PK\x03\x04" + b"\0" * 40)},
    "exposure.server_status": {"/server-status": Reply(200, [], page(
        "<h1>Apache Server Status for www</h1><dl><dt>Server MPM: event</dt></dl>"))},
    "exposure.phpinfo": {"/phpinfo.php": Reply(200, [], b"<html><head><title>PHP 8.2.7 - phpinfo()</title></head>")},
    "exposure.actuator": {"/actuator/env": Reply(200, [("Content-Type", "application/json")],
                                                 b'{"activeProfiles":["prod"],"propertySources":[]}'),
                          "/actuator": Reply(200, [("Content-Type", "application/json")], ACTUATOR_INDEX % (
                              b',"env":{"href":"https://shop/actuator/env","templated":false}')),
                          "/trace": Reply(200, [("Content-Type", "application/json")],
                                          b'[{"timestamp":1700000000000,"info":{"method":"GET","path":"/cart",'
                                          b'"headers":{"request":{"cookie":"SESSION=2b1f"}}}}]')},
    "exposure.debug_console": {"/console": Reply(200, [], page(
        "<h1>Interactive Console</h1><p>In this console you can execute Python expressions "
        "(Werkzeug powered traceback interpreter) __debugger__</p>"))},
    "exposure.admin_panel": {"/phpmyadmin/": Reply(200, [], b"<html><title>localhost / phpMyAdmin</title></html>")},
    "exposure.admin_basic_auth": {"/admin": Reply(401, [("WWW-Authenticate", 'Basic realm="Back office"')],
                                                  b"401 Authorization Required")},
    "exposure.dashboard": {"/metrics": Reply(200, [("Content-Type", "text/plain")],
                                             b"# HELP http_requests_total Requests.\n# TYPE http_requests_total "
                                             b"counter\nhttp_requests_total 3\n")},
    "exposure.directory_listing": {"/uploads/": Reply(200, [], page(
        '<h1>Index of /uploads/</h1><a href="a.pdf">a.pdf</a>', title="Index of /uploads/"))},
    "exposure.verbose_errors": {"/about": Reply(500, list(HARDENED_HEADERS), page(
        "<pre>Traceback (most recent call last):\n  File \"/srv/app.py\", line 3, in view\nKeyError: 'x'</pre>"))},
}


@pytest.mark.parametrize("rule", sorted(EXPOSED))
def test_each_exposure_is_confirmed_by_content_and_reported_once(rule: str, pki: Pki, catalog) -> None:
    name = rule.split(".")[1].replace("_", "") + ".web.test"
    routes = dict(EXPOSED[rule])
    assets_routes = ("/", "/about") if rule == "exposure.verbose_errors" else ("/",)
    with web_site(pki, name, extra_routes=routes) as asset:
        findings = scan(asset.model_copy(update={"routes": assets_routes}), pki, catalog, ("exposure",))
    assert failing(findings) == {rule}
    finding = result(findings, rule)
    planted = [path for path in routes if path not in ("/about",)] or ["/about"]
    for path in planted:
        assert path in finding.message


def test_an_actuator_exposing_only_health_is_no_finding(pki: Pki, catalog) -> None:
    findings = scan_planted(pki, catalog, "actuator.web.test", {
        "/actuator": Reply(200, [("Content-Type", "application/json")], ACTUATOR_INDEX % b"")})
    assert failing(findings) == set()


def test_every_planted_exposure_is_listed_once_on_one_misconfigured_site(pki: Pki, catalog) -> None:
    routes: dict[str, Reply] = {}
    for planted in EXPOSED.values():
        routes.update(planted)
    with web_site(pki, "everything.web.test", extra_routes=routes) as asset:
        findings = scan(asset.model_copy(update={"routes": ("/", "/about")}), pki, catalog, ("exposure",))
    failures = [f for f in findings if f.status is Status.FAIL]
    assert sorted(f.rule_id for f in failures) == sorted(EXPOSED)


def test_every_signature_in_the_data_has_a_real_page_here() -> None:
    assert sorted(signature.name for signature in ExposureSettings().probes.signatures) == sorted(
        planted.signature for planted in PLANTED)


def test_each_debug_page_and_admin_login_is_named_by_its_signature(pki: Pki, catalog) -> None:
    routes = ("/", *(planted.path for planted in PLANTED if planted.route))
    findings = scan_planted(pki, catalog, "debug.web.test", {planted.path: planted.reply for planted in PLANTED},
                            routes)
    expected = {(planted.rule, planted.path): planted.signature for planted in PLANTED}
    named = named_signatures(findings)
    assert {key: named.get(key) for key in expected} == expected
    assert set(named) == set(expected) | {(rule, planted.path) for planted in PLANTED for rule in planted.also}
    severities = {finding.rule_id: finding.severity for finding in findings if finding.status is Status.FAIL}
    assert severities == {"exposure.debug_console": Severity.CRITICAL, "exposure.verbose_errors": Severity.HIGH,
                          "exposure.phpinfo": Severity.MEDIUM, "exposure.admin_panel": Severity.MEDIUM}


def test_the_same_stacks_with_debugging_off_yield_nothing(pki: Pki, catalog) -> None:
    routes = ("/", *(planted.path for planted in PLANTED if planted.route))
    findings = scan_planted(pki, catalog, "twins.web.test", {planted.path: planted.twin for planted in PLANTED},
                            routes)
    assert failing(findings) == set()
    assert errors(findings) == []


BASIC = [("WWW-Authenticate", 'Basic realm="Back office"')]


@pytest.mark.parametrize(
    ("name", "replies", "routes", "rule", "severity", "signature"),
    [
        ("adminform", {"/admin": login_page("Back office", "/admin")}, ("/",), "exposure.admin_panel",
         Severity.MEDIUM, "password-form"),
        ("adminbasic", {"/admin": Reply(401, BASIC, b"401 Authorization Required")}, ("/",),
         "exposure.admin_basic_auth", Severity.LOW, None),
        ("tomcatbasic", {"/manager/html": Reply(401, [("WWW-Authenticate", 'Basic realm="Tomcat Manager Application"')],
                                                b"<h1>401 Unauthorized</h1>")}, ("/",),
         "exposure.admin_basic_auth", Severity.LOW, None),
        ("werkzeug", {"/console": WERKZEUG_CONSOLE}, ("/",), "exposure.debug_console", Severity.CRITICAL,
         "werkzeug-debugger"),
        ("banner", {"/missing": html(404, TOMCAT_404.format(banner="<h3>Apache Tomcat/9.0.31</h3>"))},
         ("/", "/missing"), "exposure.verbose_errors", Severity.LOW, "tomcat-version-banner"),
    ],
)
def test_admin_and_debug_exposures_carry_the_severity_of_what_they_leak(
        name: str, replies: dict[str, Reply], routes: tuple[str, ...], rule: str, severity: Severity,
        signature: str | None, pki: Pki, catalog) -> None:
    findings = scan_planted(pki, catalog, f"{name}.web.test", replies, routes)
    assert failing(findings) == {rule}
    finding = result(findings, rule)
    assert finding.severity is severity
    assert list(finding.evidence["paths"]) == [path for path in replies if path in finding.message]
    if signature is not None:
        assert [matched["signature"] for matched in finding.evidence["signatures"].values()] == [signature]


def test_a_customer_login_is_not_an_admin_panel(pki: Pki, catalog) -> None:
    findings = scan_planted(pki, catalog, "shop.web.test", {"/signin": login_page("Sign in to the shop", "/signin")},
                            ("/", "/login", "/signin"))
    assert failing(findings) == set()
    assert result(findings, "exposure.admin_panel").status is Status.PASS


def test_a_basic_challenge_reports_its_realm(pki: Pki, catalog) -> None:
    findings = scan_planted(pki, catalog, "realm.web.test", {"/manage": Reply(401, BASIC, b"")})
    challenges = result(findings, "exposure.admin_basic_auth").evidence["challenges"]
    assert challenges == {"/manage": 'Basic realm="Back office"'}


def test_django_debug_on_the_not_found_page_is_one_finding(pki: Pki, catalog) -> None:
    """With DEBUG = True every unknown path shows the technical 404: the soft-404 probe itself is the evidence."""
    def echoing(handler) -> Reply:  # type: ignore[no-untyped-def]  # Django names the missing path
        return Reply(404, DJANGO_404.headers, DJANGO_404.body.replace(b"/nothing", handler.path.encode()))

    findings = scan_planted(pki, catalog, "django.web.test", {}, default=echoing)
    again = scan_planted(pki, catalog, "django.web.test", {}, default=echoing)
    assert failing(findings) == {"exposure.verbose_errors"}
    finding = result(findings, "exposure.verbose_errors")
    (path,) = finding.evidence["paths"]
    assert path == "(not-found page)" and path in finding.message
    # the probe's path is random per scan, the finding is not: the next scan opens or changes nothing
    assert result(again, "exposure.verbose_errors").evidence == finding.evidence
    assert finding.evidence["signatures"][path]["signature"] == "django-debug-page"
    assert "DEBUG = True" in finding.evidence["signatures"][path]["excerpt"]
    assert finding.severity is Severity.MEDIUM


def test_secrets_quoted_by_a_debug_page_are_masked_in_the_evidence(pki: Pki, catalog) -> None:
    traceback = next(planted.reply for planted in PLANTED if planted.signature == "python-traceback")
    findings = scan_planted(pki, catalog, "leaky.web.test", {"/checkout": WHOOPS, "/report": traceback},
                            ("/", "/checkout", "/report"))
    finding = result(findings, "exposure.verbose_errors")
    excerpts = {path: matched["excerpt"] for path, matched in finding.evidence["signatures"].items()}
    assert "DB_PASSWORD ***" in excerpts["/checkout"]
    assert "mysql://shop:***@db.internal/shop" in excerpts["/checkout"]
    assert "postgresql://reports:***@db.internal:5432/reports" in excerpts["/report"]
    shown = str(finding.model_dump())
    assert "Tr0ub4dor" not in shown and "s3cr3t" not in shown


@contextmanager
def banner_server(banner: bytes) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(banner)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_an_unexpected_open_port_is_reported_with_its_banner(pki: Pki, catalog) -> None:
    with web_site(pki, "ports.web.test") as asset, banner_server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") as ssh:
        probed = asset.model_copy(update={"scan_ports": (*(asset.scan_ports or ()), ssh)})
        findings = scan(probed, pki, catalog, ("ports",))
    assert failing(findings) == {"ports.unexpected_open"}
    finding = result(findings, "ports.unexpected_open")
    assert finding.subject == str(ssh)
    assert finding.evidence["banner"] == "SSH-2.0-OpenSSH_9.2p1 Debian-2"
    assert str(ssh) in finding.message


def test_well_known_service_ports_carry_their_severity(catalog) -> None:
    asset = Asset(host="db.test", expected_ports=(443,))
    outcome = PortsCheck().judge(Target(asset), PortObservation((443, 6379), (OpenPort(6379, ""),), {}),
                                 PortSettings(), datetime.now(UTC))
    (only,) = outcome.results
    assert only.severity is Severity.CRITICAL and "redis" in only.message


def test_checks_share_one_request_per_url(pki: Pki, catalog) -> None:
    """The transport, header, grade and content checks read the same pages: each URL is requested once."""
    with site("shared.web.test", pki.intermediate.issue(["shared.web.test"]), https_routes=hardened_routes()) as hosted:
        findings = run_scan([hosted.asset], catalog, checks=("https", "headers", "observatory", "content"),
                            ca_bundle=pki.bundle)
        https_hits, http_hits = list(hosted.https.hits), list(hosted.http.hits if hosted.http else [])
    assert failing(findings) == set()
    assert https_hits.count("/") == 2  # once plainly, once with an Origin header for the CORS probe
    assert http_hits.count("/") == 1
