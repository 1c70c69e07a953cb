"""Excerpts of debug pages travel to a SIEM: whatever secret a trace or an environment table quotes is masked."""

from __future__ import annotations

import pytest

from connector.scan.checks._signatures import mask_secrets


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
