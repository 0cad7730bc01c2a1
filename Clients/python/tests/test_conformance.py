"""Protocol/vectors/*.json run against a live server over raw sockets, so that the written protocol and the
server cannot drift apart. The rules are in Protocol/README.md ("Golden vectors"):

- each file is `{"cases": [...]}` (or a bare list of cases) of `{name, send, expect, closes?}`; all cases run
  in file-name order, then case order, against one fresh server, each on a new connection;
- `send` is one line without its newline: a string (its UTF-8 bytes), `{"$latin1": s}` (one byte per character,
  for input that is not UTF-8) or `{"$repeat": s, "count": n, "prefix": p, "suffix": q}`;
- `expect: null` means no reply at all (checked with a following `server.ping` with id `"sentinel"`);
  otherwise the first reply must match: objects as subsets, arrays element by element, numbers by value,
  `"$any"`, `"$string"`, `"$number"`, `{"$unordered": [...]}`, anything else equal;
- `closes: true`: the server closes the connection after replying.
"""

from __future__ import annotations

import json
import socket
from typing import Any, List

import pytest
from _wharf_support import VECTORS, in_ci

from wharf.pytest_plugin import start_server


def load_cases() -> List[Any]:
    files = sorted(VECTORS.glob("*.json")) if VECTORS.is_dir() else []
    if not files:
        return [pytest.param(None, id="no-vectors")]
    params = []
    for f in files:
        doc = json.loads(f.read_text())
        cases = doc["cases"] if isinstance(doc, dict) else doc
        for i, case in enumerate(cases):
            params.append(pytest.param(case, id=f"{f.stem}:{case.get('name', i)}"))
    return params


def line_of(send: Any) -> bytes:
    """The bytes of a case's `send`, with the newline the runner appends."""
    if isinstance(send, str):
        data = send.encode()
    elif isinstance(send, dict) and set(send) == {"$latin1"}:
        data = send["$latin1"].encode("latin-1")  # one byte per character: input that is not UTF-8
    elif isinstance(send, dict) and "$repeat" in send:
        data = (send.get("prefix", "") + send["$repeat"] * int(send["count"]) + send.get("suffix", "")).encode()
    else:
        raise AssertionError(f"unknown send form {send!r}: see Protocol/README.md, Golden vectors")
    return data + b"\n"


def mismatches(expected: Any, actual: Any, path: str = "$") -> List[str]:
    """Where `actual` fails to match `expected` (empty when it matches)."""
    if expected == "$any":
        return []
    if expected == "$string":
        return [] if isinstance(actual, str) else [f"{path}: {actual!r} is not a string"]
    if expected == "$number":
        ok = isinstance(actual, (int, float)) and not isinstance(actual, bool)
        return [] if ok else [f"{path}: {actual!r} is not a number"]
    if isinstance(expected, dict) and set(expected) == {"$unordered"}:
        items = expected["$unordered"]
        if not isinstance(actual, list) or len(actual) != len(items):
            return [f"{path}: expected a list of {len(items)} items in any order, got {actual!r}"]
        remaining = list(actual)
        for want in items:
            hit = next((i for i, a in enumerate(remaining) if not mismatches(want, a)), None)
            if hit is None:
                return [f"{path}: no element matches {want!r} among {remaining!r}"]
            remaining.pop(hit)
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        out: List[str] = []
        for key, want in expected.items():
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                out += mismatches(want, actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected a list of {len(expected)} items, got {actual!r}"]
        return [m for i, (e, a) in enumerate(zip(expected, actual)) for m in mismatches(e, a, f"{path}[{i}]")]
    if expected is None or isinstance(expected, bool) or isinstance(actual, bool):
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
            pass  # the server may close before taking all of an oversized frame; its reply is still read

    def read(self) -> Any:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise AssertionError(f"the server closed the connection without a reply (buffered {self.buf[:200]!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def closed_by_peer(self, within: float = 3.0) -> bool:
        self.sock.settimeout(within)
        try:
            while True:
                if not self.sock.recv(1 << 16):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()


def test_mismatches_follows_the_documented_rules():
    assert mismatches({"a": 1}, {"a": 1, "b": 2}) == []
    assert mismatches({"a": "$string", "b": "$number", "c": "$any"}, {"a": "x", "b": 1.5, "c": None}) == []
    assert mismatches({"$unordered": [1, {"x": 2}]}, [{"x": 2, "y": 3}, 1]) == []
    assert mismatches([1, 2], [2, 1]) and mismatches({"a": None}, {"a": False}) and mismatches(1, True)
    assert mismatches({"a": 1}, {}) == ["$.a: missing"]
    assert mismatches(1, 1.0) == [] and mismatches({"$unordered": [1]}, [1, 2])
    assert line_of({"$latin1": "\u00c3("}) == b"\xc3(\n"
    assert line_of({"$repeat": "ab", "count": 2, "prefix": "<", "suffix": ">"}) == b"<abab>\n"


@pytest.fixture(scope="module")
def vector_server():
    """The vectors' own fresh server (cases may depend on what earlier cases did, e.g. job ids)."""
    s = start_server()
    yield s
    s.stop()


@pytest.mark.parametrize("case", load_cases())
def test_vector(case, request):
    if case is None:
        message = f"no golden vectors in {VECTORS}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    server = request.getfixturevalue("vector_server")
    conn = Conn(server.port)
    try:
        conn.send(line_of(case["send"]))
        if case["expect"] is None:
            conn.send(b'{"jsonrpc":"2.0","method":"server.ping","id":"sentinel"}\n')
            reply = conn.read()
            assert reply.get("id") == "sentinel" and reply.get("result") == "pong", f"expected no reply, got {reply!r}"
            return
        reply = conn.read()
        problems = mismatches(case["expect"], reply)
        assert problems == [], f"{case['name']}: {problems}\nreply: {json.dumps(reply)[:2000]}"
        if case.get("closes"):
            assert conn.closed_by_peer(), f"{case['name']}: the server kept the connection open"
    finally:
        conn.close()
