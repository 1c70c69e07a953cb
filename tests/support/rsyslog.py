"""A real rsyslogd for tests: UDP, plain TCP and TLS listeners on 127.0.0.1, every message written as one JSON line.

Why a real daemon: the connector's syslog sender must interoperate with what SIEM collectors actually run, and
rsyslog's parsers (RFC 3164 vs RFC 5424, octet-counted vs LF framing, TLS) are the reference most of them follow.
A fake receiver would only confirm our own reading of the RFCs.

The daemon is fully isolated from any system rsyslog: its own configuration, pid file, work directory and
ephemeral loopback ports; no imuxsock/imklog, no ``include()`` of /etc/rsyslog.d, nothing under /var/log, and
``processInternalMessages="on"`` so its own diagnostics go to ``<workdir>/rsyslogd.log`` instead of /dev/log.

Configuration it writes (see :meth:`Rsyslog.config`):

* ``imudp`` on ``127.0.0.1:udp_port`` and ``imtcp`` on ``127.0.0.1:tcp_port`` (plain), each bound to its own
  ruleset that sets ``$.transport`` so a record says which listener received it.
* TLS: a second ``imtcp`` input on ``127.0.0.1:tls_port`` with per-input ``streamDriver.name="ossl"`` (or
  ``"gtls"``; see ``TLS_DRIVERS``), ``streamDriver.mode="1"`` (TLS only), ``streamDriver.authMode="anon"`` (the
  server presents its certificate and asks for none; the client verifies it), per-input
  ``streamDriver.certFile``/``keyFile``/``caFile``, and TLS 1.2 at most (see ``TLS_DRIVERS`` for why).
  Per-input driver settings exist since rsyslog 8.2106/8.2108, so one imtcp module serves both the plain and the
  TLS port; no global DefaultNetstreamDriver* is set.
* One ``omfile`` action (ruleset ``harness_write``, called by every listener's ruleset) into
  ``<workdir>/messages.jsonl`` with ``flushOnTXEnd="on"`` and ``asyncWriting="off"``, using a ``type="list"``
  template with ``option.jsonf="on"``: every property is JSON-escaped by rsyslog itself, so quotes, backslashes,
  pipes, ``=``, tabs, other control characters and non-ASCII survive losslessly (bytes that are not UTF-8 are
  passed through unescaped; they are read back with ``surrogateescape``).
* ``parser.escapeControlCharactersOnReceive="off"``: by default rsyslog rewrites a TAB as ``#011`` and other
  control characters likewise *before* anything sees the message, ``rawmsg`` included.

What rsyslog records (verified against 8.2302; the connector's tests rely on it):

* ``raw`` (``%rawmsg%``): the message after the transport framing is removed, byte-exact, except that one trailing
  LF is dropped (``parser.dropTrailingLFOnReception``, on by default) -- for UDP and for octet-counted frames too.
* ``msg`` (``%msg%``) for **RFC 5424** input (``protocol_version == "1"``): everything after the single SP that
  follows STRUCTURED-DATA, byte-exact; further leading spaces are kept, and so is a UTF-8 BOM if the sender put
  one there. The CEF text is ``msg`` without a leading BOM (:attr:`Received.text`).
* ``msg`` for **RFC 3164** input (``protocol_version == "0"``): everything after the TAG. When the TAG ends with
  ``:`` (``app[12]: CEF:0|...``) that is everything after the colon *including the separating space*; when the TAG
  ends at a space (``app CEF:0|...``) msg starts with that space. So the CEF text is ``msg`` with exactly one
  leading space removed if there is one (:attr:`Received.text`). A 3164 message *without* a TAG does not work for
  CEF: rsyslog takes ``CEF:`` itself as the TAG and msg becomes ``0|Vendor|...``.

Limits: ``global(maxMessageSize="64k")``: a message longer than 65536 bytes is truncated to 65536 bytes of
``raw``, and over TCP (either framing) the excess arrives as a further bogus message; rsyslog logs "received
oversize message" in ``rsyslogd.log``. A UDP datagram cannot exceed 65507 bytes anyway. ``imtcp``'s own
``maxFrameSize`` (200000) is above that and therefore irrelevant.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
import uuid
import weakref
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from support.daemon import daemon_env, find_binary, terminate

RSYSLOGD_CANDIDATES = ("/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/local/sbin/rsyslogd")
MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog", "/usr/lib/rsyslog",
               "/usr/lib64/rsyslog", "/usr/local/lib/rsyslog")
# Preference order. ossl starts in ~10 ms, while loading gtls costs 0.05-1.1 s (random) because nsd_gtls generates
# fresh 2048-bit Diffie-Hellman parameters at start-up (hard-coded in 8.2302). gtls disables TLS 1.3 itself in
# anon mode; ossl is capped at TLS 1.2 unless ``tls13=True``. With TLS 1.3 the server sends session tickets after
# the handshake; a client that never reads them and then closes makes its kernel answer with RST, and the
# receiver drops whatever it had not read yet. The connector's sender closes gracefully (close_notify, reading
# what the peer sent) and is tested against TLS 1.3 with ``tls13=True``; simpler test clients get TLS 1.2.
TLS_DRIVERS = ("ossl", "gtls")
FRAMINGS = ("octet-counted-or-lf", "lf")
MAX_MESSAGE_SIZE = 65536  # global(maxMessageSize="64k")
PROBE_APP = "rsyslog-harness-probe"  # app-name of the harness's own UDP readiness probes; hidden from messages()
START_TIMEOUT = 10.0  # generous upper bound; a normal start takes well under a second
# rsyslogd keeps running when a listener cannot be created; these lines in its diagnostics mean the harness is
# unusable, so start-up fails at once instead of timing out.
_FATAL_MARKERS = ("could not create tcp listener", "could not create udp listener", "no listeners could be started",
                  "activation of module", "could not be accessed", "error while binding")


@dataclass(frozen=True)
class Received:
    """One message as rsyslog parsed it. See the module docstring for exactly what ``raw`` and ``msg`` hold."""

    raw: str  # %rawmsg%: the message after framing (and one trailing LF) is removed
    msg: str  # %msg%: what follows the syslog header
    hostname: str  # %hostname%
    app_name: str  # %app-name%: APP-NAME (RFC 5424) or the program name from the TAG (RFC 3164)
    procid: str  # %procid%: "-" when absent
    msgid: str  # %msgid%: "-" when absent (always for RFC 3164)
    pri: int  # %pri%: facility * 8 + severity
    facility: int  # %syslogfacility%
    severity: int  # %syslogseverity%
    protocol_version: str  # %protocol-version%: "1" for RFC 5424, "0" for RFC 3164
    structured_data: str  # %structured-data%: "-" when absent (always for RFC 3164)
    transport: str  # "udp" | "tcp" | "tls": the listener (ruleset) that received it

    @property
    def text(self) -> str:
        """The payload exactly as the sender wrote it after the header (for the connector: the CEF line).

        RFC 3164: rsyslog keeps the space after the TAG in ``msg``, so one leading space is removed.
        RFC 5424: ``msg`` is already exact apart from an optional UTF-8 BOM, which is removed.
        """
        if self.protocol_version == "0":
            return self.msg.removeprefix(" ")
        return self.msg.removeprefix("\ufeff")

    @property
    def raw_bytes(self) -> bytes:
        """``raw`` as the bytes received (non-UTF-8 bytes included), for byte-exact comparisons."""
        return self.raw.encode("utf-8", "surrogateescape")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Received:
        """Build from one JSON line of the output file; rsyslog's jsonf writes every property as a string."""
        return cls(
            raw=record["raw"], msg=record["msg"], hostname=record["hostname"], app_name=record["app_name"],
            procid=record["procid"], msgid=record["msgid"], pri=int(record["pri"]),
            facility=int(record["facility"]), severity=int(record["severity"]),
            protocol_version=record["protocol_version"], structured_data=record["structured_data"],
            transport=record["transport"],
        )


