"""Benchmark: TLS and certificate checks on 100 local nginx endpoints, against sslyze on the same endpoints.

    .venv/bin/python bench/tls_scan.py [--endpoints 100] [--no-sslyze]

Starts one nginx (installed with apt-get if missing) serving 100 TLS endpoints in eight configurations, from
hardened to legacy. Connections are counted by nginx itself (stub_status "accepts"), so both tools are measured
the same way. Each tool runs as its own process; peak RSS is that process's. sslyze (AGPL, pinned to an older
cryptography) is never imported: it is installed in its own virtual environment under bench/.work/ and run as
a command. Verdicts compared per endpoint: accepted protocol versions and accepted weak suite classes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from connector.probes.tls.suites import SuiteClass, suite_by_name  # noqa: E402
from support.pki import Authority  # noqa: E402

WORK = ROOT / "bench" / ".work"
HOST = "bench.test"
FIRST_PORT = 21000
STATUS_PORT = 20999

# name -> (ssl_protocols, ssl_ciphers); every profile serves TLS 1.2 or older so sslyze and we see the same server.
PROFILES = {
    "modern": ("TLSv1.2 TLSv1.3", "ECDHE+AESGCM:ECDHE+CHACHA20"),
    "intermediate": ("TLSv1.2 TLSv1.3", "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES"),
    "tls12-only": ("TLSv1.2", "ECDHE+AESGCM"),
    "legacy": ("TLSv1 TLSv1.1 TLSv1.2", "ECDHE+AESGCM:ECDHE+AES:AES128-SHA:@SECLEVEL=0"),
    "tls11": ("TLSv1.1 TLSv1.2", "ECDHE+AESGCM:ECDHE+AES:@SECLEVEL=0"),
    "static-rsa": ("TLSv1.2 TLSv1.3", "ECDHE+AESGCM:AES128-GCM-SHA256:AES256-GCM-SHA384"),
    "null": ("TLSv1.2 TLSv1.3", "ECDHE+AESGCM:ECDHE-RSA-NULL-SHA:@SECLEVEL=0"),
    "anonymous": ("TLSv1.2 TLSv1.3", "ECDHE+AESGCM:ADH-AES128-GCM-SHA256:@SECLEVEL=0"),
}
VERSION_KEYS = {"ssl_3_0": "SSLv3", "tls_1_0": "TLSv1.0", "tls_1_1": "TLSv1.1", "tls_1_2": "TLSv1.2",
                "tls_1_3": "TLSv1.3"}
CLASS_RULES = {f"tls.cipher.{c.value}": c.value for c in SuiteClass}


def ensure_nginx() -> str:
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx")
    if not found:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = "/usr/sbin/nginx"
    return str(found)


def write_nginx(folder: Path, endpoints: int) -> tuple[Path, dict[int, str]]:
    root = Authority("Bench Root")
    intermediate = Authority("Bench Intermediate", root)
    issued = intermediate.issue([HOST])
    cert, key = issued.write(folder, "server")
    (folder / "roots.pem").write_bytes(root.pem())
    subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out",
                    str(folder / "dh.pem")], check=True, capture_output=True)
    names = list(PROFILES)
    layout = {FIRST_PORT + index: names[index % len(names)] for index in range(endpoints)}
    servers = []
    for port, profile in layout.items():
        protocols, ciphers = PROFILES[profile]
        servers.append(f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {HOST};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_dhparam {folder / "dh.pem"};
        ssl_protocols {protocols};
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers on;
        return 200 "ok";
    }}""")
    config = folder / "nginx.conf"
    config.write_text(f"""
worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder};
    proxy_temp_path {folder};
    fastcgi_temp_path {folder};
    uwsgi_temp_path {folder};
    scgi_temp_path {folder};
    server {{ listen 127.0.0.1:{STATUS_PORT}; location / {{ stub_status; }} }}
    {"".join(servers)}
}}
""")
    return config, layout


def accepted_connections() -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{STATUS_PORT}/", timeout=5) as response:
        text = response.read().decode()
    return int(re.search(r"\n\s*(\d+)\s+\d+\s+\d+", text).group(1)) - 1  # minus this status request


def run_measured(command: list[str], folder: Path) -> tuple[float, int, int, int]:
    """Wall seconds, connections nginx accepted, the process's own peak RSS (KiB), and its exit code."""
    before = accepted_connections()
    log = (folder / "command.log").open("w")
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    log.close()
    connections = accepted_connections() - before - 1  # the "before" status request itself
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print((folder / "command.log").read_text()[-3000:])
    return elapsed, connections, usage.ru_maxrss, code


def parse_ours(path: Path) -> dict[int, tuple[set[str], set[str]]]:
    versions: dict[int, set[str]] = {}
    classes: dict[int, set[str]] = defaultdict(set)
    for line in path.read_text().splitlines():
        event = json.loads(line)
        port = event["server"]["port"]
        observed = event["postern"].get("observed", {})
        if "tls_scan" in observed:
            versions[port] = set(observed["tls_scan"]["accepted_versions"])
        rule = event["rule"]["id"]
        if rule in CLASS_RULES and event["result"]["evaluation"] == "failed":
            classes[port].add(CLASS_RULES[rule])
    return {port: (versions.get(port, set()), classes[port]) for port in versions}


