"""The exposure check's signatures as data: each one cheap on a hostile page, and its excerpt free of secrets
(excerpts travel to a SIEM, and traces and environment tables quote passwords and keys)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from connector.scan.checks._signatures import mask_secrets, strongest_matches
from connector.scan.checks.exposure import BODY_WINDOW, ExposureSettings

SIGNATURES = ExposureSettings().probes.signatures


# What signatures start with, repeated over a whole body window: the input that makes a loose regex backtrack
HOSTILE_OPENINGS = ("<input ", "<title>", "<title>Sign in", "<title>Error log for  on ", " at ", "at a.",
                    "Warning: in /", "data-mount-point='", 'Powered by <a href="', "Illuminate\\A", "   at x(",
                    "Fatal error: a in /a", "password=")


def test_no_signature_backtracks_on_a_hostile_page() -> None:
    """Every page read costs each signature one search, so each must stay linear whatever the page repeats.

    A linear search of 64 KiB takes milliseconds and a backtracking one seconds (7 to 9 s were seen), so the CPU
    time (not the wall time, which a loaded machine stretches) is held to a bound between the two."""
    for opening in HOSTILE_OPENINGS:
        page = (opening * (BODY_WINDOW // len(opening)))[:BODY_WINDOW]
        for signature in SIGNATURES:
            started = time.process_time()
            strongest_matches(page, [signature], admin_path=True)
            assert time.process_time() - started < 1.0, (signature.name, opening)


@pytest.mark.parametrize(
    ("quoted", "shown"),
    [
        ("could not connect to postgresql://app:hunter2@db:5432/app", "could not connect to postgresql://app:***@db:5432/app"),
        ("redis://:p@ss@cache:6379/0", "redis://:***@cache:6379/0"),
        ("DB_PASSWORD=hunter2 APP_ENV=prod", "DB_PASSWORD=*** APP_ENV=prod"),
        ('{"api_key": "k-12345", "user": "ann"}', '{"api_key": "***", "user": "ann"}'),
        ("'secret' => 'Tr0ub4dor&amp;3',", "'secret' => '***',"),
        ("<tr><td>AWS_SECRET_ACCESS_KEY</td><td><pre>wJalrXUtnFEMI</pre></td></tr>",
         "<tr><td>AWS_SECRET_ACCESS_KEY</td><td><pre>***</pre></td></tr>"),
        ("Authorization: Bearer abcdef0123456789", "Authorization: Bearer ***"),
        ("curl -H 'X-Token: t0k3n-abc'", "curl -H 'X-Token: ***'"),
        ("key id AKIAIOSFODNN7EXAMPLE in use", "key id *** in use"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\n-----END RSA PRIVATE KEY-----", "***"),
    ],
)
def test_secrets_are_masked(quoted: str, shown: str) -> None:
    assert mask_secrets(quoted) == shown


def test_what_a_trace_needs_to_be_read_is_kept() -> None:
    trace = "KeyError: 'order'\n  File \"/srv/app/views.py\", line 14, in show\nhttps://shop.example.com:8443/a@b"
    assert mask_secrets(trace) == trace


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("probes: []\nsignatures:\n  - {name: x, rule: exposure.verbose_errors, severity: low, regex: '(unclosed'}\n",
         "signatures.0.regex"),
        ("probes: []\nsignatures:\n  - {name: x, rule: exposure.verbose_errors, severity: urgent, regex: a}\n",
         "signatures.0.severity"),
        ("probes:\n  - {rule: exposure.phpinfo, paths: [/i.php], confirm: {body_regex: a}}\n"
         "signatures:\n  - {name: x, rule: exposure.phpinfo, severity: low, regex: a}\n",
         "confirmed by both probes and signatures: exposure.phpinfo"),
    ],
)
def test_a_broken_signature_file_is_refused_naming_file_and_field(tmp_path: Path, data: str, message: str) -> None:
    probes = tmp_path / "exposure.yaml"
    probes.write_text(data)
    with pytest.raises(ValidationError) as raised:
        ExposureSettings(probes_file=probes)
    assert message in str(raised.value) and str(probes) in str(raised.value)
