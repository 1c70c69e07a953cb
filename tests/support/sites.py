"""A whole test site: an HTTPS server plus a plain-HTTP server that redirects to it, hardened unless told otherwise."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from connector.model import Asset
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
