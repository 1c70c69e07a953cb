"""A strict reader of CEF lines (the grammar of Elastic's decode_cef): the inverse of what the encoder must do."""

from __future__ import annotations

import re


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict reader of the CEF grammar (Elastic's decode_cef): the inverse of what the encoder must do."""
    header, fields, current, index = [], [], "", 0
    while len(fields) < 7:
        char = line[index]
        if char == "\\" and line[index + 1] in "\\|":
            current += line[index + 1]
            index += 2
            continue
        if char == "|":
            fields.append(current)
            current = ""
        else:
            current += char
        index += 1
    header = fields
    extension = line[index:]
    pairs = {}
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9]+)=", extension))
    for position, match in enumerate(keys):
        end = keys[position + 1].start() if position + 1 < len(keys) else len(extension)
        raw = extension[match.end():end]
        value = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), raw)
        pairs[match.group(1)] = value
    return header, pairs
