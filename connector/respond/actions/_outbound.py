"""Where an action may connect: the scan's address policy (probes/guard.py), applied to every outbound action.

A webhook URL, a tracker's base URL or an SMTP host is only configuration, and a wrong or hostile one must not
turn the connector into a way into the cloud metadata service or the internal network. So each connection
resolves its host once (the action's ``outbound.resolve`` first, like ``curl --resolve``, then the system
resolver, which honours /etc/hosts), refuses it when any address is loopback, link-local (metadata included),
private or otherwise internal and not in the action's ``outbound.allow``, and connects to exactly the checked
address, keeping the name for Host, SNI and certificate verification: a second resolution, which could answer
differently (DNS rebinding), never happens.

A refusal is a permanent ActionError before any connection: the step is a dead letter with the reason, not a
retry loop. Requests go straight to the target: environment proxies are not used, since a proxy would resolve
the name itself, past the guard.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, IPvAnyAddress, field_validator

from connector.probes.guard import AddressPolicy, GuardSettings, OutboundDenied, parse_ip
from connector.respond.actions.base import ActionError, ActionSettings


class OutboundSettings(GuardSettings):
    """``allow`` as in ``scan.outbound``; ``resolve`` pins names to addresses, which are checked all the same."""

    resolve: dict[str, IPvAnyAddress] = Field(
        default_factory=dict, description="host name -> address, like curl --resolve (e.g. jira.corp: 10.2.0.7)")

    @field_validator("resolve")
    @classmethod
    def _names(cls, value: dict[str, IPvAnyAddress]) -> dict[str, IPvAnyAddress]:
        return {_name(host): address for host, address in value.items()}


class OutboundActionSettings(ActionSettings):
    """Settings of an action that connects out: its own allowlist, so one internal tracker opens no other door."""

    outbound: OutboundSettings = Field(
        default_factory=OutboundSettings,
        description="internal ranges this action may reach (allow: [10.2.0.0/16]); all are refused otherwise")


class Outbound:
    """One action's way out: resolve once, check every address, hand back the one to connect to."""

    def __init__(self, action: str, settings: OutboundSettings) -> None:
        self.action = action
        self._pins = {host: str(address) for host, address in settings.resolve.items()}
        self._policy = AddressPolicy(settings, refusal=f"not allowlisted (respond.actions.{action}.outbound.allow)")

    def address(self, host: str, port: int) -> str:
        """The address to connect to; ActionError, permanent when the guard refuses, retryable when DNS fails."""
        addresses = self._resolve(host, port)
        try:
            return self._policy.check(host, addresses)
        except OutboundDenied as exc:
            raise ActionError(f"{self.action}: outbound guard: {exc}; no connection was made",
                              permanent=True) from None

    def client(self, *, ca_bundle: Path | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client whose every request (redirects too, were they followed) goes through ``address``;
        ``ca_bundle`` replaces the system's CAs (the transport verifies, so the client's ``verify`` would not)."""
        verify = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
        return httpx.Client(transport=_PinnedTransport(self, verify), **kwargs)

    def _resolve(self, host: str, port: int) -> list[str]:
        name = _name(host)
        if name in self._pins:
            return [self._pins[name]]
        if parse_ip(name) is not None:
            return [name]
        if not name:
            raise ActionError(f"{self.action}: the URL has no host name", permanent=True)
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ActionError(f"{self.action}: cannot resolve {host}: {exc.strerror}") from None
        except UnicodeError as exc:
            raise ActionError(f"{self.action}: {host} is not a valid host name: {exc}", permanent=True) from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedTransport(httpx.BaseTransport):
    """Sends each request to the address ``Outbound`` checked, with the name kept for Host and TLS (SNI and
    certificate verification), as the scan's HttpFetcher does. The pool keys connections by address, so one
    client talks to one host name per address: each action's client has one target."""

    def __init__(self, outbound: Outbound, verify: ssl.SSLContext | bool) -> None:
        self._outbound = outbound
        self._inner = httpx.HTTPTransport(verify=verify)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        address = self._outbound.address(url.host, url.port or (443 if url.scheme == "https" else 80))
        pinned = httpx.Request(request.method, url.copy_with(host=address), headers=request.headers,
                               stream=request.stream, extensions={**request.extensions, "sni_hostname": url.host})
        return self._inner.handle_request(pinned)

    def close(self) -> None:
        self._inner.close()


def _name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()
