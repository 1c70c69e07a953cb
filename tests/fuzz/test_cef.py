"""Fuzzing the CEF encoder against a reader written from the CEF grammar alone (header: ``\\|`` and ``\\\\``;
extension: ``\\=``, ``\\\\``, ``\\n``, ``\\r``; pairs separated by a space before the next ``key=``).

Target-controlled text (TXT records, headers, certificate names) reaches CEF lines, and receivers frame syslog by
newline or split at other line separators: no such character may ever appear raw, and what can be escaped must
read back exactly.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connector.core.catalog import Catalog
from connector.core.model import Asset, Finding, Severity, Status
from connector.normalise import Normaliser
from connector.normalise.cef import CefEncoder

HEADER_KEYS = ("vendor", "product", "version", "signature_id", "name", "severity")
# Characters CEF has no escape for: C0/C1 controls but TAB, DEL, U+2028, U+2029 (NEL is U+0085, a C1 control), and
# lone surrogates, which UTF-8 cannot encode
UNESCAPABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
LINE_BREAKERS = "\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

SPEC: dict[str, Any] = {
    "header": {key: {"from": f"header.{key}"} for key in HEADER_KEYS},
    "extension": {
        "msg": {"from": "ext.msg"},
        "cs1": {"from": "ext.cs1", "label": "label with = and \\ and\nnewline"},
        "act": {"from": "ext.act", "max": 5},
        "cs5": {"from": "ext.cs5"},
    },
}


@pytest.fixture(scope="module")
def normaliser(catalog: Catalog) -> Normaliser:
    return Normaliser.load(catalog)


HOSTILE = st.text(alphabet=st.sampled_from("\\|= \n\r\r\n\x00\x0b\x0c\x85\u2028\u2029\t\x1b\x7fa\ud800")
                  | st.characters())


def read_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Header fields and extension pairs of one CEF line; AssertionError where the line breaks the grammar."""
    assert line.startswith("CEF:0|")
    header, current, index = [], "", 0
    while len(header) < 7:
        char = line[index]
        if char == "\\":
            assert line[index + 1] in "\\|", f"undefined header escape at {index}"
            current += line[index + 1]
            index += 2
        elif char == "|":
            header.append(current)
            current, index = "", index + 1
        else:
            current += char
            index += 1
    decoded: list[tuple[str, bool]] = []  # (character, escaped)
    raw = line[index:]
    position = 0
    while position < len(raw):
        if raw[position] == "\\":
            assert raw[position + 1:position + 2] in ("\\", "=", "n", "r"), "undefined extension escape"
            decoded.append(({"n": "\n", "r": "\r"}.get(raw[position + 1], raw[position + 1]), True))
            position += 2
        else:
            decoded.append((raw[position], False))
            position += 1
    keys = []  # (start of the key, index of its "=")
    for at, (char, escaped) in enumerate(decoded):
        if char == "=" and not escaped:
            start = at
            while start > 0 and not decoded[start - 1][1] and decoded[start - 1][0].isascii() \
                    and decoded[start - 1][0].isalnum():
                start -= 1
            assert start < at and (start == 0 or decoded[start - 1] == (" ", False)), f"stray '=' at {at}"
            keys.append((start, at))
    assert keys or not decoded, "an extension without key=value pairs"
    pairs = {}
    for number, (start, equals) in enumerate(keys):
        end = keys[number + 1][0] - 1 if number + 1 < len(keys) else len(decoded)
        key = "".join(char for char, _ in decoded[start:equals])
        assert key not in pairs, f"key {key} twice"
        pairs[key] = "".join(char for char, _ in decoded[equals + 1:end])
    return header[1:], pairs


def assert_one_safe_line(line: str) -> None:
    assert not set(line) & set(LINE_BREAKERS), f"raw line separator in {line!r}"
    assert not UNESCAPABLE.search(line)
    assert len(line.splitlines()) == 1
    line.encode("utf-8")  # what every sink does with it


def header_as_read(value: str) -> str:
    return UNESCAPABLE.sub(" ", value.replace("\r\n", " "))


def extension_as_read(value: str) -> str:
    """CR and LF survive (escaped), TAB survives as itself; the other unescapable characters are spaces."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", " ", value)


@given(st.fixed_dictionaries({key: HOSTILE for key in HEADER_KEYS}), st.fixed_dictionaries({
    "msg": HOSTILE, "cs1": HOSTILE, "act": HOSTILE,
    "cs5": st.lists(HOSTILE, max_size=3) | st.dictionaries(HOSTILE, HOSTILE, max_size=2)}))
@example({key: "a|b\\c" for key in HEADER_KEYS},
         {"msg": "x=y \\n\x00\x0b\x0c\x85\u2028\u2029 z= ", "cs1": "k=v", "act": "\r\n\r\n\r", "cs5": {"a": "\n"}})
@example({key: "\\" for key in HEADER_KEYS}, {"msg": "\\", "cs1": " cs2=forged", "act": "=", "cs5": ["|"]})
def test_cef_lines_read_back_exactly_and_never_break(header: dict[str, str], extension: dict[str, Any]) -> None:
    line = CefEncoder(SPEC, "fuzz").encode({"header": header, "ext": extension})
    assert_one_safe_line(line)
    fields, pairs = read_cef(line)
    assert fields == [header_as_read(header[key]) for key in HEADER_KEYS]
    expected = {key: extension[key] for key in ("msg", "cs1") if extension[key]}
    if extension["act"]:
        expected["act"] = extension["act"][:5]
    assert {key: pairs[key] for key in expected} == {key: extension_as_read(v) for key, v in expected.items()}
    if extension["cs1"]:
        assert pairs["cs1Label"] == extension_as_read(SPEC["extension"]["cs1"]["label"])
    assert set(pairs) <= {"msg", "cs1", "cs1Label", "act", "cs5"}


@given(HOSTILE, HOSTILE, st.dictionaries(HOSTILE, HOSTILE, max_size=3))
def test_findings_with_hostile_text_become_one_readable_cef_line(normaliser: Normaliser, message: str, owner: str,
                                                                  evidence: dict[str, str]) -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    # the normaliser caches an asset's fields by its id: one host per owner
    host = f"owner-{zlib.crc32(owner.encode('utf-8', 'surrogatepass'))}.test"
    finding = Finding(rule_id="cert.expired", check="certificate", status=Status.FAIL, severity=Severity.CRITICAL,
                      message=message, asset=Asset(host=host, owner=owner or None), port=443,
                      scheme="https", scan_id="scan-1", observed_at=now, first_seen=now, last_seen=now,
                      evidence=evidence)
    line = normaliser.cef(finding)
    assert_one_safe_line(line)
    fields, pairs = read_cef(line)
    assert fields[3] == "cert.expired"
    if message:
        assert pairs["msg"] == extension_as_read(message[:1023])
    if owner:
        assert pairs["cs2"] == extension_as_read(owner[:4000])

