"""Runs Protocol/vectors/*.json against a live server over raw sockets and over `POST /rpc` (rules:
Protocol/README.md)."""

from __future__ import annotations

import http.client
import json
import pathlib
import socket

import pytest

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "vectors"


def _bytes(send) -> bytes:
    if isinstance(send, str):
        return send.encode()
    if isinstance(send, dict) and "$latin1" in send:
        return send["$latin1"].encode("latin-1")
    if isinstance(send, dict) and "$repeat" in send:
        return (send.get("prefix", "") + send["$repeat"] * send["count"] + send.get("suffix", "")).encode()
    return json.dumps(send).encode()


def match(expected, actual, path="$"):
    """Returns the problems found matching `actual` against `expected` (empty when it matches)."""
    if expected == "$any":
        return []
    if expected == "$string":
        return [] if isinstance(actual, str) else [f"{path}: expected a string"]
    if expected == "$number":
        ok = isinstance(actual, (int, float)) and not isinstance(actual, bool)
        return [] if ok else [f"{path}: expected a number"]
    if isinstance(expected, dict):
        if "$unordered" in expected:
            items = expected["$unordered"]
            if not isinstance(actual, list) or len(actual) != len(items):
                return [f"{path}: expected {len(items)} items"]
            remaining = list(actual)
            for e in items:
                hit = next((i for i, a in enumerate(remaining) if not match(e, a)), None)
                if hit is None:
                    return [f"{path}: nothing matches {e}"]
                remaining.pop(hit)
            return []
        if not isinstance(actual, dict):
            return [f"{path}: expected an object"]
        problems = []
        for k, v in expected.items():
            if k not in actual:
                problems.append(f"{path}.{k}: missing")
            else:
                problems += match(v, actual[k], f"{path}.{k}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {len(expected)} items"]
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in match(e, a, f"{path}[{i}]")]
    if isinstance(expected, bool) or expected is None:
        return [] if expected is actual else [f"{path}: {actual!r} != {expected!r}"]
    return [] if expected == actual else [f"{path}: {actual!r} != {expected!r}"]


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the server may close before taking an oversized frame

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def closed_by_peer(self) -> bool:
        self.sock.settimeout(2)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def _cases():
    files = sorted(VECTORS.glob("*.json"))
    assert files, f"no vectors in {VECTORS}"
    return [
        pytest.param(case, id=f"{f.stem}:{case['name']}")
        for f in files
        for case in json.loads(f.read_text())["cases"]
    ]


@pytest.mark.parametrize("case", _cases())
def test_vector_over_http(server, case):
    """The same request as the body of `POST /rpc`: the same reply, 204 where TCP sends none, and 413
    where TCP's frame limit closes the connection (the body limit is the frame limit's HTTP twin)."""
    body = _bytes(case["send"])
    if case.get("closes"):
        # Refused on its headers: the server answers before the body and closes.
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
            s.sendall(f"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413 "), reply
        assert b"\r\nConnection: close\r\n" in reply
        return
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("POST", "/rpc", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if case["expect"] is None:
        assert response.status == 204, data
        assert data == b""
        return
    assert response.status == 200, data
    reply = json.loads(data)
    assert match(case["expect"], reply) == [], reply


@pytest.mark.parametrize("case", _cases())
def test_vector(server, case):
    c = Conn(server.port)
    c.send(_bytes(case["send"]) + b"\n")
    if case["expect"] is None:
        c.send(b'{"jsonrpc":"2.0","method":"server.ping","id":"sentinel"}\n')
        assert c.read()["id"] == "sentinel", "expected no reply"
        return
    reply = c.read()
    assert match(case["expect"], reply) == [], reply
    if case.get("closes"):
        assert c.closed_by_peer()
