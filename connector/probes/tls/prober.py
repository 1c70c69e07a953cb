"""Ask a TLS server questions, one ClientHello per question, and remember the answers for the whole scan.

A question is "do you accept any of these suites at this version?". The server's ServerHello (or alert) answers
it without completing a handshake, so legacy suites the local OpenSSL cannot speak are still testable. Answers
are memoised per prober, so the certificate and protocol checks share connections instead of repeating them.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from connector.core.errors import ProbeError
from connector.probes.endpoint import Endpoint
from connector.probes.guard import Resolver
from connector.probes.tls import wire
from connector.probes.tls.suites import TLS13_SUITES, offerable_legacy_suites, suite
from connector.probes.tls.wire import TlsVersion

_READ_LIMIT = 1 << 20  # a certificate flight larger than 1 MiB is hostile, not a chain


@dataclass(frozen=True)
class HelloAnswer:
    """The server's answer to one ClientHello."""

    offered_version: TlsVersion
    accepted: bool
    version: TlsVersion | int | None = None
    cipher_suite: int | None = None
    certificates: tuple[bytes, ...] = ()
    reason: str = ""
    dh: wire.DhParams | None = None  # the group of an accepted DHE or DH_anon suite
    dh_error: str = ""  # why a DHE ServerKeyExchange could not be read

    @property
    def suite_name(self) -> str | None:
        return None if self.cipher_suite is None else suite(self.cipher_suite).name


@dataclass(frozen=True)
class Handshake:
    """A full handshake made by a standard client (pyOpenSSL), used where raw probing cannot see the chain."""

    version: str
    certificates: tuple[bytes, ...]


