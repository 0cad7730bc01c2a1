"""Drives the server with an independent JSON-RPC implementation (the jsonrpcclient package)."""

from __future__ import annotations

import json
import socket

import pytest

jsonrpcclient = pytest.importorskip("jsonrpcclient")
from jsonrpcclient import Error, Ok, parse, request  # noqa: E402


def roundtrip(port: int, message) -> object:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(65536)
        return json.loads(buf.split(b"\n", 1)[0])


def test_ping_and_info(server):
    req = request("server.ping")
    pong = parse(roundtrip(server.port, req))
    assert pong == Ok("pong", req["id"])
    info = parse(roundtrip(server.port, request("server.info")))
    assert isinstance(info, Ok)
    assert info.result["name"] == "wharf"


def test_errors_parse_as_errors(server):
    unknown = parse(roundtrip(server.port, request("no.such.method")))
    assert isinstance(unknown, Error)
    assert unknown.code == -32601
    bad = parse(roundtrip(server.port, request("jobs.enqueue", params={"queue": "q"})))
    assert isinstance(bad, Error)
    assert bad.code == -32602
    assert bad.data["field"] == "kind"


def test_enqueue_and_lease(server):
    params = {"queue": "ind", "kind": "k", "payload": [1, 2]}
    enq = parse(roundtrip(server.port, request("jobs.enqueue", params=params)))
    assert isinstance(enq, Ok) and enq.result["duplicate"] is False
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(json.dumps(request("jobs.lease", params={"queues": ["ind"], "worker": "py"})).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(65536)
        leased = parse(json.loads(buf.split(b"\n", 1)[0]))
        assert isinstance(leased, Ok)
        job = leased.result["jobs"][0]
        assert job["payload"] == [1, 2]
        done = request("jobs.complete", params={"id": job["id"], "leaseToken": job["leaseToken"]})
        s.sendall(json.dumps(done).encode() + b"\n")
        buf = buf.split(b"\n", 1)[1]
        while b"\n" not in buf:
            buf += s.recv(65536)
        assert parse(json.loads(buf.split(b"\n", 1)[0])).result["state"] == "completed"
