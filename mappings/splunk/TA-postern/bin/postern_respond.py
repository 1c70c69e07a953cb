"""TA-postern's custom alert action: every result row of the alert, signed, to the Postern connector.

Splunk runs ``postern_respond.py --execute`` with the alert's payload (payload_format = json) on stdin. The rows
come from ``results_file`` (gzip CSV: all of them, where the built-in Webhook sends only the first). The signing
secret is read through the REST API with the payload's ``session_key`` from storage/passwords (realm TA-postern,
username postern_respond), so no secret sits in a .conf file; only over https, since the request carries the session
key and the answer the secret. The body is signed with Standard Webhooks
(webhook-id stable across retries, so the receiver deduplicates them), and sent with retries on connection
errors, 429 and 5xx, honouring Retry-After. Standard library only: it runs in Splunk's own Python 3.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REALM = "TA-postern"
USERNAME = "postern_respond"
RETRYABLE = {429, 500, 502, 503, 504}


def log(message: str) -> None:
    sys.stderr.write(f"postern_respond: {message}\n")  # lands in splunkd.log / _internal


def read_rows(results_file: str) -> list[dict[str, str]]:
    with gzip.open(results_file, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Splunk's internal multivalue columns (__mv_*) are not fields of the event
    return [{key: value for key, value in row.items() if not key.startswith("__mv_")} for row in rows]


def read_secret(server_uri: str, session_key: str) -> str:
    # The request carries the session key and the answer the secret in clear: both go over TLS or not at all.
    management = urllib.parse.urlsplit(server_uri)
    if management.scheme != "https" or not management.netloc:
        raise ValueError(f"splunkd's management URI {server_uri!r} is not https: the session key and the signing "
                         "secret are never sent in clear (enableSplunkdSSL in server.conf)")
    query = urllib.parse.urlencode({"output_mode": "json", "count": "0"})
    request = urllib.request.Request(
        f"https://{management.netloc}{management.path.rstrip('/')}/servicesNS/nobody/{REALM}/storage/passwords?{query}",
        headers={"Authorization": f"Splunk {session_key}"})
    context = ssl.create_default_context()
    if management.hostname in ("127.0.0.1", "localhost"):
        context.check_hostname = False  # splunkd's own management port, on this host
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        entries = json.load(response).get("entry", [])
    for entry in entries:
        content = entry.get("content", {})
        if content.get("realm") == REALM and content.get("username") == USERNAME:
            return str(content["clear_password"])
    raise LookupError(f"no secret in storage/passwords for realm {REALM}, user {USERNAME}")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret[len("whsec_"):] + "==") if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def send(url: str, body: bytes, secret: str, message_id: str, *, timeout: float, retries: int) -> int:
    delay = 1.0
    for attempt in range(retries + 1):
        timestamp = int(time.time())  # re-signed per attempt: the receiver's window is 5 minutes
        headers = {"Content-Type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, message_id, timestamp, body),
                   "User-Agent": "TA-postern/postern_respond"}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"),
                                        timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRYABLE or attempt == retries:
                log(f"the connector answered {exc.code}: {exc.read()[:300]!r}")
                return int(exc.code)
            retry_after = exc.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
        except (urllib.error.URLError, OSError) as exc:
            if attempt == retries:
                log(f"cannot reach {url}: {exc}")
                return 0
            wait = delay
        time.sleep(min(wait, 60.0))
        delay *= 2
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--execute":
        log("run by Splunk with --execute")
        return 2
    payload = json.load(sys.stdin)
    configuration = payload.get("configuration", {})
    url = configuration.get("url")
    if not url:
        log("param.url is not set: configure the connector's callback URL on the alert")
        return 3
    try:
        rows = read_rows(payload["results_file"])
        secret = read_secret(payload["server_uri"], payload["session_key"])
    except (OSError, KeyError, LookupError, ValueError) as exc:
        log(f"cannot prepare the callback: {exc}")
        return 4
    body = json.dumps({"sid": payload.get("sid", ""), "search_name": payload.get("search_name"),
                       "app": payload.get("app", ""), "owner": payload.get("owner", ""),
                       "results_link": payload.get("results_link", ""), "results": rows}).encode()
    message_id = "msg_" + hashlib.sha256(f"{payload.get('sid', '')}|{len(rows)}".encode()).hexdigest()[:32]
    status = send(url, body, secret, message_id, timeout=float(configuration.get("timeout", 10)),
                  retries=int(configuration.get("retries", 4)))
    if 200 <= status < 300:
        log(f"sent {len(rows)} row(s) of {payload.get('sid')}: {status}")
        return 0
    return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv))
