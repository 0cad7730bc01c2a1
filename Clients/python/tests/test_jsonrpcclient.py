"""An independent JSON-RPC 2.0 implementation (the `jsonrpcclient` package) builds the requests and parses
the replies of a live server, so the server's framing and error objects are checked by code other than ours."""

from __future__ import annotations

import json
import socket

import pytest
from _wharf_support import in_ci

try:
    from jsonrpcclient import Error, Ok, notification_json, parse, parse_json, request, request_json
except ImportError:  # pragma: no cover - depends on the environment
    if in_ci():
        raise
    pytest.skip("jsonrpcclient is not installed (pip install jsonrpcclient)", allow_module_level=True)


class Line:
    """A raw connection: one JSON text per line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def read(self) -> str:
        line = self.file.readline()
        assert line.endswith(b"\n"), "the server closed the connection"
        return line.decode()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def line(server):
    conn = Line(server.port)
    yield conn
    conn.close()


def test_ping_and_info(line):
    req = request("server.ping")
    line.send(json.dumps(req))
    assert parse_json(line.read()) == Ok("pong", req["id"])
    line.send(request_json("server.info"))
    info = parse_json(line.read())
    assert isinstance(info, Ok) and info.result["name"] == "wharf"


def test_named_params(line):
    line.send(request_json("session.hello", params={"client": "jsonrpcclient"}))
    hello = parse_json(line.read())
    assert isinstance(hello, Ok) and hello.result["role"] == "admin"


def test_error_replies_parse_as_errors(line):
    line.send(request_json("no.such.method"))
    unknown = parse_json(line.read())
    assert isinstance(unknown, Error) and unknown.code == -32601 and unknown.data["reason"] == "method_not_found"
    line.send(request_json("server.info", params={"verbose": True}))
    bad = parse_json(line.read())
    assert isinstance(bad, Error) and bad.code == -32602 and bad.data["field"] == "verbose"
    line.send(request_json("session.hello", params=["positional"]))
    positional = parse_json(line.read())
    assert isinstance(positional, Error) and positional.code == -32602


def test_notifications_get_no_reply(line):
    line.send(notification_json("server.ping"))
    line.send(notification_json("no.such.method"))
    req = request("server.ping")
    line.send(json.dumps(req))
    assert parse_json(line.read()) == Ok("pong", req["id"])  # the first reply is the request's


def test_batch_replies_parse_per_request(line):
    reqs = [request("server.ping"), request("no.such"), request("server.info")]
    line.send(json.dumps(reqs))
    replies = json.loads(line.read())
    assert isinstance(replies, list) and len(replies) == 3
    parsed = {r.id: r for r in parse(replies)}
    assert parsed[reqs[0]["id"]] == Ok("pong", reqs[0]["id"])
    assert isinstance(parsed[reqs[1]["id"]], Error) and parsed[reqs[1]["id"]].code == -32601
    assert parsed[reqs[2]["id"]].result["name"] == "wharf"


def test_pipelined_requests_are_matched_by_id(line):
    reqs = [request("server.ping") for _ in range(20)]
    line.send("\n".join(json.dumps(r) for r in reqs))
    replies = [parse_json(line.read()) for _ in reqs]
    assert sorted(r.id for r in replies) == sorted(r["id"] for r in reqs)
    assert all(isinstance(r, Ok) and r.result == "pong" for r in replies)
