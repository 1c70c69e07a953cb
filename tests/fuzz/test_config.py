"""Fuzzing the configuration loader: any text gives a Config or a ConfigError that names the file, never another
exception (which the CLI reports as an internal error, exit 70) and never a hang, however hostile the YAML."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from connector.core.errors import ConfigError
from connector.runtime.config import Config, load_config
from support.cli import connector

BASE = """\
assets:
  - host: example.com
    dkim_selectors: [s1]
    criticality: high
  - url: https://shop.example.com:8443/checkout
    owner: commerce
    ports: [443, 8443]
scan: {connect_timeout: 5, check_timeout: 60, concurrency: 4, dns: {timeout: 3}}
checks:
  certificate: {expiry_warning_days: 60}
  https: {hsts_min_max_age: 31536000}
rules:
  tls.cipher.cbc: {severity: info}
schedule: {intervals: {critical: 24h, high: 3d, medium: 7d, low: 7d}, jitter: 0.1, startup_spread: 5m}
sinks:
  - {type: splunk_hec, url: "https://splunk.example.com:8088", token: abc, routes: [{severity: [critical], index: u}]}
  - {type: elasticsearch, hosts: ["https://es.example.com:9200"], api_key: k}
  - {type: syslog, host: siem.example.com, protocol: tls, port: 6514}
  - {type: file, path: events.jsonl}
state_dir: state
"""
HUGE = "9" * 5000


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": a few hundred bytes that expand to width**levels values."""
    lines = [f"x0: &x0 {{{', '.join(f'k{i}: lol' for i in range(width))}}}"]
    for level in range(1, levels):
        refs = ", ".join(f"k{i}: *x{level - 1}" for i in range(width))
        lines.append(f"x{level}: &x{level} {{{refs}}}")
    return "\n".join([*lines, BASE.replace("checks:\n", f"checks:\n  tls: *x{levels - 1}\n")])


HOSTILE_DOCUMENTS = {
    "a 5000-digit number": BASE.replace("concurrency: 4", f"concurrency: {HUGE}"),
    "5000-deep nesting": BASE + "observer_name: " + "[" * 5000 + "]" * 5000 + "\n",
    "5000-deep mappings": BASE + "observer_name: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "an alias bomb": alias_bomb(),
    "an alias that contains itself": BASE + "observer_name: &self [*self]\n",
    "an impossible date": BASE + "observer_name: 2024-13-45\n",
    "a duration past 999999999 days": BASE + "shutdown_grace: 100000000000000\n",
    "an infinite duration": BASE + "shutdown_grace: .inf\n",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz")


def loaded_or_refused(folder: Path, text: str) -> Config | ConfigError:
    """The Config, or the ConfigError; any other exception fails the property."""
    path = folder / "connector.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        return load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        return exc


def test_the_base_document_is_valid(folder: Path) -> None:
    assert isinstance(loaded_or_refused(folder, BASE), Config)


YAML_PIECES = ["&a ", "*a", "<<: *a", "!!binary ", "!!python/object:os.system ", "!!set ", "!!omap ", "{", "}",
               "[", "]", "- ", ": ", "? ", "\t", "'", '"', "---\n", "...\n", "%YAML 1.1\n", "\n", "  ", "~", "null",
               "2024-13-45", "2024-02-30 25:61:00", "0x", "0o9", "1e999", "-.inf", ".nan", "1_000", HUGE, "\x00",
               "\ufeff", "\u2028", "é", "host", "assets", "sinks", "type", "splunk_hec", "file"]


@given(st.integers(0, len(BASE)), st.integers(0, 40),
       st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=3), max_size=6).map("".join))
@example(0, 0, "observer_name: " + "[" * 300 + "]" * 300 + "\n")
def test_any_edit_of_a_valid_file_gives_a_config_or_a_config_error(folder: Path, start: int, length: int,
                                                                   insert: str) -> None:
    loaded_or_refused(folder, BASE[:start] + insert + BASE[start + length:])


@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(folder: Path, text: str) -> None:
    loaded_or_refused(folder, text)


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["https://x.test", "24h", "-1s", "critical", "tls", "udp", "file", "0", "", "${X}"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "host", "url", "path", "token", "enabled", "env", "port", "index", "severity"])
        | st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@st.composite
def edited_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid document with a few values replaced, deleted or added at any depth: past the YAML layer."""
    document = copy.deepcopy(yaml.safe_load(BASE))
    for _ in range(draw(st.integers(1, 4))):
        node: Any = document
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if not isinstance(node[key], dict | list) or not node[key] or draw(st.booleans()):
                action = draw(st.sampled_from(["replace", "delete", "add"]))
                if action == "replace":
                    node[key] = draw(VALUES)
                elif action == "delete":
                    del node[key]
                elif isinstance(node, dict):
                    node[draw(st.text(max_size=8))] = draw(VALUES)
                else:
                    node.append(draw(VALUES))
                break
            node = node[key]
    return document


@given(edited_documents())
def test_any_edit_of_the_settings_gives_a_config_or_a_config_error(folder: Path, document: dict[str, Any]) -> None:
    loaded_or_refused(folder, yaml.safe_dump(document, allow_unicode=True))


@pytest.mark.parametrize("shape", list(HOSTILE_DOCUMENTS))
def test_hostile_documents_are_refused_quickly_with_the_reason(folder: Path, shape: str) -> None:
    started = time.process_time()
    outcome = loaded_or_refused(folder, HOSTILE_DOCUMENTS[shape])
    cpu = time.process_time() - started
    assert isinstance(outcome, ConfigError), shape
    assert cpu < 1.0, f"{shape}: {cpu:.2f}s of CPU to refuse"
    reason = {"a 5000-digit number": "5000 digits", "5000-deep nesting": "nested more than",
              "5000-deep mappings": "nested more than", "an alias bomb": "aliases are expanded",
              "an alias that contains itself": "contains it", "an impossible date": "month must be in 1..12",
              "a duration past 999999999 days": "out of range", "an infinite duration": "out of range"}[shape]
    assert reason in str(outcome)


def test_the_cli_reports_hostile_configs_as_invalid_not_as_internal_errors(folder: Path) -> None:
    huge, deep = folder / "huge.yaml", folder / "deep.yaml"
    huge.write_text(HOSTILE_DOCUMENTS["a 5000-digit number"], encoding="utf-8")
    deep.write_text(HOSTILE_DOCUMENTS["5000-deep nesting"], encoding="utf-8")
    scan = connector("scan", "-c", str(huge))
    assert scan.returncode == 2, scan.stderr
    assert "5000 digits" in scan.stderr and "internal error" not in scan.stderr
    validate = connector("validate", "-c", str(deep))
    assert validate.returncode == 1, validate.stderr  # validate's answer for any invalid configuration
    assert "invalid:" in validate.stderr and "nested more than 64 levels" in validate.stderr
