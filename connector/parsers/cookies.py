"""Set-Cookie parsing (RFC 6265 section 5.2), keeping exactly the attributes browsers act on."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Names that carry a session or login state in common frameworks: these need HttpOnly.
_SESSION_NAME = re.compile(
    r"(sess|sid$|^sid|auth|login|token|jwt|remember|phpsessid|jsessionid|asp\.net_sessionid|connect\.sid|_session)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Cookie:
    name: str
    secure: bool
    http_only: bool
    same_site: str | None  # as sent, lower-cased: strict | lax | none | something invalid

    @property
    def session_like(self) -> bool:
        return bool(_SESSION_NAME.search(self.name))

    @property
    def same_site_valid(self) -> bool:
        return self.same_site in ("strict", "lax", "none")


def parse_set_cookie(value: str) -> Cookie | None:
    """One Set-Cookie header value; None when browsers would ignore it (no '=' in the name-value pair)."""
    pair, *attributes = value.split(";")
    name, separator, _ = pair.partition("=")
    if not separator:
        return None
    flags: dict[str, str] = {}
    for attribute in attributes:
        key, _, attribute_value = attribute.strip().partition("=")
        flags[key.strip().lower()] = attribute_value.strip().lower()
    return Cookie(
        name=name.strip(),
        secure="secure" in flags,
        http_only="httponly" in flags,
        same_site=flags.get("samesite"),
    )
