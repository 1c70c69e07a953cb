"""Fuzzing the record and header grammars: any text gives a parse or the parser's own error, never another
exception (a crash would turn a hostile TXT record or header into a lost check), and what a valid writer emits is
read back as written."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import example, given
from hypothesis import strategies as st

from connector.parsers.cookies import parse_set_cookie
from connector.parsers.csp import evaluate, parse_header_values, parse_policy
from connector.parsers.dkim import DkimSyntaxError, parse_dkim
from connector.parsers.dmarc import POLICIES, DmarcSyntaxError, dmarc_records, parse_dmarc
from connector.parsers.domains import organisational_domain
from connector.parsers.hsts import HstsError, parse_hsts
from connector.parsers.mta_sts import (
    MtaStsSyntaxError,
    parse_sts_policy,
    parse_sts_record,
    parse_tlsrpt,
    sts_records,
    tlsrpt_records,
)
from connector.parsers.spf import SpfSyntaxError, expand_domain, parse_spf, spf_records
from connector.parsers.taglist import TagListError, parse_tags

T = TypeVar("T")
HUGE = "9" * 5000  # int() refuses more than 4300 digits


def near(fragments: list[str]) -> st.SearchStrategy[str]:
    """Text built from a grammar's own pieces and arbitrary characters: it reaches the parser's deeper branches."""
    piece = st.sampled_from(fragments) | st.text(max_size=4) | st.text(alphabet="0123456789", min_size=1)
    return st.lists(piece, max_size=24).map("".join)


def parsed_or_refused(parse: Callable[[str], T], text: str, error: type[Exception]) -> T | None:
    """The parse, or None when ``parse`` raised its documented error; any other exception fails the property."""
    try:
        return parse(text)
    except error:
        return None


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
DOMAIN = st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(LABEL, min_size=1, max_size=4),
                   st.from_regex(r"[a-z]{2,6}", fullmatch=True))

# --- SPF (RFC 7208) ---------------------------------------------------------------------------------------------

SPF_PIECES = ["v=spf1", " ", "v=spf1 ", "-all", "~all", "+all", "?all", "all", "include:", "exists:", "a", "mx",
              "ptr", "ip4:", "ip6:", "redirect=", "exp=", "/", "//", ":", ".", "%{d}", "%{i}", "%{d2r}", "%{l}",
              "%{c}", "%%", "%_", "%-", "%{", "}", "192.0.2.1", "2001:db8::1", "example.com", "/24", "//64", "="]


@given(near(SPF_PIECES))
@example("v=spf1 include:%{d" + HUGE + "}.example.com")
@example("v=spf1 a/" + HUGE)
def test_spf_parser_raises_only_its_syntax_error(text: str) -> None:
    assert spf_records([text]) in ([], [text])
    record = parsed_or_refused(parse_spf, text, SpfSyntaxError)
    if record is None:
        return
    assert record.all is None or record.all.name == "all"
    assert len(record.evaluated) <= len(record.mechanisms)
    assert record.redirect is None or isinstance(record.redirect, str)
    for term in record.terms:
        if term.value is not None and term.queries_dns:
            expanded = expand_domain(term.value, "mail.example.com")
            assert expanded is None or "%{" not in expanded


def spf_mechanism() -> st.SearchStrategy[str]:
    cidr4, cidr6 = st.integers(0, 32), st.integers(0, 128)
    return st.one_of(
        st.builds(lambda n: f"ip4:{n}", st.ip_addresses(v=4).map(str)),
        st.builds(lambda a, n: f"ip4:{ipaddress.ip_network(f'{a}/{n}', strict=False)}",
                  st.ip_addresses(v=4), cidr4),
        st.builds(lambda a, n: f"ip6:{ipaddress.ip_network(f'{a}/{n}', strict=False)}",
                  st.ip_addresses(v=6), cidr6),
        st.builds(lambda m, d: f"{m}:{d}", st.sampled_from(["include", "exists", "a", "mx", "ptr"]), DOMAIN),
        st.builds(lambda m, d, n, n6: f"{m}:{d}/{n}//{n6}", st.sampled_from(["a", "mx"]), DOMAIN, cidr4, cidr6),
        st.builds(lambda m, n: f"{m}/{n}", st.sampled_from(["a", "mx"]), cidr4),
        st.sampled_from(["a", "mx", "ptr", "exists:%{i}._spf.%{d}", "include:%{d2r}.example.net"]),
    )


@given(st.lists(st.tuples(st.sampled_from(["", "+", "-", "~", "?"]), spf_mechanism()), max_size=8),
       st.none() | st.sampled_from(["-all", "~all", "?all"]), st.none() | DOMAIN, st.booleans())
def test_spf_records_a_writer_emits_are_read_term_by_term(
        mechanisms: list[tuple[str, str]], last: str | None, redirect: str | None, upper: bool) -> None:
    terms = [qualifier + mechanism for qualifier, mechanism in mechanisms]
    terms += [last] if last else []
    terms += [f"redirect={redirect}"] if redirect else []
    text = " ".join(["V=SPF1" if upper else "v=spf1", *terms])
    record = parse_spf(text)
    assert [term.text for term in record.terms] == terms
    assert record.redirect == (redirect if last is None else None)
    assert [term.qualifier for term in record.mechanisms] == [q or "+" for q, _ in mechanisms] + ([last[0]] if last
                                                                                                 else [])


@given(st.lists(LABEL, min_size=1, max_size=8), st.from_regex(r"[0-9]{0,2}", fullmatch=True) | st.just(HUGE),
       st.booleans(), st.sampled_from(["", ".", "-", ".-"]))
@example(["a", "b"], "4" * 40, True, "")
@example(["0", "1"], "", True, "-")
def test_spf_domain_macro_keeps_the_right_hand_parts(labels: list[str], digits: str, reverse: bool,
                                                     delimiters: str) -> None:
    domain = ".".join(labels)
    spec = f"%{{d{digits}{'r' if reverse else ''}{delimiters}}}._spf.example.com"
    split = re.split(f"[{re.escape(delimiters or '.')}]", domain)  # given delimiters replace "." (RFC 7208 7.3)
    parts = list(reversed(split)) if reverse else split
    # a count past the number of parts (however many digits it has) keeps them all; 0 or none keeps all too
    count = len(parts) if not digits or len(digits.lstrip("0")) > 2 else int(digits)
    kept = parts[-count:] if 0 < count < len(parts) else parts
    assert expand_domain(spec, domain) == ".".join(kept) + "._spf.example.com"


# --- DMARC (RFC 7489) -------------------------------------------------------------------------------------------

DMARC_PIECES = ["v=DMARC1", "v=DMARC1;", "; ", ";", "p=", "sp=", "none", "quarantine", "reject", "pct=", "rua=",
                "ruf=", "mailto:", "@", "example.com", ",", "!10m", "adkim=", "aspf=", "r", "s", "fo=", "ri=",
                "rf=", "=", " ", "V=dmarc1", HUGE]


@given(near(DMARC_PIECES))
@example("v=DMARC1; p=none; pct=" + HUGE)
@example("v=DMARC1; p=reject; ri=" + HUGE)
def test_dmarc_parser_raises_only_its_syntax_error(text: str) -> None:
    assert dmarc_records([text]) in ([], [text])
    record = parsed_or_refused(parse_dmarc, text, DmarcSyntaxError)
    if record is None:
        return
    assert record.effective_policy in (*POLICIES, None)
    assert record.effective_subdomain_policy in (*POLICIES, None)
    assert 0 <= record.pct <= 100
    assert all(domain for domain in record.report_domains())
    record.summary()


MAILTO = st.builds(lambda local, domain: f"mailto:{local}@{domain}", st.from_regex(r"[a-z0-9.+]{1,12}", fullmatch=True),
                   DOMAIN)


@given(st.sampled_from(POLICIES), st.none() | st.sampled_from(POLICIES), st.integers(0, 100),
       st.lists(MAILTO, max_size=3), st.sampled_from(["r", "s"]))
def test_dmarc_records_a_writer_emits_are_read_back(policy: str, subdomain: str | None, pct: int, rua: list[str],
                                                    adkim: str) -> None:
    tags = ["v=DMARC1", f"p={policy}", *([f"sp={subdomain}"] if subdomain else []), f"pct={pct}",
            *([f"rua={','.join(rua)}"] if rua else []), f"adkim={adkim}"]
    record = parse_dmarc("; ".join(tags))
    assert (record.policy, record.subdomain_policy, record.pct, record.rua, record.adkim, record.problems) == \
           (policy, subdomain, pct, tuple(rua), adkim, ())
    assert record.report_domains() == list(dict.fromkeys(uri.split("@")[1] for uri in rua))


# --- DKIM (RFC 6376, RFC 8463) ----------------------------------------------------------------------------------

@cache
def rsa_key(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return base64.b64encode(key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()


DKIM_PIECES = ["v=DKIM1", "; ", ";", "k=", "rsa", "ed25519", "p=", "t=", "y", "s", ":", "h=sha256", "=", " ",
               "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "AAAA", "===="]


@given(near(DKIM_PIECES) | st.binary(max_size=300).map(lambda raw: "v=DKIM1; p=" + base64.b64encode(raw).decode()))
def test_dkim_parser_raises_only_its_syntax_error(text: str) -> None:
    key = parsed_or_refused(parse_dkim, text, DkimSyntaxError)
    if key is not None:
        assert key.revoked == (key.bits is None)
        assert key.key_type in ("rsa", "ed25519")
        key.summary()


@given(st.sampled_from(["rsa-1024", "rsa-2048", "ed25519"]), st.binary(min_size=32, max_size=32),
       st.lists(st.sampled_from(["y", "s"]), max_size=2, unique=True), st.booleans())
def test_dkim_keys_a_signer_publishes_are_measured(kind: str, ed25519: bytes, flags: list[str], spaced: bool) -> None:
    material = rsa_key(int(kind[4:])) if kind.startswith("rsa") else base64.b64encode(ed25519).decode()
    if spaced:  # long keys are published as several TXT strings; whitespace in p= is ignored
        material = " ".join(material[i:i + 60] for i in range(0, len(material), 60))
    key_type = "rsa" if kind.startswith("rsa") else "ed25519"
    key = parse_dkim(f"v=DKIM1; k={key_type}; t={':'.join(flags)}; p={material}")
    assert (key.key_type, key.bits, key.testing, key.revoked) == \
           (key_type, int(kind[4:]) if key_type == "rsa" else 256, "y" in flags, False)


# --- tag lists, MTA-STS and TLS-RPT (RFC 8461, RFC 8460) --------------------------------------------------------

STS_PIECES = ["v=STSv1", "v=TLSRPTv1", "; ", "id=", "20240101", "rua=", "mailto:tls@example.com", "https://r.test/",
              ",", "version: STSv1\n", "mode: ", "enforce", "testing", "none", "\n", "\r\n", "max_age: ", "mx: ",
              "*.", "mail.example.com", ":", HUGE]


@given(near(STS_PIECES))
@example("version: STSv1\nmode: none\nmax_age: " + HUGE + "\n")
def test_mta_sts_and_tlsrpt_parsers_raise_only_their_syntax_error(text: str) -> None:
    assert sts_records([text]) in ([], [text]) and tlsrpt_records([text]) in ([], [text])
    parsed_or_refused(parse_tags, text, TagListError)
    parsed_or_refused(parse_sts_record, text, MtaStsSyntaxError)
    parsed_or_refused(parse_tlsrpt, text, MtaStsSyntaxError)
    policy = parsed_or_refused(parse_sts_policy, text, MtaStsSyntaxError)
    if policy is not None:
        policy.matches("mail.example.com")


@given(st.sampled_from(["enforce", "testing", "none"]), st.integers(0, 31_557_600),
       st.lists(DOMAIN | DOMAIN.map("*.{}".format), min_size=1, max_size=4), st.sampled_from(["\n", "\r\n"]),
       st.dictionaries(st.from_regex(r"x[a-z0-9_]{0,8}", fullmatch=True), st.text("abc 123", max_size=8), max_size=2))
def test_mta_sts_policies_a_domain_serves_are_read_back(mode: str, max_age: int, mx: list[str], newline: str,
                                                        extensions: dict[str, str]) -> None:
    lines = ["version: STSv1", f"mode: {mode}", f"max_age: {max_age}", *(f"mx: {host}" for host in mx),
             *(f"{key}: {value}" for key, value in extensions.items())]
    policy = parse_sts_policy(newline.join(lines) + newline)
    assert (policy.mode, policy.max_age, policy.mx) == (mode, max_age, tuple(mx))
    for host in mx:
        assert policy.matches(host.replace("*", "mx1"))


# --- CSP --------------------------------------------------------------------------------------------------------

CSP_PIECES = ["script-src", "default-src", "object-src", "base-uri", "frame-ancestors", " ", ";", ",", "'self'",
              "'none'", "'unsafe-inline'", "'unsafe-eval'", "'strict-dynamic'", "'nonce-abc123'", "'sha256-AAAA='",
              "https:", "*", "data:", "https://cdn.example.com", "SCRIPT-SRC", "\t"]


@given(st.lists(near(CSP_PIECES), max_size=3), st.booleans())
def test_csp_parser_and_evaluator_never_raise(values: list[str], report_only: bool) -> None:
    policies = parse_header_values(values, report_only=report_only)
    weaknesses = evaluate(policies)
    assert weaknesses.strict <= weaknesses.nonce_based
    for value in values:
        meta = parse_policy(value, source="meta")
        assert not {"frame-ancestors", "report-uri", "report-to", "sandbox"} & set(meta.directives)


CSP_NAME = st.sampled_from(["script-src", "default-src", "object-src", "base-uri", "img-src", "frame-ancestors"])
CSP_SOURCE = st.sampled_from(["'self'", "'none'", "'unsafe-inline'", "'strict-dynamic'", "https:",
                              "https://cdn.example.com", "'nonce-AbC123'", "'sha256-Xyz+/='"])


@given(st.lists(st.tuples(CSP_NAME, st.lists(CSP_SOURCE, max_size=4), st.booleans()), max_size=6),
       st.sampled_from([";", "; ", " ;  ", ";\t"]))
def test_csp_directives_a_site_sends_are_read_back_first_one_winning(
        directives: list[tuple[str, list[str], bool]], separator: str) -> None:
    text = separator.join(" ".join([name.upper() if upper else name, *sources])
                          for name, sources, upper in directives)
    policy = parse_policy(text)
    expected: dict[str, tuple[str, ...]] = {}
    for name, sources, _ in directives:
        expected.setdefault(name, tuple(s if s.startswith(("'nonce-", "'sha")) else s.lower() for s in sources))
    assert policy.directives == expected
    assert len(policy.duplicates) == len(directives) - len(expected)


# --- HSTS (RFC 6797) and cookies (RFC 6265) ---------------------------------------------------------------------

HSTS_PIECES = ["max-age=", "max-age", "31536000", "0", '"', "\\", "; ", ";", "includeSubDomains", "preload", "=",
               " ", "\u00b2", "\u0661", HUGE]  # superscript two, Arabic-Indic one: digits to isdigit()


@given(st.lists(near(HSTS_PIECES), max_size=2))
@example(["max-age=\u00b2"])
@example(["max-age=" + HUGE])
@example(['max-age="' + HUGE + '"'])
def test_hsts_parser_raises_only_its_error(values: list[str]) -> None:
    hsts = parsed_or_refused(parse_hsts, values, HstsError)
    if hsts is not None:
        assert hsts.max_age >= 0


@given(st.integers(0, 10**30), st.booleans(), st.booleans(), st.booleans(), st.sampled_from([";", "; ", " ; "]))
def test_hsts_headers_a_site_sends_are_read_back(max_age: int, subdomains: bool, preload: bool, quoted: bool,
                                                 separator: str) -> None:
    age = f'"{max_age}"' if quoted else str(max_age)
    parts = [f"max-age={age}", *(["includeSubDomains"] if subdomains else []), *(["preload"] if preload else [])]
    hsts = parse_hsts([separator.join(parts)])
    assert (hsts.max_age, hsts.include_subdomains, hsts.preload) == (min(max_age, 10**18 - 1), subdomains, preload)


@given(near(["=", ";", " ", "Secure", "HttpOnly", "SameSite=", "Lax", "Strict", "None", "sessionid", "Path=/"]))
def test_cookie_parser_never_raises(text: str) -> None:
    cookie = parse_set_cookie(text)
    assert cookie is None or (cookie.same_site_valid == (cookie.same_site in ("strict", "lax", "none")))
    if cookie is not None:
        assert isinstance(cookie.session_like, bool)


COOKIE_TOKEN = st.from_regex(r"[A-Za-z0-9_.-]{1,16}", fullmatch=True)


@given(COOKIE_TOKEN, st.from_regex(r"[A-Za-z0-9%._-]{0,24}", fullmatch=True), st.booleans(), st.booleans(),
       st.none() | st.sampled_from(["Strict", "Lax", "None", "bogus"]))
def test_cookies_a_site_sets_are_read_back(name: str, value: str, secure: bool, http_only: bool,
                                           same_site: str | None) -> None:
    attributes = ["Path=/", *(["Secure"] if secure else []), *(["HttpOnly"] if http_only else []),
                  *([f"SameSite={same_site}"] if same_site else [])]
    cookie = parse_set_cookie("; ".join([f"{name}={value}", *attributes]))
    assert cookie is not None
    assert (cookie.name, cookie.secure, cookie.http_only, cookie.same_site) == \
           (name, secure, http_only, same_site.lower() if same_site else None)


@given(st.text(max_size=60) | DOMAIN)
def test_organisational_domain_never_raises(name: str) -> None:
    organisational = organisational_domain(name)
    assert organisational is None or name.lower().rstrip(".").endswith(organisational)
