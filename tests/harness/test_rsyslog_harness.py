"""The rsyslog harness itself, proved with hand-written syslog frames from plain Python sockets.

Nothing here uses the connector: if these pass, a failure in the connector's syslog tests is the connector's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.rsyslog import MAX_MESSAGE_SIZE, Received, Rsyslog, tls_drivers

pytestmark = pytest.mark.needs_rsyslog  # tests/run installs rsyslog; without it these fail rather than hide

# A CEF line with everything that needs escaping somewhere: CEF header pipes (escaped as \|), backslashes and
# equals signs in extension values (escaped as \\ and \=), a double quote, a tab and non-ASCII up to 4-byte UTF-8.
CEF = ('CEF:0|Acme \\| Corp|Postern|1.0|tls.weak\\=cipher|Weak "cipher" suite|7|'
       "msg=C:\\\\temp\\\\x eq\\=uals\ttab a|b ünïcødé € 😀 cs1Label=why cs1=a=b")
STAMP = "2024-05-06T07:08:09.123Z"


def rfc5424(msg: str, *, app: str = "postern", procid: str = "4242", msgid: str = "CEF", pri: int = 134,
            sd: str = "-") -> str:
    return f"<{pri}>1 {STAMP} scanner.example {app} {procid} {msgid} {sd} {msg}"


def rfc3164(msg: str, *, tag: str = "postern[4242]:", pri: int = 134) -> str:
    return f"<{pri}>May  6 07:08:09 scanner {tag} {msg}"


def octet(frame: str | bytes) -> bytes:
    """RFC 6587 octet-counting: the length in bytes, a space, the message."""
    data = frame.encode() if isinstance(frame, str) else frame
    return str(len(data)).encode() + b" " + data


def send_udp(port: int, frame: str | bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(frame.encode() if isinstance(frame, str) else frame, ("127.0.0.1", port))


def send_tcp(port: int, data: bytes) -> None:
    """One write, then an orderly close so rsyslog sees the end of the stream."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
        tcp.sendall(data)
        tcp.shutdown(socket.SHUT_WR)


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path
    stranger: Path  # a CA that did not sign the server certificate


