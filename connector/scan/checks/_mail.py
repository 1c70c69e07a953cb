"""What the e-mail authentication checks (spf, dmarc, dkim, mta_sts) share: which assets are mail domains, and
one error, not a page of "no record" findings, for a domain that does not exist.

A name is a mail domain when ``mail_domain`` says so, when it is an organisational domain, or when it has an MX,
SPF or DMARC record of its own (which includes the "sends no mail" policies, null MX and ``v=spf1 -all``:
checking them is what protects a web-only name). Anything else gets one not_applicable event per check.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import TypeVar

from pydantic import BaseModel

from connector.core.errors import NotApplicable, ProbeError
from connector.core.model import Asset, Target
from connector.parsers.domains import is_organisational
from connector.parsers.spf import spf_records
from connector.scan.checks.base import Check
from connector.scan.context import ScanContext

ObservationT = TypeVar("ObservationT")
SettingsT = TypeVar("SettingsT", bound=BaseModel)


def mail_targets(asset: Asset) -> list[Target]:
    """The asset's host, unless it is an IP address or ``mail_domain: false``; ``observe`` decides the rest.

    www.example.com does not get "no SPF record" findings unless it has mail records of its own or its owner
    says it sends or receives mail; example.com does, since anyone can forge mail from it whether or not it is
    used for mail.
    """
    return [] if asset.is_ip or asset.mail_domain is False else [Target(asset)]


async def mail_role(ctx: ScanContext, domain: str) -> str | None:
    """Why ``domain`` handles mail, from records of its own (MX, SPF, DMARC), or None if it has none."""
    mx, txt, dmarc = await asyncio.gather(ctx.dns.lookup(domain, "MX"), ctx.dns.lookup(domain, "TXT"),
                                          ctx.dns.lookup(f"_dmarc.{domain}", "TXT"))
    own = [f"MX {', '.join(mx.data)}"] if mx.data else []
    own += [f"SPF {record!r}" for record in spf_records(txt.data)]
    own += [f"DMARC {record!r}" for record in dmarc.data if record.lower().startswith("v=dmarc1")]
    return f"{domain} has mail records of its own ({'; '.join(own)})" if own else None


async def require_domain(ctx: ScanContext, domain: str) -> None:
    """A domain that does not exist gets one error per check, not "no SPF/DMARC/DKIM record" noise."""
    if (await ctx.dns.lookup(domain, "TXT")).rcode == "NXDOMAIN":
        raise ProbeError(f"{domain} does not exist (NXDOMAIN): no e-mail authentication to check", kind="dns")


class MailCheck(Check[ObservationT, SettingsT]):
    """A check of one mail domain: it runs only where ``mail_targets`` says, and only on a domain that exists."""

    def targets(self, asset: Asset) -> list[Target]:
        return mail_targets(asset)

    async def observe(self, target: Target, ctx: ScanContext, settings: SettingsT) -> ObservationT:
        asset = target.asset
        domain = asset.host
        if asset.mail_domain is None and not is_organisational(domain) and await mail_role(ctx, domain) is None:
            raise NotApplicable(f"{domain} is not an organisational domain and has no MX, SPF or DMARC record of "
                                "its own (set mail_domain: true on the asset to check it anyway)")
        await require_domain(ctx, domain)
        return await self.observe_domain(domain, asset, ctx, settings)

    def not_applicable(self, asset: Asset) -> str:
        if asset.is_ip:
            return f"{asset.host} is an IP address: e-mail authentication is published for domain names"
        return f"the asset {asset.id} sets mail_domain: false"

    @abstractmethod
    async def observe_domain(self, domain: str, asset: Asset, ctx: ScanContext, settings: SettingsT) -> ObservationT:
        """Network I/O for ``domain`` (the asset's host), known to exist."""
