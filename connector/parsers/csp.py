"""Content-Security-Policy parsing (CSP Level 3 grammar) and the weaknesses Google's CSP Evaluator looks for.

Parsing follows the spec: directives split on ";", names case-insensitive, the first occurrence of a directive
wins (later duplicates are ignored by browsers), keywords are quoted. Evaluation understands nonces, hashes and
'strict-dynamic': with 'strict-dynamic' and a nonce or hash, browsers ignore host sources, scheme sources and
'unsafe-inline' in script-src, so those are not findings there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FETCH_FALLBACK = ("script-src", "default-src")
_NONCE = re.compile(r"^'nonce-[A-Za-z0-9+/_=-]+'$")
_HASH = re.compile(r"^'sha(256|384|512)-[A-Za-z0-9+/_=-]+'$")
BROAD_SCRIPT_SOURCES = {"*", "http:", "https:", "data:", "blob:", "filesystem:", "http://*", "https://*"}
# Directives a <meta> policy cannot carry (CSP3 section 3.3): browsers ignore them there.
META_IGNORED = {"frame-ancestors", "report-uri", "report-to", "sandbox"}


@dataclass(frozen=True)
class Policy:
    directives: dict[str, tuple[str, ...]]
    report_only: bool = False
    source: str = "header"  # header | meta
    duplicates: tuple[str, ...] = ()

    def has(self, directive: str) -> bool:
        return directive in self.directives

    def effective(self, directive: str) -> tuple[str, ...] | None:
        """The sources governing a fetch directive, falling back to default-src as browsers do."""
        if directive in self.directives:
            return self.directives[directive]
        if directive.endswith("-src") and directive not in ("default-src",) and "default-src" in self.directives:
            return self.directives["default-src"]
        return None


def parse_policy(text: str, *, report_only: bool = False, source: str = "header") -> Policy:
    directives: dict[str, tuple[str, ...]] = {}
    duplicates = []
    for raw in text.split(";"):
        tokens = raw.strip().split()
        if not tokens:
            continue
        name = tokens[0].lower()
        if not re.fullmatch(r"[a-z0-9-]+", name):
            continue  # not a directive name: browsers skip it
        if name in directives:
            duplicates.append(name)
            continue
        if source == "meta" and name in META_IGNORED:
            continue
        directives[name] = tuple(_normalise_source(token) for token in tokens[1:])
    return Policy(directives, report_only, source, tuple(duplicates))


def parse_header_values(values: list[str], *, report_only: bool = False) -> list[Policy]:
    """Each header value (and each comma-separated policy in one) is a separate policy; all are enforced."""
    policies = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                policies.append(parse_policy(part, report_only=report_only))
    return policies


def _normalise_source(token: str) -> str:
    lowered = token.lower()
    if lowered.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")):
        prefix, _, value = token.partition("-")
        return prefix.lower() + "-" + value  # nonces and hashes are case-sensitive after the prefix
    return lowered


@dataclass
class Weaknesses:
    """What is wrong with the policies a page enforces, in the words findings use."""

    unsafe_inline: bool = False
    unsafe_eval: bool = False
    broad_sources: list[str] = field(default_factory=list)
    object_src_open: bool = False
    base_uri_missing: bool = False
    frame_ancestors: bool = False
    strict: bool = False  # nonce- or hash-based with 'strict-dynamic'
    nonce_based: bool = False  # some policy trusts scripts by nonce or hash


def is_nonce_or_hash_based(sources: tuple[str, ...]) -> bool:
    return any(_NONCE.match(s) or _HASH.match(s) for s in sources)


def evaluate(policies: list[Policy]) -> Weaknesses:
    """Weaknesses that remain when every enforced policy applies (a page is as strict as its strictest policy)."""
    enforced = [policy for policy in policies if not policy.report_only]
    result = Weaknesses()
    if not enforced:
        return result
    script_verdicts = [_script_verdict(policy) for policy in enforced]
    # Several policies: a script must pass all of them, so a weakness counts only if no policy closes it.
    result.unsafe_inline = all(verdict.unsafe_inline for verdict in script_verdicts)
    result.unsafe_eval = all(verdict.unsafe_eval for verdict in script_verdicts)
    if all(verdict.broad for verdict in script_verdicts):
        result.broad_sources = sorted({source for verdict in script_verdicts for source in verdict.broad})
    result.strict = any(verdict.strict for verdict in script_verdicts)
    result.object_src_open = all(_object_src_open(policy) for policy in enforced)
    result.nonce_based = any(is_nonce_or_hash_based(policy.effective("script-src") or ()) for policy in enforced)
    result.base_uri_missing = result.nonce_based and not any(policy.has("base-uri") for policy in enforced)
    result.frame_ancestors = any(policy.has("frame-ancestors") for policy in enforced)
    return result


@dataclass(frozen=True)
class _ScriptVerdict:
    unsafe_inline: bool
    unsafe_eval: bool
    broad: list[str]
    strict: bool


def _script_verdict(policy: Policy) -> _ScriptVerdict:
    sources = policy.effective("script-src")
    if sources is None:
        return _ScriptVerdict(True, True, ["(no script-src or default-src)"], False)
    nonce_or_hash = is_nonce_or_hash_based(sources)
    strict_dynamic = "'strict-dynamic'" in sources
    strict = nonce_or_hash and strict_dynamic
    # CSP2+: a nonce or hash makes browsers ignore 'unsafe-inline'; 'strict-dynamic' also drops allow-lists.
    unsafe_inline = "'unsafe-inline'" in sources and not nonce_or_hash
    broad = [] if strict else [source for source in sources if source in BROAD_SCRIPT_SOURCES]
    return _ScriptVerdict(unsafe_inline, "'unsafe-eval'" in sources, broad, strict)


def _object_src_open(policy: Policy) -> bool:
    sources = policy.effective("object-src")
    return sources is None or sources != ("'none'",)
