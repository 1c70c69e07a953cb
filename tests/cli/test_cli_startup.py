"""The CLI answers --version and --help without loading the scanner: the command modules, and the network, SIEM
and crypto libraries behind them, are imported only by the command that runs (timings: bench/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from connector.cli import LAZY_COMMANDS, load_command
from support.cli import connector
from support.pki import Pki
from support.sites import hardened_routes, site
from support.web import Reply

HEAVY = {"httpx", "cryptography", "OpenSSL", "dns", "elasticsearch", "pydantic", "connector.scan",
         "connector.delivery", "connector.runtime", "rich.markdown", "typer.rich_utils"}  # rich help: 0.3 s

_LIST_MODULES = """
import sys
from connector.cli import main
try:
    main()
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""


def imported_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _LIST_MODULES, *args], capture_output=True, text=True,
                          check=True, timeout=60)
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_import_no_heavy_module(args: tuple[str, ...]) -> None:
    modules = imported_by(*args)
    loaded = {name for name in modules if any(name == heavy or name.startswith(f"{heavy}.") for heavy in HEAVY)}
    assert loaded == set()
    assert "connector.cli" in modules  # the probe did run the CLI


def test_a_command_loads_its_module_when_it_runs() -> None:
    assert "connector.cli.admin" in imported_by("rules", "--format", "json")


def test_version_and_command_list() -> None:
    version = connector("--version")
    listing = connector("--help", env={"COLUMNS": "200"})
    assert version.returncode == 0 and version.stdout.startswith("connector ")
    assert listing.returncode == 0
    for name, (_module, short_help) in LAZY_COMMANDS.items():
        assert f"{name} " in listing.stdout and short_help in listing.stdout


@pytest.mark.parametrize("name", list(LAZY_COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    assert command.get_short_help_str(limit=300) == LAZY_COMMANDS[name][1]


def test_misspelt_command_is_suggested() -> None:
    done = connector("scna")
    assert done.returncode == 2
    assert "Did you mean 'scan'?" in done.stderr


def test_http_option_reads_naturally_both_ways() -> None:
    done = connector("scan", "--help", env={"COLUMNS": "200"})
    assert "--http" in done.stdout and "--no-http" in done.stdout
    assert "--no-no-http" not in done.stdout


def test_no_http_skips_plain_http_and_http_checks_it(pki: Pki) -> None:
    plain_content = {"/": Reply(body=b"served without a redirect")}
    with site("plain.test", pki.intermediate.issue(["plain.test"]), https_routes=hardened_routes(),
              http_routes=plain_content) as hosted:
        asset = hosted.asset
        base = ["scan", f"https://{asset.host}:{asset.ports[0]}/", "--resolve", f"{asset.host}=127.0.0.1",
                "--http-port", str(asset.http_port), "--ca-bundle", str(pki.bundle), "--checks", "https", "-q"]
        checked = connector(*base, "--http")
        skipped = connector(*base, "--no-http")
    checked_rules = {json.loads(line)["rule"]["id"] for line in checked.stdout.splitlines()}
    skipped_rules = {json.loads(line)["rule"]["id"] for line in skipped.stdout.splitlines()}
    assert "http.no_redirect" in checked_rules
    assert "http.no_redirect" not in skipped_rules
    assert skipped_rules, skipped.stderr
