"""Shared pieces of the hostile-client suite: a well-behaved bystander whose ping latency is measured
while an attack runs, and the server's resident memory read from /proc.

Every test here starts its own `wharf serve` (`wharf.testing.WharfServer`) against a fresh database,
attacks it over real TCP, and asserts two things besides its own: the bystander's ping p99 stays
under `PING_P99_BOUND_MS`, and the server's RSS stays under a bound the test states.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import List, Optional

PING_P99_BOUND_MS = 50.0


def rss_bytes(pid: int) -> int:
    """The resident set size of process `pid`, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def rpc_line(method: str, params: Optional[dict] = None, id: Optional[int] = 1) -> bytes:
    """One JSON-RPC request as a newline-terminated frame."""
    msg: dict = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    if id is not None:
        msg["id"] = id
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


class LineConnection:
    """A blocking TCP connection that reads one reply line at a time (tests only)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def call(self, method: str, params: Optional[dict] = None) -> dict:
        self.send(rpc_line(method, params))
        return json.loads(self.read_line())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Bystander:
    """A well-behaved client pinging on its own connection every `interval` seconds in a thread.

    Use as a context manager around the attack; `p99_ms()` and `max_ms()` afterwards. A ping that
    gets no answer within `timeout` counts as `timeout` and ends the measurement (the server froze).
    """

    def __init__(self, host: str, port: int, token: Optional[str] = None, interval: float = 0.01,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.token = host, port, token
        self.interval, self.timeout = interval, timeout
        self.latencies_ms: List[float] = []
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Bystander":
        self.conn = LineConnection(self.host, self.port, timeout=self.timeout)
        if self.token:
            reply = self.conn.call("session.hello", {"token": self.token})
            assert "result" in reply, reply
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        self.conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                reply = self.conn.call("server.ping")
                if reply.get("result") != "pong":
                    self.errors.append(f"unexpected reply {reply!r}")
            except (OSError, ConnectionError, ValueError) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                self.latencies_ms.append(self.timeout * 1000)
                return
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self._stop.wait(self.interval)

    def p99_ms(self) -> float:
        assert self.latencies_ms, "the bystander made no ping"
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def max_ms(self) -> float:
        return max(self.latencies_ms)

    def assert_healthy(self, bound_ms: float = PING_P99_BOUND_MS, min_pings: int = 20) -> None:
        """The bystander was answered throughout, with p99 under `bound_ms`."""
        assert not self.errors, f"bystander errors: {self.errors[:3]}"
        assert len(self.latencies_ms) >= min_pings, f"only {len(self.latencies_ms)} pings"
        assert self.p99_ms() < bound_ms, (
            f"bystander ping p99 {self.p99_ms():.1f} ms (max {self.max_ms():.1f} ms, "
            f"{len(self.latencies_ms)} pings) is over {bound_ms} ms")
