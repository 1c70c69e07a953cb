"""What the e-mail authentication checks (spf, dmarc, dkim, mta_sts) share: which assets are mail domains."""

from __future__ import annotations

from connector.checks.base import ScanContext
from connector.domains import is_organisational
from connector.errors import ProbeError
from connector.model import Asset, Target


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