def _certificate(subject: str, issuer: x509.Name | None, public: ec.EllipticCurvePublicKey,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for localhost and 127.0.0.1 signed by it, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("rsyslog-pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Harness Test CA", None, ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("localhost", ca.subject, server_key.public_key(), ca_key, ca=False)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate("Unrelated CA", None, stranger_key.public_key(), stranger_key, ca=True)
    paths = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other.pem")
    paths.stranger.write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return paths


@pytest.fixture
def rsyslog(tmp_path: Path, certs: Certs) -> Iterator[Rsyslog]:
    with Rsyslog(tmp_path / "rsyslog", tls_cert=certs.cert, tls_key=certs.key, tls_ca=certs.ca) as daemon:
        yield daemon


def send_tls(port: int, ca: Path, data: bytes, *, server_hostname: str = "127.0.0.1") -> str:
    """Send over TLS, verifying the server against ``ca``; returns the negotiated protocol version."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=server_hostname) as tls:
        tls.sendall(data)
        version = tls.version() or ""
        with contextlib.suppress(ssl.SSLError, OSError):  # gtls closes the TCP connection without a close_notify
            tls.unwrap()
    return version


def test_starts_clean_without_probes_in_messages(rsyslog: Rsyslog) -> None:
    assert rsyslog.running
    assert len({rsyslog.udp_port, rsyslog.tcp_port, rsyslog.tls_port}) == 3
    assert rsyslog.messages() == []
    assert "/var/log" not in rsyslog.config()


def test_rfc5424_over_udp(rsyslog: Rsyslog) -> None:
    frame = rfc5424("CEF:0|V|P|1|id|name|5|src=10.0.0.1", pri=4 * 8 + 2, sd='[ex@32473 k="v"]')
    send_udp(rsyslog.udp_port, frame)
    [got] = rsyslog.wait_for(1)
    assert got == Received(raw=frame, msg="CEF:0|V|P|1|id|name|5|src=10.0.0.1", hostname="scanner.example",
                           app_name="postern", procid="4242", msgid="CEF", pri=34, facility=4, severity=2,
                           protocol_version="1", structured_data='[ex@32473 k="v"]', transport="udp")
    assert got.text == got.msg


def test_rfc3164_over_udp_keeps_the_space_after_the_tag(rsyslog: Rsyslog) -> None:
    send_udp(rsyslog.udp_port, rfc3164("CEF:0|V|P|1|id|name|5|src=10.0.0.1"))
    send_udp(rsyslog.udp_port, rfc3164("CEF:0|no|colon", tag="postern"))
    send_udp(rsyslog.udp_port, rfc3164("  CEF:0|two more spaces"))
    first, no_colon, spaces = rsyslog.wait_for(3)
    assert (first.hostname, first.app_name, first.procid, first.msgid) == ("scanner", "postern", "4242", "-")
    assert (first.pri, first.facility, first.severity) == (134, 16, 6)
    assert (first.protocol_version, first.structured_data, first.transport) == ("0", "-", "udp")
    assert first.msg == " CEF:0|V|P|1|id|name|5|src=10.0.0.1"  # rsyslog keeps the separator
    assert first.text == "CEF:0|V|P|1|id|name|5|src=10.0.0.1"
    assert (no_colon.app_name, no_colon.msg, no_colon.text) == ("postern", " CEF:0|no|colon", "CEF:0|no|colon")
    assert (spaces.msg, spaces.text) == ("   CEF:0|two more spaces", "  CEF:0|two more spaces")


def test_tcp_octet_counted_several_frames_in_one_write(rsyslog: Rsyslog) -> None:
    frames = [rfc5424("CEF:0|one"), rfc5424("CEF:0|two\nspans a line"), rfc5424("  CEF:0|three, leading spaces")]
    send_tcp(rsyslog.tcp_port, b"".join(octet(f) for f in frames))
    received = rsyslog.wait_for(3)
    assert [m.raw for m in received] == frames
    assert [m.text for m in received] == ["CEF:0|one", "CEF:0|two\nspans a line", "  CEF:0|three, leading spaces"]
    assert {m.transport for m in received} == {"tcp"}


def test_tcp_lf_framing_several_frames_in_one_write(rsyslog: Rsyslog) -> None:
    frames = [rfc5424("CEF:0|one"), rfc3164("CEF:0|two"), rfc5424("CEF:0|three")]
    send_tcp(rsyslog.tcp_port, "".join(f + "\n" for f in frames).encode())
    received = rsyslog.wait_for(3)
    assert [m.raw for m in received] == frames
    assert [m.text for m in received] == ["CEF:0|one", "CEF:0|two", "CEF:0|three"]
    assert [m.protocol_version for m in received] == ["1", "0", "1"]


def test_tcp_framing_is_decided_per_frame(rsyslog: Rsyslog) -> None:
    """rsyslog's default: a frame starting with a digit is octet-counted, any other ends at the next LF."""
    send_tcp(rsyslog.tcp_port, octet(rfc5424("CEF:0|counted")) + (rfc5424("CEF:0|lf") + "\n").encode()
             + octet(rfc5424("CEF:0|counted again")))
    assert [m.text for m in rsyslog.wait_for(3)] == ["CEF:0|counted", "CEF:0|lf", "CEF:0|counted again"]


def test_lf_only_framing_takes_a_length_prefix_literally(tmp_path: Path) -> None:
    with Rsyslog(tmp_path / "lf", tcp_framing="lf") as daemon:
        assert daemon.tls_port is None
        frame = rfc5424("CEF:0|x")
        send_tcp(daemon.tcp_port, octet(frame) + b"\n")
        [got] = daemon.wait_for(1)
    assert got.raw == f"{len(frame.encode())} {frame}"


@pytest.mark.parametrize("driver", tls_drivers())
def test_tls_verified_by_the_client(tmp_path: Path, certs: Certs, driver: str) -> None:
    with Rsyslog(tmp_path / driver, tls_cert=certs.cert, tls_key=certs.key, tls_ca=certs.ca,
                 tls_driver=driver) as daemon:
        assert daemon.tls_port is not None
        frames = [rfc5424("CEF:0|over tls"), rfc5424("CEF:0|second")]
        version = send_tls(daemon.tls_port, certs.ca, b"".join(octet(f) for f in frames))
        send_tls(daemon.tls_port, certs.ca, (rfc3164("CEF:0|by name, LF framed") + "\n").encode(),
                 server_hostname="localhost")
        received = daemon.wait_for(3)
        with pytest.raises(ssl.SSLCertVerificationError):  # the client really verifies: a foreign CA fails
            send_tls(daemon.tls_port, certs.stranger, b"")
    assert version == "TLSv1.2"  # both drivers are held at 1.2; see support.rsyslog.TLS_DRIVERS
    assert [m.text for m in received] == ["CEF:0|over tls", "CEF:0|second", "CEF:0|by name, LF framed"]
    assert {m.transport for m in received} == {"tls"}


def test_special_characters_recovered_byte_exact(rsyslog: Rsyslog, certs: Certs) -> None:
    assert rsyslog.tls_port is not None
    frames = [rfc5424(CEF), rfc3164(CEF), rfc5424("\ufeff" + CEF)]  # the last with the BOM RFC 5424 allows
    for frame in frames:
        send_udp(rsyslog.udp_port, frame)
    send_tcp(rsyslog.tcp_port, octet(frames[0]) + (frames[1] + "\n").encode())
    send_tls(rsyslog.tls_port, certs.ca, octet(frames[0]))
    received = rsyslog.wait_for(6)
    udp, tcp, tls = ([m for m in received if m.transport == t] for t in ("udp", "tcp", "tls"))
    assert [m.raw for m in udp] == frames
    assert [m.raw for m in tcp] == frames[:2]
    assert [m.raw for m in tls] == frames[:1]
    assert all(m.text == CEF for m in received)
    assert [m.msg for m in udp] == [CEF, " " + CEF, "\ufeff" + CEF]


def test_control_characters_and_invalid_utf8_pass_through(rsyslog: Rsyslog) -> None:
    frame = rfc5424("CEF:0|ctl").encode() + b"\x01\x1b\r\x7f \xff\xfe end"
    send_udp(rsyslog.udp_port, frame)
    [got] = rsyslog.wait_for(1)
    assert got.raw_bytes == frame


def test_one_trailing_lf_is_dropped(rsyslog: Rsyslog) -> None:
    send_udp(rsyslog.udp_port, rfc5424("CEF:0|udp") + "\n")
    send_tcp(rsyslog.tcp_port, octet(rfc5424("CEF:0|counted") + "\n"))
    assert sorted(m.text for m in rsyslog.wait_for(2)) == ["CEF:0|counted", "CEF:0|udp"]


def test_20_kb_message_survives(rsyslog: Rsyslog, certs: Certs) -> None:
    assert rsyslog.tls_port is not None
    long_cef = "CEF:0|V|P|1|id|name|5|msg=" + "".join(chr(0x20 + i % 90) for i in range(20_000)) + " ü"
    frame = rfc5424(long_cef)
    assert 20_000 < len(frame.encode()) < MAX_MESSAGE_SIZE
    send_udp(rsyslog.udp_port, frame)
    send_tcp(rsyslog.tcp_port, octet(frame) + (frame + "\n").encode())
    send_tls(rsyslog.tls_port, certs.ca, octet(frame))
    received = rsyslog.wait_for(4)
    assert sorted(m.transport for m in received) == ["tcp", "tcp", "tls", "udp"]
    assert all(m.raw == frame and m.text == long_cef for m in received)


def test_stop_listening_and_restart_on_the_same_ports(rsyslog: Rsyslog, certs: Certs) -> None:
    assert rsyslog.tls_port is not None
    ports = (rsyslog.udp_port, rsyslog.tcp_port, rsyslog.tls_port)
    send_tcp(rsyslog.tcp_port, octet(rfc5424("CEF:0|before")))
    rsyslog.wait_for(1)
    rsyslog.stop_listening()
    assert not rsyslog.running
    with pytest.raises(ConnectionRefusedError):
        send_tcp(rsyslog.tcp_port, octet(rfc5424("CEF:0|while down")))
    rsyslog.restart()
    assert (rsyslog.udp_port, rsyslog.tcp_port, rsyslog.tls_port) == ports
    send_tcp(rsyslog.tcp_port, octet(rfc5424("CEF:0|after")))
    rsyslog.wait_for(2)
    send_udp(rsyslog.udp_port, rfc5424("CEF:0|after, udp"))
    rsyslog.wait_for(3)
    send_tls(rsyslog.tls_port, certs.ca, octet(rfc5424("CEF:0|after, tls")))
    assert [m.text for m in rsyslog.wait_for(4)] == ["CEF:0|before", "CEF:0|after", "CEF:0|after, udp",
                                                     "CEF:0|after, tls"]


def test_wait_for_lists_what_did_arrive(rsyslog: Rsyslog) -> None:
    send_udp(rsyslog.udp_port, rfc5424("CEF:0|only one"))
    rsyslog.wait_for(1)
    with pytest.raises(AssertionError, match=r"(?s)expected 2 message\(s\).*got 1.*CEF:0\|only one"):
        rsyslog.wait_for(2, timeout=0.2)


def test_start_failure_reports_rsyslogs_own_words(tmp_path: Path, certs: Certs) -> None:
    daemon = Rsyslog(tmp_path / "busy")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", daemon.tcp_port))
        squatter.listen()
        with pytest.raises(RuntimeError, match=r"(?i)could not create tcp listener"):
            daemon.__enter__()
    assert not daemon.running
    missing = Rsyslog(tmp_path / "nocert", tls_cert=tmp_path / "missing.pem", tls_key=certs.key)
    with pytest.raises(RuntimeError, match="rsyslogd"):
        missing.__enter__()
    assert not missing.running
