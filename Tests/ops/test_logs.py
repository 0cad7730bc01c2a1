"""`wharf serve`'s logs: `--log-format json`, and no secret in either format.

A real server with tokens (a file, the environment, a SHA-256 digest), TLS, a database password and
webhook endpoints (whose `whsec_` secrets cross the wire) is driven over TLS and over HTTP with bearer
tokens, wrong tokens included, at log level trace; then the whole log is searched for every secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from typing import List

import pytest
from ops_support import self_signed
from wharf import Client
from wharf.errors import WharfError
from wharf.testing import WharfServer, fresh_database

ADMIN = "admin-token-secret-1"
PRODUCER = "producer-token-secret-2"  # from WHARF_TOKENS
HASHED = "worker-token-secret-3"  # configured only as its SHA-256
WRONG = "wrong-token-secret-4"
DB_PASSWORD = "db-password-secret-5"


def with_password(conninfo: str) -> str:
    if conninfo.startswith("postgres"):
        return conninfo + ("&" if "?" in conninfo else "?") + f"password={DB_PASSWORD}"
    return conninfo + f" password={DB_PASSWORD}"


def run_traffic(server: WharfServer, context: ssl.SSLContext) -> List[str]:
    """Calls that carry every kind of secret; returns the webhook secrets the server handed out."""
    secrets: List[str] = []
    with Client(server.host, server.port, token=ADMIN, ssl=context) as admin:
        for i in range(2):
            r = admin.call("webhooks.register", {"url": f"http://127.0.0.1:9/hook-{i}", "description": "logs"})
            assert r["secret"].startswith("whsec_")
            secrets.append(r["secret"])
            sent = admin.call("webhooks.send", {"endpointId": r["id"], "payload": {"n": i}})
            assert sent
        rotated = admin.call("webhooks.rotateSecret", {"id": r["id"], "graceMs": 0})
        secrets.append(rotated["secret"])
        admin.call("jobs.enqueue", {"queue": "logs", "kind": "k", "payload": {"token": ADMIN}})
    with Client(server.host, server.port, token=PRODUCER, ssl=context) as producer:
        assert producer.connect().role == "producer"
    with Client(server.host, server.port, token=HASHED, ssl=context) as worker:
        assert worker.connect().role == "worker"
        worker.call("jobs.lease", {"queues": ["logs"], "max": 1, "worker": "w"})
    with Client(server.host, server.port, token=WRONG, ssl=context, retry=None) as wrong:
        with pytest.raises(WharfError):
            wrong.connect()
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "webhooks.list"}).encode()
    # With TLS on, the HTTP listener serves HTTPS.
    https = server.http_url.replace("http://", "https://", 1)
    for token, status in [(ADMIN, 200), (WRONG, 401)]:
        req = urllib.request.Request(https + "/rpc", data=body, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=context) as r:
                assert r.status == status
        except urllib.error.HTTPError as e:
            assert e.code == status
    return secrets


def secret_forms(secret: str) -> List[str]:
    """A secret and the encodings a log might carry it in."""
    forms = [secret, hashlib.sha256(secret.encode()).hexdigest()]
    if secret.startswith("whsec_"):
        raw = base64.b64decode(secret[len("whsec_"):])
        forms += [secret[len("whsec_"):], raw.hex()]
    return forms


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_is_ever_logged(tmp_path, monkeypatch, fmt):
    tls = self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin:{ADMIN}\nworker:sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}\n")
    monkeypatch.setenv("WHARF_TOKENS", f"producer:{PRODUCER}")
    context = ssl.create_default_context(cafile=tls["cert"])
    args = ["--token-file", str(tokens), "--tls-cert", tls["cert"], "--tls-key", tls["key"],
            "--allow-private-webhooks", "--log-level", "trace", "--log-format", fmt]
    with WharfServer(database=with_password(fresh_database()), extra_args=args, ssl=context) as server:
        webhook_secrets = run_traffic(server, context)
        time.sleep(0.5)  # the webhook attempts to the closed port fail and are logged
        log = server.log_text()
    # The run did log, at trace level, what it did: requests with their fields.
    assert "webhooks.register" in log and "session.hello" in log, log[-2000:]
    for secret in [ADMIN, PRODUCER, HASHED, WRONG, DB_PASSWORD, *webhook_secrets]:
        for form in secret_forms(secret):
            assert form not in log, f"{form!r} (from {secret!r}) is in the {fmt} log"


def test_json_log_lines_have_time_level_message_replica_and_request_fields(tmp_path):
    args = ["--log-level", "debug", "--log-format", "json"]
    with WharfServer(extra_args=args) as server:
        with server.client() as c:
            c.call("jobs.enqueue", {"queue": "q", "kind": "k"})
            replica = c.call("server.info")["replicaId"]
            with pytest.raises(WharfError):
                c.call("jobs.get", {"id": "not-an-id"})
        time.sleep(0.2)
        lines = [line for line in server.log_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert {"time", "level", "message", "replica"} <= set(record), line
        assert record["replica"] == replica, line
        assert record["level"] in ("trace", "debug", "info", "notice", "warning", "error", "critical"), line
        assert time.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ"), line
        records.append(record)
    assert any(r["message"] == "listening" and "field.replica" not in r for r in records), lines
    requests = [r for r in records if r["message"] == "request"]
    enqueue = [r for r in requests if r["method"] == "jobs.enqueue"]
    assert enqueue and enqueue[0]["session"] and enqueue[0]["role"] == "admin" and "code" not in enqueue[0], requests
    assert float(enqueue[0]["ms"]) >= 0
    failed = [r for r in requests if r["method"] == "jobs.get"]
    assert failed and failed[0]["code"] == "-32602", requests


def test_text_stays_the_default_and_a_bad_format_is_refused():
    with WharfServer(extra_args=["--log-level", "info"]) as server:
        time.sleep(0.1)
        log = server.log_text()
    assert "listening" in log and not log.lstrip().startswith("{"), log
    done = subprocess.run([os.environ["WHARF_BIN"], "serve", "--log-format", "xml"], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "--log-format must be text or json" in done.stderr, done.stderr
