"""The HTTP listener (Protocol/http.md): probes, POST /rpc with bearer tokens and roles, /openrpc.json and
rpc.discover on both transports, and /metrics after a scripted workload, read with prometheus_client's
text parser."""

from __future__ import annotations

import http.client
import json
import pathlib
import socket
import subprocess
import tempfile
import time
from types import SimpleNamespace
from typing import Any, Dict, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families
from wharf.testing import WharfServer, free_port, wharf_bin

OPENRPC = pathlib.Path(__file__).resolve().parent.parent / "openrpc.json"


def request(server: WharfServer, method: str, path: str, body: Optional[bytes] = None,
            headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def rpc(server: WharfServer, method: str, params: Optional[dict] = None, token: Optional[str] = None,
        id: Any = 1) -> Tuple[int, Any]:
    message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, _, data = request(server, "POST", "/rpc", json.dumps(message).encode(), headers)
    return status, json.loads(data) if data else None


def tcp_call(server: WharfServer, method: str) -> dict:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += s.recv(1 << 20)
    return json.loads(data)


def scrape(server: WharfServer) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels), parsed by prometheus_client."""
    status, headers, data = request(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(data.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> Optional[float]:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_probes_and_methods_not_allowed(server):
    status, headers, data = request(server, "GET", "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(data)["status"] == "ok"
    status, _, data = request(server, "GET", "/readyz")
    ready = json.loads(data)
    assert status == 200 and ready["status"] == "ready", ready
    assert ready["checks"]["database"]["ok"] is True and ready["checks"]["migrations"]["ok"] is True
    status, _, data = request(server, "HEAD", "/healthz")
    assert status == 200 and data == b""
    status, headers, data = request(server, "POST", "/healthz", b"{}")
    assert status == 405 and json.loads(data)["allow"] == ["GET", "HEAD"]
    status, _, data = request(server, "GET", "/rpc")
    assert status == 405 and json.loads(data)["reason"] == "method_not_allowed"
    status, _, data = request(server, "GET", "/nope")
    assert status == 404 and json.loads(data)["reason"] == "not_found"


def test_readyz_is_503_without_a_database():
    """A server whose database does not answer: /healthz is 200 (the loop answers), /readyz is 503 and
    says which checks fail."""
    port, http_port = free_port(), free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [wharf_bin(), "serve", "--database", f"host=127.0.0.1 port={free_port()} user=nobody dbname=none",
         "--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http_port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        s = SimpleNamespace(http_port=http_port)
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, data = request(s, "GET", "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "no /healthz within 20 s"
                time.sleep(0.1)
        assert status == 200
        status, _, data = request(s, "GET", "/readyz")
        body = json.loads(data)
        assert status == 503 and body["status"] == "not_ready", body
        assert body["checks"]["migrations"]["ok"] is False
        assert body["checks"]["database"]["ok"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_openrpc_document_and_rpc_discover_on_both_transports(server):
    status, headers, data = request(server, "GET", "/openrpc.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(data) == json.loads(OPENRPC.read_text())
    status, reply = rpc(server, "rpc.discover")
    assert status == 200 and reply["result"] == json.loads(OPENRPC.read_text())
    assert "rpc.discover" in [m["name"] for m in reply["result"]["methods"]]
    assert tcp_call(server, "rpc.discover")["result"] == reply["result"]


def test_batches_and_notifications_over_http(server):
    batch = [
        {"jsonrpc": "2.0", "method": "server.ping", "id": 1},
        {"jsonrpc": "2.0", "method": "server.ping"},
        {"jsonrpc": "2.0", "method": "no.such", "id": 2},
    ]
    status, _, data = request(server, "POST", "/rpc", json.dumps(batch).encode())
    assert status == 200
    replies = {r["id"]: r for r in json.loads(data)}
    assert replies[1]["result"] == "pong" and replies[2]["error"]["code"] == -32601 and len(replies) == 2
    status, _, data = request(server, "POST", "/rpc", b'{"jsonrpc":"2.0","method":"server.ping"}')
    assert status == 204 and data == b""
    status, reply = rpc(server, "events.subscribe", {"events": ["*"]})
    assert status == 200 and reply["error"]["data"]["reason"] == "transport"


@pytest.fixture(scope="module")
def secured():
    s = WharfServer(extra_args=["--token", "producer:ptok", "--token", "reader:rtok", "--token", "worker:wtok"])
    yield s
    s.stop()


def test_bearer_tokens_give_their_roles(secured):
    # No header: only the open methods.
    assert rpc(secured, "server.ping") == (200, {"jsonrpc": "2.0", "id": 1, "result": "pong"})
    status, reply = rpc(secured, "jobs.list", {"queue": "a"})
    assert status == 200 and reply["error"]["code"] == -32001
    # A reader reads and may not enqueue.
    status, reply = rpc(secured, "jobs.list", {"queue": "a"}, token="rtok")
    assert "result" in reply, reply
    status, reply = rpc(secured, "jobs.enqueue", {"queue": "a", "kind": "k"}, token="rtok")
    assert reply["error"]["code"] == -32002 and reply["error"]["data"]["reason"] == "forbidden"
    # A producer enqueues; a worker may not.
    status, reply = rpc(secured, "jobs.enqueue", {"queue": "a", "kind": "k"}, token="ptok")
    assert "result" in reply, reply
    status, reply = rpc(secured, "jobs.enqueue", {"queue": "a", "kind": "k"}, token="wtok")
    assert reply["error"]["code"] == -32002
    # Unknown tokens and other schemes are 401.
    for auth in ["Bearer nope", "Basic cHJvZHVjZXI6cHRvaw==", "Bearer"]:
        status, headers, data = request(
            secured, "POST", "/rpc", b'{"jsonrpc":"2.0","method":"server.ping","id":1}', {"Authorization": auth})
        assert status == 401 and headers["www-authenticate"] == "Bearer", auth
        assert json.loads(data)["error"]["code"] == -32001


def test_metrics_count_a_scripted_workload(server):
    queue = "metrics_q"
    for i in range(7):
        status, reply = rpc(server, "jobs.enqueue", {"queue": queue, "kind": "k", "payload": {"i": i}})
        assert "result" in reply, reply
    status, reply = rpc(server, "jobs.enqueueBatch",
                        {"jobs": [{"queue": queue, "kind": "k"} for _ in range(3)]})
    assert "result" in reply, reply
    status, reply = rpc(server, "jobs.enqueue", {"queue": queue, "kind": "k", "priority": "high"})
    assert reply["error"]["code"] == -32602
    # A worker on one keep-alive connection: the connection is its session (Protocol/http.md).
    worker = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)

    def call(method: str, params: dict) -> dict:
        worker.request("POST", "/rpc", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                        "params": params}).encode())
        return json.loads(worker.getresponse().read())

    leased = call("jobs.lease", {"queues": [queue], "max": 4, "worker": "w", "waitMs": 0})["result"]["jobs"]
    assert len(leased) == 4
    for job in leased[:2]:
        assert "result" in call("jobs.complete", {"id": job["id"], "leaseToken": job["leaseToken"]})
    tcp_call(server, "server.ping")

    samples = scrape(server)
    assert value(samples, "wharf_jobs", queue=queue, state="available") == 6
    assert value(samples, "wharf_jobs", queue=queue, state="running") == 2
    assert value(samples, "wharf_queue_oldest_available_age_seconds", queue=queue) >= 0
    ok = dict(transport="http", code="ok")
    assert value(samples, "wharf_rpc_requests_total", method="jobs.enqueue", **ok) == 7
    assert value(samples, "wharf_rpc_requests_total", method="jobs.enqueueBatch", **ok) == 1
    assert value(samples, "wharf_rpc_requests_total", method="jobs.complete", **ok) == 2
    assert value(samples, "wharf_rpc_requests_total", transport="http", method="jobs.enqueue", code="-32602") == 1
    assert value(samples, "wharf_rpc_requests_total", transport="tcp", method="server.ping", code="ok") >= 1
    assert value(samples, "wharf_rpc_request_duration_seconds_count", method="jobs.enqueue") == 8
    assert value(samples, "wharf_rpc_connections", transport="http") >= 1
    assert value(samples, "wharf_rpc_received_bytes_total", transport="http") > 0
    assert value(samples, "wharf_rpc_sent_bytes_total", transport="tcp") > 0
    assert value(samples, "wharf_pg_pool_connections") == 4
    assert value(samples, "wharf_pg_pool_connections_ready") == 4
    assert value(samples, "wharf_pg_statement_duration_seconds_count") > 0
    assert value(samples, "wharf_pg_pool_reconnects_total") == 0

    # The database-derived values are reused for a second, then read again.
    rpc(server, "jobs.enqueue", {"queue": queue, "kind": "k"})
    again = scrape(server)
    if value(again, "wharf_metrics_snapshot_age_seconds") > 0:
        assert value(again, "wharf_jobs", queue=queue, state="available") == 6
    time.sleep(1.1)
    later = scrape(server)
    assert value(later, "wharf_metrics_snapshot_age_seconds") == 0
    assert value(later, "wharf_jobs", queue=queue, state="available") == 7
    assert value(later, "wharf_jobs", queue=queue, state="running") == 2

    # The worker's connection closes: its two running jobs go back to the queue.
    worker.close()
    time.sleep(1.2)
    last = scrape(server)
    assert value(last, "wharf_jobs", queue=queue, state="available") == 9
    assert value(last, "wharf_jobs", queue=queue, state="running") is None


def test_metrics_report_schedules_and_their_fires(server):
    status, reply = rpc(server, "cron.upsert", {"name": "metrics_every_second", "everyMs": 1000,
                                                "target": {"job": {"queue": "metrics_cron", "kind": "tick"}}})
    assert "result" in reply, reply
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server)
        if (value(samples, "wharf_cron_fires") or 0) >= 2:
            break
        assert time.monotonic() < deadline, "no two fires counted within 10 s"
        time.sleep(0.5)
    assert value(samples, "wharf_cron_schedules", state="active") == 1
    assert value(samples, "wharf_cron_missed") == 0
    assert value(samples, "wharf_cron_fire_lag_max_seconds") >= 0
    # Each fire made a job in the schedule's queue.
    assert value(samples, "wharf_jobs", queue="metrics_cron", state="available") >= 2
    status, reply = rpc(server, "cron.remove", {"name": "metrics_every_second"})
    assert "result" in reply, reply


def test_pipelined_replies_keep_request_order_when_answers_finish_out_of_order(server):
    """A long poll (jobs.lease waiting 400 ms), a database round trip (/readyz) and instant answers
    (/healthz), pipelined on one connection: the replies come back in request order."""
    lease = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "jobs.lease",
                        "params": {"queues": ["order_q"], "worker": "w", "waitMs": 400}}).encode()
    requests = [
        b"POST /rpc HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(lease), lease),
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\n\r\n",
        b"GET /nope HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    ]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        s.sendall(b"".join(requests))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert time.monotonic() - started >= 0.4
    bodies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")[1:])
                          if k.lower() == b"content-length"))
        bodies.append((int(head.split()[1]), json.loads(rest[:length])))
        data = rest[length:]
    assert [status for status, _ in bodies] == [200, 200, 200, 404, 200]
    assert bodies[0][1] == {"jsonrpc": "2.0", "id": 7, "result": {"jobs": []}}
    assert bodies[1][1]["status"] == "ok" and bodies[2][1]["status"] == "ready"