def ensure_sslyze() -> Path | None:
    venv = WORK / "sslyze-venv"
    binary = venv / "bin" / "sslyze"
    if binary.exists():
        return binary
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "sslyze"], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"sslyze unavailable ({exc}); printing our figures only")
        return None
    return binary


def parse_sslyze(path: Path) -> dict[int, tuple[set[str], set[str]]]:
    document = json.loads(path.read_text())
    verdicts = {}
    for server in document["server_scan_results"]:
        port = server["server_location"]["port"]
        results = server.get("scan_result") or {}
        versions, classes = set(), set()
        for key, label in VERSION_KEYS.items():
            attempt = results.get(f"{key}_cipher_suites") or {}
            accepted = ((attempt.get("result") or {}).get("accepted_cipher_suites")) or []
            if accepted:
                versions.add(label)
            for entry in accepted:
                known = suite_by_name(entry["cipher_suite"]["name"])
                if known is not None and not known.tls13:
                    classes.update(c.value for c in known.classes)
        verdicts[port] = (versions, classes)
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--no-sslyze", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    nginx = ensure_nginx()
    sslyze = None if args.no_sslyze else ensure_sslyze()
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        folder = Path(scratch)
        config, layout = write_nginx(folder, args.endpoints)
        server = subprocess.Popen([nginx, "-c", str(config), "-p", str(folder)], stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)
            if server.poll() is not None:
                print("nginx did not start:", server.stderr.read().decode() if server.stderr else "")
                return 1
            return compare(layout, folder, sslyze)
        finally:
            server.terminate()
            server.wait(timeout=10)


def compare(layout: dict[int, str], folder: Path, sslyze: Path | None) -> int:
    count = len(layout)
    command = [sys.executable, "-m", "connector", "scan", *(f"{HOST}:{port}" for port in layout),
               "--resolve", f"{HOST}=127.0.0.1", "--no-http", "--checks", "tls,certificate",
               "--ca-bundle", str(folder / "roots.pem"), "-q", "-o", str(folder / "ours.jsonl"), "--concurrency", "50"]
    our_time, our_connections, our_rss, code = run_measured(command, folder)
    if code not in (0, 1):
        return 1
    our_verdicts = parse_ours(folder / "ours.jsonl")
    rows = [("postern-connector", our_time, our_connections / count, our_rss)]
    matches = None
    if sslyze is not None:
        sslyze_command = [str(sslyze), "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--certinfo",
                          f"--certinfo_ca_file={folder / 'roots.pem'}", f"--json_out={folder / 'sslyze.json'}",
                          "--quiet", *(f"{HOST}:{port}{{127.0.0.1}}" for port in layout)]
        their_time, their_connections, their_rss, code = run_measured(sslyze_command, folder)
        if code != 0:
            return 1
        rows.append(("sslyze " + sslyze_version(sslyze), their_time, their_connections / count, their_rss))
        their_verdicts = parse_sslyze(folder / "sslyze.json")
        matches = 0
        for port, profile in layout.items():
            mine, reference = our_verdicts.get(port), their_verdicts.get(port)
            if mine == reference:
                matches += 1
            else:
                print(f"verdicts differ on port {port} ({profile}): ours={mine} sslyze={reference}")
    print(f"\n{count} TLS endpoints (nginx, {len(PROFILES)} configurations); checks: protocol versions, "
          "weak suite classes, certificate")
    print(f"\n{'tool':24} {'wall s':>8} {'conn/host':>10} {'peak RSS MiB':>13}")
    for name, seconds, per_host, rss in rows:
        print(f"{name:24} {seconds:8.2f} {per_host:10.1f} {rss / 1024:13.1f}")
    if matches is not None:
        ours_row, theirs_row = rows
        print(f"\nsame verdicts as sslyze: {matches}/{count} endpoints")
        print(f"connections: {theirs_row[2] / ours_row[2]:.1f}x fewer (target >= 20x); "
              f"wall time: {theirs_row[1] / ours_row[1]:.1f}x less (target >= 5x)")
    by_profile: dict[str, list[tuple[set[str], set[str]] | None]] = defaultdict(list)
    for port, profile in layout.items():
        by_profile[profile].append(our_verdicts.get(port))
    print("\nour verdict per configuration (accepted versions; accepted weak classes):")
    for profile, verdicts in by_profile.items():
        versions, classes = verdicts[0] or (set(), set())
        print(f"  {profile:13} {sorted(versions)}; {sorted(classes)}")
    return 0 if matches in (None, count) else 1


def sslyze_version(binary: Path) -> str:
    done = subprocess.run([str(binary.parent / "python"), "-m", "pip", "show", "sslyze"], capture_output=True,
                          text=True, check=False)
    found = re.search(r"^Version: (.+)$", done.stdout, re.M)
    return found.group(1) if found else ""


if __name__ == "__main__":
    sys.exit(main())
