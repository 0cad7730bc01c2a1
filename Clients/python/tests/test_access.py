"""Least privilege seen from outside: what receivers answered (`responseBody`) is shown to the roles
that own endpoints, not to every reader; and a role's forbidden calls are refused over the wire."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

import wharf
from wharf.pytest_plugin import start_server

TOKENS = {"admin": "a-secret", "producer": "p-secret", "worker": "w-secret", "reader": "r-secret"}


@pytest.fixture(scope="module")
def receiver():
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b"internal detail: sk_live_123"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server():
    args = ["--allow-private-webhooks"]
    for role, secret in TOKENS.items():
        args += ["--token", f"{role}:{secret}"]
    s = start_server(extra_args=args)
    yield s
    s.stop()


def client(server, role: str) -> wharf.Client:
    return wharf.Client(server.host, server.port, token=TOKENS[role], timeout=10)


def test_response_bodies_only_for_endpoint_owners(server, receiver):
    with client(server, "admin") as admin:
        endpoint = admin.webhooks.register(receiver)["id"]
    with client(server, "producer") as producer:
        producer.webhooks.send({"n": 1}, endpoint_id=endpoint)
        deadline = time.monotonic() + 10
        while True:
            d = producer.webhooks.deliveries(endpoint)["deliveries"]
            if d and d[0]["state"] == "succeeded":
                break
            assert time.monotonic() < deadline, d
            time.sleep(0.05)
        assert d[0]["attemptLog"][-1]["responseBody"] == "internal detail: sk_live_123"
    for role in ("reader", "worker"):
        with client(server, role) as c:
            seen = c.webhooks.deliveries(endpoint)["deliveries"][0]
            assert seen["state"] == "succeeded" and seen["attemptLog"], seen
            assert all("responseBody" not in a for a in seen["attemptLog"]), (role, seen)


@pytest.mark.parametrize(
    "role,method,params",  # params do not matter: the role is checked first
    [
        ("worker", "cron.upsert", {"name": "x", "every": "1h", "queue": "q", "kind": "k"}),
        ("producer", "webhooks.register", {"url": "http://127.0.0.1:9/"}),
        ("producer", "queues.configure", {"queue": "q"}),
        ("producer", "locks.acquire", {"name": "l", "ttlMs": 1000}),
        ("reader", "jobs.enqueue", {"queue": "q", "kind": "k"}),
    ],
)
def test_forbidden_calls(server, role, method, params):
    with client(server, role) as c:
        with pytest.raises(wharf.WharfError) as e:
            c.call(method, params)
        assert e.value.code == -32002, e.value
