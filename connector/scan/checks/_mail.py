"""What the e-mail authentication checks (spf, dmarc, dkim, mta_sts) share: which assets are mail domains, and
one error, not a page of "no record" findings, for a domain that does not exist."""

from __future__ import annotations

from abc import abstractmethod
from typing import TypeVar

from pydantic import BaseModel

from connector.core.errors import ProbeError
from connector.core.model import Asset, Target
from connector.parsers.domains import is_organisational
from connector.scan.checks.base import Check
from connector.scan.context import ScanContext

ObservationT = TypeVar("ObservationT")
SettingsT = TypeVar("SettingsT", bound=BaseModel)


def mail_targets(asset: Asset) -> list[Target]:
    """The asset's host, if e-mail authentication is checked there (``mail_domain``, by default org domains).

    www.example.com does not get "no SPF record" findings unless its owner says it sends or receives mail;
    example.com does, since anyone can forge mail from it whether or not it is used for mail.
    """
    if asset.is_ip:
        return []
    enabled = asset.mail_domain if asset.mail_domain is not None else is_organisational(asset.host)
    return [Target(asset)] if enabled else []


async def require_domain(ctx: ScanContext, domain: str) -> None:
    """A domain that does not exist gets one error per check, not "no SPF/DMARC/DKIM record" noise."""
    if (await ctx.dns.lookup(domain, "TXT")).rcode == "NXDOMAIN":
        raise ProbeError(f"{domain} does not exist (NXDOMAIN): no e-mail authentication to check", kind="dns")


class MailCheck(Check[ObservationT, SettingsT]):
    """A check of one mail domain: it runs only where ``mail_targets`` says, and only on a domain that exists."""

    def targets(self, asset: Asset) -> list[Target]:
        return mail_targets(asset)

    async def observe(self, target: Target, ctx: ScanContext, settings: SettingsT) -> ObservationT:
        domain = target.asset.host
        await require_domain(ctx, domain)
        return await self.observe_domain(domain, target.asset, ctx, settings)

    @abstractmethod
    async def observe_domain(self, domain: str, asset: Asset, ctx: ScanContext, settings: SettingsT) -> ObservationT:
        """Network I/O for ``domain`` (the asset's host), known to exist."""