@dataclass
class TlsProber:
    endpoint: Endpoint
    resolver: Resolver
    timeout: float = 5.0
    parallel: int = 3
    connections: int = 0
    _answers: dict[tuple[TlsVersion, tuple[int, ...]], asyncio.Task[HelloAnswer]] = field(default_factory=dict)
    _address: tuple[str, int] | None = None
    _resolve_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _gate: asyncio.Semaphore | None = None
    _handshake: asyncio.Task[Handshake] | None = None
    sockets: asyncio.Semaphore | None = None  # the scan's socket budget, shared with every other probe

    async def hello(self, version: TlsVersion, suites: tuple[int, ...] | None = None) -> HelloAnswer:
        """Offer ``suites`` (default: every offerable suite for ``version``) and report what the server chose."""
        if suites is None:
            suites = TLS13_SUITES if version is TlsVersion.TLS1_3 else offerable_legacy_suites()
        key = (version, suites)
        task = self._answers.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(version, suites))
            self._answers[key] = task
        return await asyncio.shield(task)  # another check's timeout must not cancel the probe under this one

    async def full_handshake(self) -> Handshake:
        if self._handshake is None:
            self._handshake = asyncio.ensure_future(self._full_handshake())
        return await asyncio.shield(self._handshake)

    async def served_chain(self) -> tuple[tuple[bytes, ...], str]:
        """The certificate chain as the server sends it, and how it was obtained.

        TLS 1.2 and older send the chain in the clear, so the TLS 1.2 version probe usually has it already; a
        TLS 1.3-only server needs one full handshake; a server that only speaks older protocols still answers
        a raw hello.
        """
        answer = await self.hello(TlsVersion.TLS1_2)
        if answer.accepted and answer.certificates:
            return answer.certificates, "TLSv1.2 handshake"
        reasons = [f"TLSv1.2: {answer.reason}"]
        try:
            handshake = await self.full_handshake()
        except ProbeError as exc:
            reasons.append(str(exc))
        else:
            if handshake.certificates:
                return handshake.certificates, f"{handshake.version} handshake"
        for version in (TlsVersion.TLS1_1, TlsVersion.TLS1_0, TlsVersion.SSL3):
            answer = await self.hello(version)
            if answer.accepted and answer.certificates:
                return answer.certificates, f"{version.label} handshake"
        raise ProbeError(f"{self.endpoint}: the server presented no certificate ({'; '.join(reasons)})")

    def answers_so_far(self) -> list[HelloAnswer]:
        """The answers already received, so a check can reuse what earlier probes saw instead of asking again."""
        return [task.result() for task in self._answers.values()
                if task.done() and not task.cancelled() and task.exception() is None]

    def cancel_pending(self) -> None:
        """Stop probes still running when a check timed out, so nothing outlives its scan."""
        for task in [*self._answers.values(), self._handshake]:
            if task is not None and not task.done():
                task.cancel()

    async def address(self) -> tuple[str, int]:
        """Resolve once per endpoint: every probe goes to the same address, and DNS is asked once."""
        async with self._resolve_lock:
            if self._address is None:
                self._address = await self.endpoint.resolve(self.resolver)
            return self._address

    async def _ask(self, version: TlsVersion, suites: tuple[int, ...]) -> HelloAnswer:
        address = await self.address()
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.parallel)
        async with self._gate, self._socket():
            self.connections += 1
            try:
                async with asyncio.timeout(self.timeout):
                    reader, writer = await asyncio.open_connection(*address)
            except TimeoutError as exc:
                raise ProbeError(f"{self.endpoint}: TCP connect timed out after {self.timeout:g}s",
                                 kind="timeout") from exc
            except OSError as exc:
                kind = "refused" if isinstance(exc, ConnectionRefusedError) else "unreachable"
                raise ProbeError(f"{self.endpoint}: cannot connect: {exc.strerror or exc}", kind=kind) from exc
            try:
                writer.write(wire.client_hello(version, suites, wire.sni_name(self.endpoint.host)))
                return await self._read_answer(version, suites, reader)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _read_answer(
        self, version: TlsVersion, suites: tuple[int, ...], reader: asyncio.StreamReader
    ) -> HelloAnswer:
        flight = wire.ServerFlight()
        received = 0
        try:
            async with asyncio.timeout(self.timeout):
                while not flight.complete(want_certificates=version is not TlsVersion.TLS1_3):
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > _READ_LIMIT:
                        raise ProbeError(f"{self.endpoint}: server sent over {_READ_LIMIT} bytes before its hello")
                    flight.feed(chunk)
        except TimeoutError as exc:
            if flight.hello is None:
                raise ProbeError(
                    f"{self.endpoint}: no answer to a {version.label} ClientHello within {self.timeout:g}s",
                    kind="timeout",
                ) from exc
        except ConnectionError:
            pass  # a reset instead of an alert is how some stacks refuse a hello
        except wire.NotTlsError as exc:
            raise ProbeError(f"{self.endpoint}: the server does not speak TLS: {exc}", kind="protocol") from exc
        except wire.MalformedServerHelloError as exc:
            raise ProbeError(f"{self.endpoint}: malformed TLS answer ({exc})", kind="protocol") from exc
        return self._judge(version, suites, flight)

    def _judge(self, version: TlsVersion, suites: tuple[int, ...], flight: wire.ServerFlight) -> HelloAnswer:
        hello = flight.hello
        if hello is None:
            reason = f"alert {flight.alert.name}" if flight.alert else "connection closed without a ServerHello"
            return HelloAnswer(version, accepted=False, reason=reason)
        if hello.version != version:
            return HelloAnswer(
                version, accepted=False, version=hello.version, cipher_suite=hello.cipher_suite,
                reason=f"server negotiated {_version_label(hello.version)} instead",
            )
        if hello.cipher_suite not in suites:
            raise ProbeError(
                f"{self.endpoint}: server chose cipher suite 0x{hello.cipher_suite:04X}, which was not offered"
            )
        dh, dh_error = None, ""
        if suite(hello.cipher_suite).finite_field_dh:
            if flight.key_exchange is None:
                dh_error = "the server sent no ServerKeyExchange for its DHE suite"
            else:
                try:
                    dh = wire.parse_dh_params(flight.key_exchange)
                except wire.MalformedServerHelloError as exc:
                    dh_error = str(exc)
        return HelloAnswer(
            version, accepted=True, version=hello.version, cipher_suite=hello.cipher_suite,
            certificates=tuple(flight.certificates),
            reason="hello retry request" if hello.retry_request else "server hello",
            dh=dh, dh_error=dh_error,
        )

    async def _full_handshake(self) -> Handshake:
        address = await self.address()
        async with self._socket():
            self.connections += 1
            return await asyncio.to_thread(_handshake_blocking, address, wire.sni_name(self.endpoint.host),
                                           self.timeout, str(self.endpoint))

    def _socket(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self.sockets if self.sockets is not None else contextlib.nullcontext()


def _version_label(version: TlsVersion | int) -> str:
    return version.label if isinstance(version, TlsVersion) else f"version 0x{version:04X}"


def _handshake_blocking(address: tuple[str, int], server_name: str | None, timeout: float, label: str) -> Handshake:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_verify(SSL.VERIFY_NONE)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_cipher_list(b"ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"{label}: cannot connect: {exc.strerror or exc}") from exc
    with raw:
        raw.setblocking(False)
        connection = SSL.Connection(context, raw)
        if server_name:
            connection.set_tlsext_host_name(server_name.encode("idna"))
        connection.set_connect_state()
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([raw], [], [], remaining)[0]:
                    raise ProbeError(f"{label}: TLS handshake timed out after {timeout:g}s") from None
            except (SSL.Error, OSError) as exc:
                raise ProbeError(f"{label}: TLS handshake failed: {exc}") from exc
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        return Handshake(
            version=connection.get_protocol_version_name(),
            certificates=tuple(cert.public_bytes(Encoding.DER) for cert in chain),
        )
