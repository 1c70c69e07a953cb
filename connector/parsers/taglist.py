"""``tag=value; tag=value`` lists, the shared syntax of DKIM keys (RFC 6376 3.2), DMARC (RFC 7489 6.4),
MTA-STS (RFC 8461 3.1) and TLS-RPT (RFC 8460 3) records."""

from __future__ import annotations

import re

# DKIM and DMARC tag names are letters, digits and "_"; MTA-STS and TLS-RPT extensions may add "-" and "."
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TagListError(ValueError):
    """The record is not a valid tag list; the message says where."""


def parse_tags(record: str) -> dict[str, str]:
    """Tags in order (names as written); a duplicate tag invalidates the whole list (RFC 6376 3.2).

    Empty segments (``p=none;; rua=...``, a trailing ``;``) are skipped, as receivers do.
    """
    tags: dict[str, str] = {}
    for part in (segment for segment in record.split(";") if segment.strip(" \t\r\n")):
        name, separator, value = part.partition("=")
        name = name.strip(" \t\r\n")
        if not separator:
            raise TagListError(f"{part.strip()!r} is not a tag=value pair")
        if not _TAG.match(name):
            raise TagListError(f"{name!r} is not a valid tag name")
        if name in tags:
            raise TagListError(f"tag {name!r} appears twice")
        tags[name] = value.strip(" \t\r\n")
    return tags
