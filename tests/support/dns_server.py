"""A real authoritative DNS server (Knot DNS) for tests, serving zones written by the test on 127.0.0.x:<port>.

Why a real server: the connector's DNS checks judge what an authoritative server actually puts on the wire -- the AA
flag, NXDOMAIN with the SOA in the authority section, REFUSED for foreign zones, SERVFAIL for a broken zone,
multi-string TXT records, CAA, wildcard synthesis, in-zone CNAME chains, referrals. A fake responder would only
confirm our own reading of RFC 1034/2181/8659.

Why Knot DNS (Debian package ``knot``, 3.2 in bookworm): ``knotd`` runs in the foreground by default, takes one
plain-text configuration file, loads plain zone files with no compile step, validates both offline (``knotc
conf-check`` / ``knotc zone-check``, no extra package), starts in a few tens of milliseconds, keeps everything it
writes (pid file, timer database, control socket) where the configuration says, does not drop privileges unless
told to, and its control socket gives a *blocking* zone reload (``knotc -b zone-reload``), so :meth:`DnsServer.reload`
returns once the new data is served. A zone that fails to load is answered with SERVFAIL, which gives a dependable
SERVFAIL zone. NSD needs a compiled database (or TLS keys for nsd-control) and dnsmasq is a forwarder whose
"authoritative" mode does not model foreign zones and referrals like a real authoritative server.

Isolation: each instance has its own configuration, zone files, pid file, timer database, control socket and log in
its work directory (use one work directory per instance), binds only the loopback address it is given (UDP and TCP,
same port), runs as the invoking user (no ``server.user``: root in the container, and nothing to chmod), and never
touches /etc/knot, /var/lib/knot or /run/knot. The Debian package's own service is not needed and must not run.
If the control socket path would exceed the kernel's limit for UNIX socket paths (~107 bytes; deep pytest temp
dirs), the socket alone lives in a short private directory under the system temp dir, removed on exit.

What the server answers (verified by tests/test_dns_harness.py against Knot 3.2.6):

* A name in a served zone: NOERROR with AA set; the rdataset in the answer section. A missing name: NXDOMAIN, AA,
  the zone's SOA in the authority section. An existing name without that type (NODATA): NOERROR, AA, empty answer,
  SOA in authority. Wildcards (``*.wild IN A ...``) are synthesised as usual.
* CNAME: followed *within the zone* only. A CNAME whose target is outside the zone (even in another zone this same
  server hosts) is answered with just the CNAME (NOERROR, AA). dnspython's stub ``Resolver`` expects a recursive
  server to have chased the chain, so ``resolve(name, "A")`` then raises ``NoAnswer``; a checker must query the CNAME
  itself and resolve the target separately -- which is also exactly how a dangling CNAME is detected.
* A name below a delegation inside a served zone (``child NS ns.child``): a referral -- NOERROR, AA *clear*, empty
  answer, the NS set in the authority section and in-zone glue in the additional section. dnspython's stub
  ``Resolver`` raises ``NoAnswer`` for it.
* A name in no served zone ("foreign", including parents of served zones, e.g. ``test.`` when only ``good.test.``
  is served): REFUSED, AA clear, empty answer/authority/additional. Knot never recurses. dnspython's ``Resolver``
  raises ``NoNameservers`` (it gives up on a server that refused).
* A zone listed in ``servfail``: SERVFAIL (AA clear, no records) for every name and type in it and below it. The zone
  is configured with a zone file that does not exist, so Knot cannot load it and answers SERVFAIL, as it does for any
  zone whose *first* load failed (a syntax error at start-up does the same; a missing file is deterministic and needs
  no parser quirks). A failed *re*load keeps the previous data, so :meth:`DnsServer.reload` drops a zone from the
  configuration before it re-adds it as a SERVFAIL zone. dnspython's ``Resolver`` raises ``NoNameservers``
  (``retry_servfail`` is off).
* CHAOS-class queries (``id.server.``, ``version.bind.``): REFUSED (``identity`` and ``version`` are empty).

Lame and unreachable nameservers. A stub resolver pointed at this server never follows delegations, so a checker
finds lameness the way a real one does: take the domain's NS names (from the domain's apex or the parent's
referral), resolve each name's address, then query *that address directly* (RD clear, the harness port) for the
domain's SOA. The nameserver is lame unless the answer is NOERROR with AA set and the SOA owner is the domain. All of
127.0.0.0/8 is local on Linux (``lo`` holds 127.0.0.1/8, binding 127.0.0.2 works without configuration), so the
convention is: **every nameserver of a test scenario listens on the same port, each on its own 127.0.0.x address**,
and NS targets' A records point at those addresses. The checker therefore needs one configurable port for all
nameserver queries (53 in production, ``server.port`` in tests). Build a scenario like this (see
test_dns_harness.py)::

    with DnsServer(tmp / "main", [Zone("lame.test.", [*nameserver_records({"ns1": "127.0.0.1", "ns2": "127.0.0.2",
                                                                            "ns3": "127.0.0.3", "ns4": "127.0.0.4",
                                                                            "ns5": "127.0.0.5"})])]) as main, \\
         lame_nameserver(tmp, "lame.test.", port=main.port, address="127.0.0.2", mode="refused"), \\
         lame_nameserver(tmp, "lame.test.", port=main.port, address="127.0.0.3", mode="silent"), \\
         lame_nameserver(tmp, "lame.test.", port=main.port, address="127.0.0.4", mode="referral"):
        ...  # 127.0.0.5: nothing listens

giving, for ``lame.test. SOA`` sent to each address on ``main.port``:

* 127.0.0.1 (``main``): NOERROR, AA, the SOA -- the healthy nameserver.
* ``mode="refused"``: another Knot instance hosting an unrelated zone only: REFUSED, AA clear.
* ``mode="referral"``: another Knot instance hosting the *parent* zone (``test.``) that delegates ``lame.test.`` to
  ``ns1.lame.test.`` (glue 127.0.0.1): NOERROR, AA clear, empty answer, NS in authority -- the classic lame
  delegation where the listed server is not authoritative for the child.
* ``mode="servfail"``: another Knot instance with ``lame.test.`` configured but not loadable: SERVFAIL.
* ``mode="silent"``: :class:`SilentDnsServer`: UDP and TCP accepted, never answered -- a timeout.
* nothing listening on the address: UDP times out (Linux drops the ICMP port-unreachable for dnspython's unconnected
  UDP socket, so ``dns.query.udp`` raises ``dns.exception.Timeout`` and a ``Resolver`` ``LifetimeTimeout``), TCP is
  refused at once (``ConnectionRefusedError``).

A lame delegation seen from the parent works the same way: serve the parent zone (``test.``) on 127.0.0.1 with
:func:`delegation_records` for the child and let the child's NS addresses be any of the above.

Limits: IPv4 loopback only (no ::1 instances); no DNSSEC signing, no zone transfers (AXFR/IXFR are answered NOTAUTH:
no ACL allows them) and no dynamic updates; a single TXT character-string is at most 255 bytes (split long values
with :func:`txt_strings`); the automatic SOA serial is the reload generation (1, 2, ...), a zone that brings its own
SOA keeps its own serial (reload still forces the new data to be loaded). Zones are validated with ``knotc
zone-check`` before every start and reload, because ``knotc zone-reload`` reports success even when the file is
broken (Knot then logs the error and keeps the old data).
The ephemeral port is probed free (UDP and TCP) and then released, so another process could take it in between;
Knot then fails to bind TCP and the harness retries with a fresh port (only when it chose the port itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.zone

from support.daemon import daemon_env, find_binary, terminate

KNOTD_CANDIDATES = ("/usr/sbin/knotd", "/sbin/knotd", "/usr/local/sbin/knotd")
KNOTC_CANDIDATES = ("/usr/sbin/knotc", "/sbin/knotc", "/usr/local/sbin/knotc")
APT_PACKAGES = ("knot",)  # knotd + knotc (conf-check, zone-check, control); nothing else is needed
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_TTL = 300
START_TIMEOUT = 10.0  # generous upper bound; a normal start takes well under 0.2 s
STOP_TIMEOUT = 5.0
PROBE_TIMEOUT = 0.2  # per readiness query; the server is local, an answer takes microseconds
PORT_ATTEMPTS = 5  # fresh ports tried when Knot finds the probed port taken (harness-chosen ports only)
MAX_UNIX_PATH = 100  # sun_path is 108 bytes; keep a margin
LameMode = Literal["refused", "referral", "servfail", "silent"]


# -- zones -------------------------------------------------------------------------------------------------------


def absolute(name: str) -> str:
    """``name`` as an absolute, lower-case domain name (trailing dot added): how zones are compared and configured."""
    text = name.strip().lower()
    return text if text.endswith(".") else text + "."


def _child(label: str, origin: str) -> str:
    """``label`` below ``origin`` as an absolute name ("ns1", "." -> "ns1.", not "ns1..")."""
    return f"{label}." if origin == "." else f"{label}.{origin}"


@dataclass
class Zone:
    """One zone: its origin and zone-file lines (master-file syntax, names relative to the origin unless absolute).

    An SOA (``ns1.<origin> hostmaster.<origin>``, serial = reload generation) and an apex NS ``ns1.<origin>`` with
    ``ns1 A 127.0.0.1`` are added unless the records already hold an SOA / NS at the apex (the ``A`` only if ``ns1``
    has neither A nor CNAME of its own). ``$TTL 300`` is the default TTL; ``$ORIGIN`` and ``$TTL`` lines may be used.
    """

    origin: str
    records: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.origin = absolute(self.origin)

    def render(self, serial: int = 1) -> str:
        """The zone file Knot loads: the test's records first, then whatever apex records are missing.

        The added records come last, after ``$ORIGIN`` is restored, so that a leading record line of the test that
        starts with blanks (owner omitted) cannot inherit an added record's owner, and an ``$ORIGIN`` of the test
        cannot move them.
        """
        has_soa, has_ns, ns1_needs_a = self._apex()
        lines = [f"$ORIGIN {self.origin}", f"$TTL {DEFAULT_TTL}", *self.records, f"$ORIGIN {self.origin}"]
        ns1, hostmaster = _child("ns1", self.origin), _child("hostmaster", self.origin)
        if not has_soa:
            lines.append(f"@ {DEFAULT_TTL} IN SOA {ns1} {hostmaster} {serial} 3600 600 86400 {DEFAULT_TTL}")
        if not has_ns:
            lines.append(f"@ {DEFAULT_TTL} IN NS {ns1}")
            if ns1_needs_a:
                lines.append(f"ns1 {DEFAULT_TTL} IN A {DEFAULT_ADDRESS}")
        return "\n".join(lines) + "\n"

    def _apex(self) -> tuple[bool, bool, bool]:
        """(has SOA at the apex, has NS at the apex, ``ns1`` lacks A and CNAME), read with dnspython's parser.

        If dnspython cannot parse the records, nothing is assumed present; ``knotc zone-check`` then reports the real
        error (with Knot's line numbers) when the server is started.
        """
        text = f"$ORIGIN {self.origin}\n$TTL {DEFAULT_TTL}\n" + "\n".join(self.records) + "\n"
        try:
            parsed = dns.zone.from_text(text, origin=self.origin, relativize=True, check_origin=False)
        except dns.exception.DNSException:
            return False, False, True
        has_soa = parsed.get_rdataset("@", "SOA") is not None
        has_ns = parsed.get_rdataset("@", "NS") is not None
        ns1 = parsed.get_node("ns1")
        ns1_needs_a = ns1 is None or (ns1.get_rdataset(parsed.rdclass, dns.rdatatype.A) is None
                                      and ns1.get_rdataset(parsed.rdclass, dns.rdatatype.CNAME) is None)
        return has_soa, has_ns, ns1_needs_a


def txt_strings(value: str) -> str:
    """TXT rdata for ``value`` split into quoted character-strings of at most 255 bytes (RFC 1035 3.3.14).

    For long SPF/DKIM values: ``f'sel._domainkey IN TXT {txt_strings(key)}'``. A reader joins the strings without
    separators, as SPF (RFC 7208 3.3) and DKIM (RFC 6376 3.6.2.2) require. ``"`` and ``\\`` are escaped, bytes
    outside printable ASCII are written as ``\\DDD``.
    """
    data = value.encode()
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + "".join(_txt_char(b) for b in chunk) + '"' for chunk in chunks)


def _txt_char(byte: int) -> str:
    if byte in (0x22, 0x5C):
        return "\\" + chr(byte)
    return chr(byte) if 0x20 <= byte < 0x7F else f"\\{byte:03d}"


def nameserver_records(nameservers: Mapping[str, str]) -> list[str]:
    """Apex NS records plus address records for them: ``{"ns1": "127.0.0.1", "ns2": "127.0.0.2"}``.

    Names are relative to the zone (or absolute with a trailing dot; then only the NS is written for an
    out-of-zone name, its address belongs in that other zone). Giving apex NS records switches off the automatic NS.
    """
    lines: list[str] = []
    for name, address in nameservers.items():
        lines.append(f"@ IN NS {name}")
        if not name.endswith("."):
            kind = "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
            lines.append(f"{name} IN {kind} {address}")
    return lines


def delegation_records(child: str, nameservers: Mapping[str, str], parent: str) -> list[str]:
    """Records for ``parent`` that delegate ``child`` to ``nameservers`` (absolute NS name -> address).

    Glue (an A record) is written for every NS name inside ``parent`` -- as a real parent does, and as Knot needs to
    put addresses into the additional section of its referral.
    """
    parent_name = dns.name.from_text(absolute(parent))
    child_name = dns.name.from_text(absolute(child))
    if not child_name.is_subdomain(parent_name) or child_name == parent_name:
        raise ValueError(f"{child} is not below {parent}")
    lines: list[str] = []
    for target, address in nameservers.items():
        target_name = dns.name.from_text(absolute(target))
        lines.append(f"{child_name} IN NS {target_name}")
        if target_name.is_subdomain(parent_name):
            kind = "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
            lines.append(f"{target_name} IN {kind} {address}")
    return lines


# -- helpers -----------------------------------------------------------------------------------------------------


@cache
def available() -> bool:
    """True when Knot DNS (``knotd`` and ``knotc``) is installed: ``apt-get install knot``."""
    return find_binary("knotd", KNOTD_CANDIDATES) is not None and find_binary("knotc", KNOTC_CANDIDATES) is not None


def _loopback(address: str) -> str:
    """Refuse anything but an IPv4 loopback address: the harness must never listen beyond this host."""
    parsed = ipaddress.ip_address(address)
    if parsed.version != 4 or not parsed.is_loopback:
        raise ValueError(f"the DNS harness binds IPv4 loopback addresses only, not {address}")
    return str(parsed)


def _port_is_free(address: str, port: int) -> bool:
    """Whether both UDP and TCP ``address:port`` can be bound right now (without SO_REUSEADDR/SO_REUSEPORT)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def free_port(address: str = DEFAULT_ADDRESS) -> int:
    """An ephemeral port free for both UDP and TCP on ``address`` right now (bind 0, read it, release it)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
            port = int(probe.getsockname()[1])
        if _port_is_free(address, port):
            return port
    raise RuntimeError(f"no port free for both UDP and TCP on {address}")


def _quote(value: str | Path) -> str:
    """A double-quoted Knot configuration string; Knot's YAML subset has no escapes, so quotes cannot be embedded."""
    text = str(value)
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot put {text!r} into a Knot configuration")
    return f'"{text}"'


def _file_stem(origin: str) -> str:
    """A readable, collision-free zone file name for ``origin`` ("good.test" -> "good.test", "." -> "root")."""
    stem = origin.rstrip(".") or "root"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    if safe != stem:
        safe += "-" + hashlib.sha256(origin.encode()).hexdigest()[:8]
    return safe


def query(address: str, port: int, name: str, rdtype: str = "SOA", *, tcp: bool = False, timeout: float = 2.0,
          recursion_desired: bool = False) -> dns.message.Message:
    """One raw query (RD clear by default, as a checker probing a nameserver sends it); the whole response is
    returned, so flags (AA), rcode and every section can be inspected."""
    message = dns.message.make_query(name, rdtype)
    if not recursion_desired:
        message.flags &= ~dns.flags.RD
    if tcp:
        return dns.query.tcp(message, address, port=port, timeout=timeout)
    return dns.query.udp(message, address, port=port, timeout=timeout)


# -- the server --------------------------------------------------------------------------------------------------


class DnsServer:
    """A real authoritative DNS server (knotd) on ``address:port`` (UDP and TCP) serving the given zones.

    ``servfail``: zone names that are configured but cannot be loaded, so every query at or below them gets
    SERVFAIL (a name may also appear in ``zones``; its data is then ignored). ``address`` must be 127.x.y.z;
    ``port`` defaults to a fresh ephemeral port -- give one explicitly to run further nameservers on other loopback
    addresses with the same port (see the module docstring).

    Files in ``workdir`` (kept after exit for post-mortems): ``knot.conf``, ``zones/*.zone``, ``knotd.log`` (knotd's
    stdout and stderr, all log levels), ``knotd.pid``, ``db/`` (timer database), ``knot.sock`` (control socket).
    """

    def __init__(self, workdir: Path, zones: list[Zone], *, servfail: Iterable[str] = (),
                 address: str = DEFAULT_ADDRESS, port: int | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.address = _loopback(address)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.address)
        self.zones: list[Zone] = []
        self.servfail: list[str] = []
        self._set_zones(zones, servfail)
        self.config_path = self.workdir / "knot.conf"
        self.zone_dir = self.workdir / "zones"
        self.db_dir = self.workdir / "db"
        self.pid_path = self.workdir / "knotd.pid"
        self.log_path = self.workdir / "knotd.log"
        self._socket_dir: Path | None = None  # a short private directory, only when workdir is too deep for a socket
        self.control_socket = self.workdir / "knot.sock"
        self.generation = 1  # the automatic SOA serial; +1 per reload
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._log_start = 0

    def _set_zones(self, zones: list[Zone], servfail: Iterable[str]) -> None:
        broken = list(dict.fromkeys(absolute(name) for name in servfail))
        origins = [zone.origin for zone in zones if zone.origin not in broken]
        duplicates = sorted({o for o in origins if origins.count(o) > 1})
        if duplicates:
            raise ValueError(f"zones given twice: {duplicates}")
        self.zones = [zone for zone in zones if zone.origin not in broken]
        self.servfail = broken

    # -- files ---------------------------------------------------------------------------------------------------

    def zone_path(self, origin: str) -> Path:
        """Where the zone file of ``origin`` lives (for a ``servfail`` zone: where Knot looks and finds nothing)."""
        origin = absolute(origin)
        suffix = ".missing" if origin in self.servfail else ".zone"
        return self.zone_dir / (_file_stem(origin) + suffix)

    def config(self, *, without: Iterable[str] = ()) -> str:
        """The knotd configuration this harness runs (``without``: zones to leave out, for a two-step reload).

        One worker of each kind (start-up time); no ``server.user`` (run as the invoking user); no journal and no
        zone-file flushing (Knot never writes to the zone files, the test owns them); ``zonefile-load: whole`` (a
        reload takes the file as it is, no serial comparison); ``tcp-reuseport`` stays off, so a second server that
        wanted the same address and port fails to bind instead of silently sharing it.
        """
        lines = [
            "# Written by tests/support/dns_server.py: an isolated authoritative server for tests.",
            "server:",
            f"    rundir: {_quote(self.workdir)}",
            f"    pidfile: {_quote(self.pid_path)}",
            f"    listen: {_quote(f'{self.address}@{self.port}')}",
            "    udp-workers: 1",
            "    tcp-workers: 1",
            "    background-workers: 1",
            '    identity: ""',
            '    version: ""',
            "log:",
            "  - target: stderr",
            "    any: info",
            "database:",
            f"    storage: {_quote(self.db_dir)}",
            "control:",
            f"    listen: {_quote(self.control_socket)}",
            "template:",
            "  - id: default",
            f"    storage: {_quote(self.zone_dir)}",
            "    zonefile-sync: -1",
            "    zonefile-load: whole",
            "    journal-content: none",
            "    semantic-checks: off",
            "zone:",
        ]
        skip = set(without)
        for origin in [zone.origin for zone in self.zones] + self.servfail:
            if origin in skip:
                continue
            lines += [f"  - domain: {_quote(origin)}", f"    file: {_quote(self.zone_path(origin))}"]
        return "\n".join(lines) + "\n"

    def _write(self) -> None:
        """Write the configuration and every zone file; files of zones no longer served are removed."""
        self.zone_dir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(parents=True, exist_ok=True)
        wanted = {self.zone_path(zone.origin) for zone in self.zones}
        for stale in self.zone_dir.iterdir():
            if stale not in wanted:
                stale.unlink()
        for zone in self.zones:
            self.zone_path(zone.origin).write_text(zone.render(self.generation))
        self.config_path.write_text(self.config())

    def _choose_socket(self) -> None:
        """The control socket in the work directory, or in a short private temp directory if the path is too long."""
        if len(os.fsencode(self.workdir / "knot.sock")) <= MAX_UNIX_PATH:
            self.control_socket = self.workdir / "knot.sock"
            return
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="knot-"))
        self.control_socket = self._socket_dir / "knot.sock"

    # -- knotc ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _binary(name: str, candidates: Iterable[str]) -> Path:
        binary = find_binary(name, candidates)
        if binary is None:
            raise RuntimeError(f"{name} is not installed (apt-get install {' '.join(APT_PACKAGES)})")
        return binary

    def _knotc(self, *args: str, local: bool = False) -> subprocess.CompletedProcess[str]:
        """Run knotc against this instance: ``local`` commands read the configuration, others use the socket."""
        target = ["-c", str(self.config_path)] if local else ["-s", str(self.control_socket)]
        return subprocess.run([str(self._binary("knotc", KNOTC_CANDIDATES)), *target, "-t", "10", *args],
                              capture_output=True, text=True, timeout=30, check=False, env=daemon_env())

    def _validate(self) -> None:
        """``knotc conf-check`` and ``knotc zone-check``: a mistake in a test's zone is reported with Knot's words."""
        check = self._knotc("conf-check", local=True)
        if check.returncode != 0:
            raise RuntimeError(f"knotc rejected {self.config_path} (exit {check.returncode}):\n"
                               f"{check.stderr}{check.stdout}\n--- config ---\n{self.config_path.read_text()}")
        if not self.zones:
            return
        check = self._knotc("zone-check", *[zone.origin for zone in self.zones], local=True)
        if check.returncode != 0:
            files = "\n".join(f"--- {self.zone_path(z.origin)} ---\n" + "".join(
                f"{n:4} {line}\n" for n, line in enumerate(self.zone_path(z.origin).read_text().splitlines(), 1))
                for z in self.zones)
            raise RuntimeError(f"knotc zone-check failed (exit {check.returncode}):\n"
                               f"{check.stderr}{check.stdout}\n{files}")


    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> DnsServer:
        """Write configuration and zone files, validate them, start knotd in the foreground and wait until it
        answers every zone's SOA (SERVFAIL for ``servfail`` zones) over UDP and TCP."""
        # A port the test chose is checked first: knotd binds UDP with SO_REUSEPORT, so a UDP socket of the same user
        # with SO_REUSEPORT would otherwise be shared silently (only the TCP bind would fail, and later).
        if self._fixed_port and not _port_is_free(self.address, self.port):
            raise RuntimeError(f"{self.address}:{self.port} is in use (UDP or TCP)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._choose_socket()
        for attempt in range(PORT_ATTEMPTS):
            self._write()
            self._validate()
            try:
                self._start()
            except _PortTaken:
                if self._fixed_port or attempt == PORT_ATTEMPTS - 1:
                    self._cleanup_socket_dir()
                    raise RuntimeError(f"{self.address}:{self.port} is in use\n{self.diagnostics()}") from None
                self.port = free_port(self.address)
            except BaseException:
                self._cleanup_socket_dir()
                raise
            else:
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def __exit__(self, *exc: object) -> None:
        """Stop knotd (SIGTERM, then SIGKILL); the work directory stays for post-mortems."""
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _start(self) -> None:
        if self.running:
            return
        for stale in (self.pid_path, self.control_socket):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # left by a SIGKILLed run
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self._binary("knotd", KNOTD_CANDIDATES)), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=daemon_env(), cwd=self.workdir)
        self._finalizer = weakref.finalize(self, terminate, self._process)
        try:
            self._wait_ready(time.monotonic() + START_TIMEOUT)
        except BaseException:
            self._stop_process()
            raise

    def _stop_process(self) -> None:
        if self._process is not None:
            terminate(self._process)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def _cleanup_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def stop(self) -> None:
        """Stop the daemon: the address then neither answers UDP (timeout) nor accepts TCP (refused)."""
        self._stop_process()
        self._cleanup_socket_dir()

    def reload(self, zones: list[Zone], *, servfail: Iterable[str] | None = None) -> None:
        """Serve ``zones`` instead of the current ones (``servfail``: None keeps the current SERVFAIL zones).

        Rewrites the files, validates them, has knotd reload its configuration (zones added or removed) and then
        reload every zone from disk with ``knotc -b -f zone-reload``, which returns once the zones are loaded -- the
        next query sees the new data even if a zone brought its own SOA with an unchanged serial. The automatic SOA
        serial goes up by one. Returns when every zone answers again.

        Knot keeps serving a zone's previous data when a *re*load fails, so a served zone that is to become a
        SERVFAIL zone is first removed from the configuration and then added back without data.
        """
        if not self.running:
            raise RuntimeError("the DNS server is not running")
        served = {zone.origin for zone in self.zones}
        self._set_zones(zones, self.servfail if servfail is None else servfail)
        turning_broken = served.intersection(self.servfail)
        self.generation += 1
        self._write()
        self._validate()
        self._log_start = self.log_path.stat().st_size
        steps: list[tuple[str, ...]] = [("reload",)]
        if self.zones:
            steps.append(("-b", "-f", "zone-reload", *[zone.origin for zone in self.zones]))
        if turning_broken:
            self.config_path.write_text(self.config(without=turning_broken))
            self._knotc_step("reload")
            self.config_path.write_text(self.config())
        for step in steps:
            self._knotc_step(*step)
        self._wait_ready(time.monotonic() + START_TIMEOUT)

    def _knotc_step(self, *args: str) -> None:
        result = self._knotc(*args)
        if result.returncode != 0:
            raise RuntimeError(f"knotc {' '.join(args)} failed (exit {result.returncode}):\n"
                               f"{result.stderr}{result.stdout}\n{self.diagnostics()}")

    # -- readiness -----------------------------------------------------------------------------------------------

    def diagnostics(self) -> str:
        """What knotd logged since the last start or reload."""
        if not self.log_path.exists():
            return "--- knotd.log: (missing) ---"
        with self.log_path.open("rb") as handle:
            handle.seek(self._log_start)
            return "--- knotd.log ---\n" + handle.read().decode("utf-8", "replace")

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            return
        diagnostics = self.diagnostics()
        if "address already in use" in diagnostics:
            raise _PortTaken
        raise RuntimeError(f"knotd exited with {self._process.returncode} during start-up\n{diagnostics}")

    def _serving(self, origin: str, *, broken: bool, tcp: bool = False) -> bool:
        """Whether ``origin``'s SOA is answered as it should be: AA + SOA, or SERVFAIL for a broken zone."""
        try:
            response = query(self.address, self.port, origin, "SOA", tcp=tcp, timeout=PROBE_TIMEOUT)
        except (dns.exception.DNSException, OSError):
            return False
        if broken:
            return response.rcode() == dns.rcode.SERVFAIL
        return (response.rcode() == dns.rcode.NOERROR and bool(response.flags & dns.flags.AA)
                and any(rrset.rdtype == dns.rdatatype.SOA for rrset in response.answer))

    def _accepts_tcp(self) -> bool:
        """Whether knotd listens yet: a TCP connect is refused at once until then, while a UDP probe to an unbound
        port would only time out (Linux drops the ICMP error for unconnected sockets)."""
        try:
            socket.create_connection((self.address, self.port), timeout=PROBE_TIMEOUT).close()
        except OSError:
            return False
        return True

    def _wait_ready(self, deadline: float) -> None:
        """Poll until knotd listens, every zone answers over UDP, a TCP query works and the control socket exists."""
        pending = [(zone.origin, False) for zone in self.zones] + [(name, True) for name in self.servfail]
        probe = pending[0] if pending else None
        listening = tcp_checked = False
        while True:
            self._check_alive()
            listening = listening or self._accepts_tcp()
            if listening:
                pending = [(origin, broken) for origin, broken in pending
                           if not self._serving(origin, broken=broken)]
                if not pending and not tcp_checked:
                    tcp_checked = probe is None or self._serving(probe[0], broken=probe[1], tcp=True)
                if not pending and tcp_checked and self.control_socket.exists():
                    return
            if time.monotonic() > deadline:
                waiting = [o for o, _ in pending] if listening else ["listening"]
                raise RuntimeError(f"knotd on {self.address}:{self.port} did not get ready within {START_TIMEOUT} s"
                                   f" (waiting for {waiting or 'TCP / the control socket'})\n{self.diagnostics()}")
            time.sleep(0.005)

    # -- clients -------------------------------------------------------------------------------------------------

    def resolver(self, *, timeout: float = 2.0) -> dns.resolver.Resolver:
        """A dnspython stub resolver that asks this server only (no /etc/resolv.conf, no cache, no search list).

        Remember it talks to an authoritative server: REFUSED and SERVFAIL raise ``NoNameservers``, a referral or an
        out-of-zone CNAME raises ``NoAnswer`` (see the module docstring).
        """
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.address]
        resolver.port = self.port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        return resolver

    def query(self, name: str, rdtype: str = "SOA", *, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
        """A raw query to this server (RD clear): the full response, flags and all sections."""
        return query(self.address, self.port, name, rdtype, tcp=tcp, timeout=timeout)


class _PortTaken(Exception):
    """knotd could not bind its port: someone took it after it was probed free."""


# -- a nameserver that never answers -----------------------------------------------------------------------------


class SilentDnsServer:
    """Accepts UDP and TCP on ``address:port`` and never answers: a nameserver a resolver times out on.

    UDP datagrams are read and dropped; TCP connections are accepted and held open, their bytes read and dropped,
    until the client gives up or the server stops (so neither the kernel's UDP buffer nor the listen backlog fills
    and turns the silence into something else).
    """

    def __init__(self, *, address: str = DEFAULT_ADDRESS, port: int | None = None) -> None:
        self.address = _loopback(address)
        self.port = port if port is not None else free_port(self.address)
        self._selector: selectors.DefaultSelector | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> SilentDnsServer:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets = [udp, tcp]
        try:
            udp.bind((self.address, self.port))
            tcp.bind((self.address, self.port))
            tcp.listen(64)
        except OSError as error:
            self._close()
            raise RuntimeError(f"SilentDnsServer cannot bind {self.address}:{self.port}: {error}") from error
        selector = selectors.DefaultSelector()
        for sock in self._sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        self._selector = selector
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"silent-dns-{self.port}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def _run(self) -> None:
        assert self._selector is not None
        udp, listener = self._sockets
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(OSError):
                    if sock is udp:
                        sock.recvfrom(65535)
                    elif sock is listener:
                        connection, _ = sock.accept()
                        connection.setblocking(False)
                        self._sockets.append(connection)
                        self._selector.register(connection, selectors.EVENT_READ)
                    elif not sock.recv(65535):  # the client closed: forget the connection
                        self._selector.unregister(sock)
                        self._sockets.remove(sock)
                        sock.close()


# -- a nameserver that answers garbage ---------------------------------------------------------------------------


class GarbageDnsServer:
    """Answers every UDP query with bytes that are not a usable DNS message for it.

    ``mode``: ``"short"`` (3 bytes: shorter than a header), ``"junk"`` (the query's ID, then random-looking bytes
    claiming records that are not there), ``"wrong-id"`` (a well-formed answer to another query ID),
    ``"truncated"`` (an empty answer with the TC flag, so clients retry over TCP, where the connection is accepted
    and closed at once). In the other modes TCP is refused.
    """

    def __init__(self, mode: Literal["short", "junk", "wrong-id", "truncated"], *,
                 address: str = DEFAULT_ADDRESS) -> None:
        self.mode = mode
        self.address = _loopback(address)
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((self.address, 0))
        self._udp.settimeout(0.05)
        self.port = int(self._udp.getsockname()[1])
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if mode == "truncated":
            self._tcp.bind((self.address, self.port))
            self._tcp.listen(16)
            self._tcp.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"garbage-dns-{self.port}", daemon=True)

    def __enter__(self) -> GarbageDnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT)
        self._udp.close()
        self._tcp.close()

    def _reply(self, query: bytes) -> bytes:
        if self.mode == "short":
            return b"\x00\x01\x02"
        if self.mode == "junk":
            return query[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00" + bytes(range(7, 200, 3))
        reply = dns.message.make_response(dns.message.from_wire(query))
        if self.mode == "truncated":
            reply.flags |= dns.flags.TC
        else:
            reply.id = (reply.id + 1) % 65536
        return reply.to_wire()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.mode == "truncated":
                with contextlib.suppress(TimeoutError, OSError):
                    connection, _ = self._tcp.accept()
                    connection.close()
            try:
                query, peer = self._udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(OSError, dns.exception.DNSException):
                self._udp.sendto(self._reply(query), peer)


# -- lame nameservers --------------------------------------------------------------------------------------------


def lame_nameserver(workdir: Path, domain: str, *, port: int, address: str = "127.0.0.2",
                    mode: LameMode = "refused") -> DnsServer | SilentDnsServer:
    """A nameserver on ``address:port`` that is listed for ``domain`` but does not answer authoritatively for it.

    Use as a context manager next to the main :class:`DnsServer` (same ``port``, another 127.0.0.x address):

    * ``"refused"``: Knot hosting only ``unrelated.invalid.``: REFUSED for ``domain``.
    * ``"referral"``: Knot hosting the parent of ``domain`` (``test.`` for ``lame.test.``), which delegates
      ``domain`` to ``ns1.<domain>`` with glue 127.0.0.1: NOERROR, AA clear, NS in the authority section.
    * ``"servfail"``: Knot with ``domain`` configured but not loadable: SERVFAIL.
    * ``"silent"``: a :class:`SilentDnsServer`: the query times out.

    Knot instances get their own subdirectory ``workdir / "lame-<address>"``.
    """
    origin = absolute(domain)
    directory = Path(workdir) / f"lame-{address}"
    if mode == "silent":
        return SilentDnsServer(address=address, port=port)
    if mode == "refused":
        return DnsServer(directory, [Zone("unrelated.invalid.")], address=address, port=port)
    if mode == "servfail":
        return DnsServer(directory, [], servfail=[origin], address=address, port=port)
    if mode == "referral":
        parent = dns.name.from_text(origin).parent().to_text()
        ns1 = _child("ns1", origin)
        return DnsServer(directory, [Zone(parent, delegation_records(origin, {ns1: DEFAULT_ADDRESS}, parent))],
                         address=address, port=port)
    raise ValueError(f"unknown lame nameserver mode {mode!r}")