def rsyslogd_path() -> Path | None:
    """The rsyslogd binary: PATH first (sbin is often missing from it for non-root users), then the usual places."""
    return find_binary("rsyslogd", RSYSLOGD_CANDIDATES)


def module_dir() -> Path | None:
    """The directory holding rsyslog's loadable modules (only used to tell whether the needed ones are installed)."""
    return next((Path(d) for d in MODULE_DIRS if (Path(d) / "imtcp.so").is_file()), None)


def tls_drivers() -> list[str]:
    """Installed TLS network stream drivers (``lmnsd_<name>.so``), in order of preference."""
    directory = module_dir()
    if directory is None:
        return []
    return [name for name in TLS_DRIVERS if (directory / f"lmnsd_{name}.so").is_file()]


@cache
def available() -> bool:
    """True when rsyslogd, imudp, imtcp and at least one TLS driver are installed (tests/run installs them)."""
    directory = module_dir()
    return (rsyslogd_path() is not None and directory is not None
            and all((directory / f"{m}.so").is_file() for m in ("imudp", "imtcp", "lmnsd_ptcp"))
            and bool(tls_drivers()))


def free_port(kind: int) -> int:
    """An ephemeral loopback port that is free right now (bind port 0, read it, release it).

    There is a small window in which another process could take it; on loopback in a test run that is accepted.
    """
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quote(value: str | Path) -> str:
    """A RainerScript string constant: backslash and double quote escaped."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Rsyslog:
    """A real rsyslogd on 127.0.0.1 with UDP, plain TCP and TLS listeners, writing every message it receives as one
    JSON object per line.

    Use as a context manager. Ports are chosen once, in ``__init__``, so :meth:`stop_listening` and :meth:`restart`
    bring the receiver back on the same ports, as a SIEM collector restarting would. Messages accumulate in one
    output file across restarts; :meth:`messages` returns all of them.

    ``tcp_framing``: ``"octet-counted-or-lf"`` (rsyslog's default) decides *per frame* from its first byte: a digit
    starts an octet-counted frame (``LEN SP MSG``, RFC 6587 3.4.1; MSG may contain LFs), anything else an LF-delimited
    frame that ends at the next LF (3.4.2); both kinds can be mixed on one connection. ``"lf"``
    (``supportOctetCountedFraming="off"``) takes every frame as LF-delimited, so a length prefix becomes part of the
    message. The setting applies to the plain TCP and the TLS listener alike.

    TLS: given ``tls_cert`` and ``tls_key`` (PEM; the cert file may carry the chain after the leaf) a TLS listener
    is started on ``tls_port``, else ``tls_port`` is None. ``tls_ca`` is handed to rsyslog as ``caFile``; in anon
    mode it only silences rsyslog's "CA certificate is not set" warning. ``tls_driver`` picks ``"ossl"`` or
    ``"gtls"`` (default: the first installed of ``TLS_DRIVERS``).

    Diagnostics live in the work directory: ``rsyslog.conf``, ``rsyslogd.log`` (rsyslogd's own messages),
    ``rsyslogd.stderr`` and ``messages.jsonl`` (the raw output).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_ca: Path | None = None,
        tcp_framing: str = "octet-counted-or-lf",
        tls_driver: str | None = None,
        tls13: bool = False,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both tls_cert and tls_key")
        if tcp_framing not in FRAMINGS:
            raise ValueError(f"tcp_framing must be one of {FRAMINGS}, not {tcp_framing!r}")
        if tls_driver is not None and tls_driver not in TLS_DRIVERS:
            raise ValueError(f"tls_driver must be one of {TLS_DRIVERS}, not {tls_driver!r}")
        self.workdir = Path(workdir).resolve()
        self.tls_cert = Path(tls_cert).resolve() if tls_cert else None
        self.tls_key = Path(tls_key).resolve() if tls_key else None
        self.tls_ca = Path(tls_ca).resolve() if tls_ca else None
        self.tcp_framing = tcp_framing
        self.tls13 = tls13
        self.tls_driver = tls_driver or next(iter(tls_drivers()), TLS_DRIVERS[0])
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port(socket.SOCK_STREAM)
        self.tls_port: int | None = None
        if self.tls_cert is not None:
            self.tls_port = free_port(socket.SOCK_STREAM)
            while self.tls_port == self.tcp_port:
                self.tls_port = free_port(socket.SOCK_STREAM)
        self.config_path = self.workdir / "rsyslog.conf"
        self.pid_path = self.workdir / "rsyslogd.pid"
        self.spool = self.workdir / "spool"  # global(workDirectory): queue files and state, never /var/lib/rsyslog
        self.output = self.workdir / "messages.jsonl"
        self.internal_log = self.workdir / "rsyslogd.log"  # rsyslogd's own messages (processInternalMessages)
        self.stderr_path = self.workdir / "rsyslogd.stderr"
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._records: list[dict[str, Any]] = []  # every parsed output line, probes included
        self._offset = 0  # bytes of the output file already parsed
        self._stderr_start = 0  # where this run's diagnostics begin in the (appended) stderr and internal logs
        self._internal_start = 0

    # -- configuration -------------------------------------------------------------------------------------------

    def config(self) -> str:
        """The rsyslog configuration (RainerScript) this harness runs."""
        output = _quote(self.output)
        octet = "on" if self.tcp_framing == "octet-counted-or-lf" else "off"
        fields = [("raw", "rawmsg"), ("msg", "msg"), ("hostname", "hostname"), ("app_name", "app-name"),
                  ("procid", "procid"), ("msgid", "msgid"), ("pri", "pri"), ("facility", "syslogfacility"),
                  ("severity", "syslogseverity"), ("protocol_version", "protocol-version"),
                  ("structured_data", "structured-data"), ("transport", "$.transport")]
        template = "\n".join(f'  property(outname="{out}" name="{name}" format="jsonf")' for out, name in fields)
        lines = [
            "# Written by tests/support/rsyslog.py; an isolated receiver for tests, not a system logger.",
            f"global(workDirectory={_quote(self.spool)}",
            '       maxMessageSize="64k"',
            '       parser.escapeControlCharactersOnReceive="off"',
            '       processInternalMessages="on"',  # own diagnostics to the default ruleset below, not to /dev/log
            '       net.enableDNS="off")',  # fromhost lookups could stall in a container without DNS
            'module(load="imudp")',
            'module(load="imtcp")',
            "",
            'template(name="harness_json" type="list" option.jsonf="on") {',
            template,
            "}",
            "",
        ]
        # One omfile action (one file handle) for all listeners; each listener's ruleset only labels the message.
        lines += [
            'ruleset(name="harness_write") {',
            f'  action(type="omfile" file={output} template="harness_json" flushOnTXEnd="on" asyncWriting="off")',
            "}",
        ]
        lines += [f'ruleset(name="harness_{t}") {{ set $.transport = "{t}"; call harness_write }}'
                  for t in ("udp", "tcp", "tls")]
        lines += [
            "",
            f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="harness_udp")',
            f'input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="harness_tcp"'
            f' supportOctetCountedFraming="{octet}")',
        ]
        if self.tls_port is not None:
            tls = [f'input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="harness_tls"',
                   f'      supportOctetCountedFraming="{octet}"',
                   f'      streamDriver.name="{self.tls_driver}" streamDriver.mode="1" streamDriver.authMode="anon"',
                   f"      streamDriver.certFile={_quote(self.tls_cert or '')}",
                   f"      streamDriver.keyFile={_quote(self.tls_key or '')}"]
            if self.tls_ca is not None:
                tls.append(f"      streamDriver.caFile={_quote(self.tls_ca)}")
            if self.tls_driver == "ossl" and not self.tls13:
                # ossl takes OpenSSL SSL_CONF commands here (the name is historical). See TLS_DRIVERS for why 1.2.
                tls.append('      gnutlsPriorityString="MaxProtocol=TLSv1.2"')
            lines.append("\n".join(tls) + ")")
        lines += [
            "",
            "# The default ruleset only sees rsyslogd's own messages; keep them next to the output for diagnosis.",
            f'action(type="omfile" file={_quote(self.internal_log)} flushOnTXEnd="on" asyncWriting="off")',
            "",
        ]
        return "\n".join(lines)

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> Rsyslog:
        """Write the configuration, validate it with ``rsyslogd -N1``, start the daemon and wait until it is ready.

        A reused work directory starts with an empty output file, so :meth:`messages` is this instance's only.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(exist_ok=True)
        self.output.unlink(missing_ok=True)
        self._records.clear()
        self._offset = 0
        self.config_path.write_text(self.config())
        self._validate()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the daemon; the work directory (config, output, rsyslog's logs) stays for post-mortems."""
        self.stop_listening()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _binary(self) -> Path:
        binary = rsyslogd_path()
        if binary is None:
            raise RuntimeError("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls rsyslog-openssl)")
        return binary

    def _validate(self) -> None:
        """``rsyslogd -N1``: a syntax or parameter error is reported here, with rsyslog's own explanation."""
        check = subprocess.run([self._binary(), "-N1", "-f", self.config_path], capture_output=True, text=True,
                               timeout=30, check=False, env=daemon_env())
        if check.returncode != 0:
            raise RuntimeError(f"rsyslogd rejected {self.config_path} (exit {check.returncode}):\n"
                               f"{check.stderr}{check.stdout}\n--- config ---\n{self.config_path.read_text()}")


    def start(self) -> None:
        """Start rsyslogd (foreground, ``-n``) with the written configuration and wait until every listener works.

        ``-C`` (do not chdir to /) is not needed: every path in the configuration is absolute.
        """
        if self.running:
            return
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()  # left by a SIGKILLed run; rsyslogd refuses to start if the pid is alive
        self._stderr_start = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
        self._internal_start = self.internal_log.stat().st_size if self.internal_log.exists() else 0
        with self.stderr_path.open("ab") as stderr:
            self._process = subprocess.Popen(
                [self._binary(), "-n", "-f", self.config_path, "-i", self.pid_path],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=daemon_env(), cwd=self.workdir)
        self._finalizer = weakref.finalize(self, terminate, self._process)
        try:
            self._wait_ready()
        except BaseException:
            self.stop_listening()
            raise

    def stop_listening(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL): the ports refuse connections until :meth:`restart`."""
        if self._process is not None:
            terminate(self._process)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def restart(self) -> None:
        """Start the daemon again with the same configuration and ports (stopping it first if it runs)."""
        self.stop_listening()
        self.start()

    # -- readiness -----------------------------------------------------------------------------------------------

    def _diagnostics(self) -> str:
        """What rsyslogd said since the last start: stderr and its internal log."""
        parts = []
        for path, start in ((self.stderr_path, self._stderr_start), (self.internal_log, self._internal_start)):
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(start)
                    parts.append(f"--- {path.name} ---\n" + handle.read().decode("utf-8", "replace"))
        return "\n".join(parts)

    def _check_alive(self) -> None:
        """Fail fast when rsyslogd exited or reported a listener it could not create (it keeps running then)."""
        assert self._process is not None
        diagnostics = self._diagnostics()
        if self._process.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {self._process.returncode} during start-up\n{diagnostics}")
        if any(marker in diagnostics.lower() for marker in _FATAL_MARKERS):
            raise RuntimeError(f"rsyslogd could not open its listeners\n{diagnostics}")

    def _wait_ready(self) -> None:
        """Wait until TCP and TLS accept (TLS: a full handshake) and a UDP probe has come out in the output file."""
        deadline = time.monotonic() + START_TIMEOUT
        pending = {"tcp", "tls", "udp"} if self.tls_port is not None else {"tcp", "udp"}
        nonce = uuid.uuid4().hex
        last_probe = 0.0
        while pending:
            self._check_alive()
            if "tcp" in pending and self._accepts(self.tcp_port):
                pending.discard("tcp")
            if "tls" in pending and self.tls_port is not None and self._tls_handshakes(self.tls_port):
                pending.discard("tls")
            if "udp" in pending:
                # Probes sent before imudp is bound are lost (harmlessly: late ones are filtered out), so resend
                # often; the inputs are activated together, so the first probe after TCP accepts usually lands.
                if time.monotonic() - last_probe > 0.05:
                    self._send_probe(nonce)
                    last_probe = time.monotonic()
                self._read()
                if any(r["app_name"] == PROBE_APP and r["msg"] == nonce for r in self._records):
                    pending.discard("udp")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"rsyslogd did not get ready in {START_TIMEOUT} s (waiting for {sorted(pending)})"
                                   f"\n{self._diagnostics()}")
            time.sleep(0.02)

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    @staticmethod
    def _tls_handshakes(port: int) -> bool:
        """A TLS handshake without verification: readiness only; the tests verify the certificate themselves."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls, contextlib.suppress(OSError):
                tls.unwrap()  # close_notify, so the driver does not log "non-properly terminated"
        except OSError:
            return False
        return True

    def _send_probe(self, nonce: str) -> None:
        frame = f"<133>1 - rsyslog-harness {PROBE_APP} - - - {nonce}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(frame, ("127.0.0.1", self.udp_port))

    # -- reading -------------------------------------------------------------------------------------------------

    def _read(self) -> None:
        """Parse the complete lines appended to the output file since the last call (a partial line waits)."""
        try:
            with self.output.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for line in chunk[:end].split(b"\n"):  # jsonf escapes CR/LF inside values, so LF only ends records
            if line.strip():
                # Non-UTF-8 bytes of a message are written through unescaped; surrogateescape keeps them.
                self._records.append(json.loads(line.decode("utf-8", "surrogateescape")))

    def messages(self) -> list[Received]:
        """Everything received so far (across restarts), without the harness's own readiness probes.

        Order: as rsyslog wrote them. Messages from one UDP socket or one TCP/TLS connection keep their order (a
        single main-queue worker); messages from different listeners or connections may interleave either way.
        """
        self._read()
        return [Received.from_record(r) for r in self._records if r["app_name"] != PROBE_APP]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``count`` messages arrived and return all of them; AssertionError lists what did."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.messages()
            if len(received) >= count:
                return received
            if time.monotonic() > deadline or not self.running:
                state = "" if self.running else " (rsyslogd is not running)"
                listing = "\n".join(f"  [{m.transport}] {m.raw[:200]!r}" for m in received) or "  (nothing)"
                raise AssertionError(f"expected {count} message(s) within {timeout} s, got {len(received)}{state}:\n"
                                     f"{listing}\n{self._diagnostics()}")
            time.sleep(0.02)
