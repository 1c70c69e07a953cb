"""A whole test site: an HTTPS server plus a plain-HTTP server that redirects to it, hardened unless told otherwise."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from connector.core.model import Asset
from support.pki import Issued
from support.web import Reply, Route, WebServer, tls_context

HARDENED_HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains; preload")


@dataclass
class Site:
    asset: Asset
    https: WebServer
    http: WebServer | None


def redirect_to(location: str, status: int = 301) -> Reply:
    return Reply(status, [("Location", location)], b"")


@contextmanager
def site(
    host: str,
    issued: Issued,
    *,
    context: ssl.SSLContext | None = None,
    https_routes: dict[str, Route] | None = None,
    http_routes: dict[str, Route] | None = None,
    plain_http: bool = True,
) -> Iterator[Site]:
    """Serve ``host`` on 127.0.0.1. By default "/" over HTTPS carries HSTS and plain HTTP 301s to HTTPS.

    ``http_routes`` may use "{https}" in Location headers for the HTTPS origin (scheme, host and port).
    """
    with ExitStack() as stack:
        routes = https_routes if https_routes is not None else {"/": Reply(headers=[HARDENED_HSTS])}
        https = stack.enter_context(WebServer(routes, tls=context or tls_context(issued)))
        origin = f"https://{host}:{https.port}"
        http = None
        if plain_http:
            plain = http_routes if http_routes is not None else {"/": redirect_to(origin + "/")}
            http = stack.enter_context(WebServer({path: _format(route, origin) for path, route in plain.items()}))
        asset = Asset(host=host, address="127.0.0.1", ports=(https.port,), http_port=http.port if http else None)
        yield Site(asset, https, http)


def _format(route: Route, origin: str) -> Route:
    if isinstance(route, Reply):
        headers = [(name, value.replace("{https}", origin)) for name, value in route.headers]
        return Reply(route.status, headers, route.body)
    return route


NONCE = "r4nd0mN0nce"
HARDENED_CSP = (f"default-src 'self'; script-src 'nonce-{NONCE}' 'strict-dynamic'; object-src 'none'; "
                "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HARDENED_HEADERS: list[tuple[str, str]] = [
    HARDENED_HSTS,
    ("Content-Security-Policy", HARDENED_CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Server", "nginx"),
]
SESSION_COOKIE = ("Set-Cookie", "__Host-session=0a1b2c; Secure; HttpOnly; SameSite=Lax; Path=/")
CDN_SCRIPT = ('<script src="https://cdn.example.com/lib.js" integrity="sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/ux'
              'yvS7I2hDMOy2zJp1szMhrOP9RWKMSB" crossorigin="anonymous" nonce="' + NONCE + '"></script>')


def page(body: str, title: str = "Postern test site") -> bytes:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body>{body}</body></html>").encode()


def hardened_routes(*, extra_headers: list[tuple[str, str]] | None = None, drop: tuple[str, ...] = (),
                    home: bytes | None = None, login_headers: list[tuple[str, str]] | None = None,
                    cookie: tuple[str, str] | None = SESSION_COOKIE) -> dict[str, Route]:
    """A site that does everything right; arguments introduce exactly one flaw for a test."""
    headers = [header for header in HARDENED_HEADERS if header[0].lower() not in {name.lower() for name in drop}]
    headers += extra_headers or []
    home_body = home or page(
        f'<script nonce="{NONCE}">window.ready = true;</script>{CDN_SCRIPT}'
        '<link rel="stylesheet" href="/style.css"><img src="/logo.png" alt="logo">'
        '<a href="/login">Sign in</a> <a href="/about">About</a> <a href="/logout">Sign out</a>')
    with_cookie = headers + ([cookie] if cookie else [])
    return {
        "/": Reply(200, with_cookie, home_body),
        "/about": Reply(200, headers, page('<p>About us. <a href="/">Home</a></p>')),
        "/login": Reply(200, headers + (login_headers if login_headers is not None
                                        else [("Cache-Control", "no-store")]),
                        page('<form method="post" action="/login"><input name="user">'
                             '<input type="password" name="pass"><button>Go</button></form>')),
        "/style.css": Reply(200, [*headers, ("Content-Type", "text/css")], b"body{}"),
        "/logo.png": Reply(200, [*headers, ("Content-Type", "image/png")], b"\x89PNG\r\n\x1a\n"),
    }
