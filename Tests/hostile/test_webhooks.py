"""Hostile webhook receivers: what a receiver answers, or does not, must never stall other endpoints,
grow the server's memory, or keep a transfer going longer than needed.

Each test starts its own `wharf serve` with short webhook timeouts, drives scripted HTTP receivers on
127.0.0.1 (one asyncio loop in a thread), and asserts its own outcome, a bystander's ping p99, and a
bound on the server's RSS.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from typing import Awaitable, Callable, Dict, List, Optional, Tuple

from hostile import Bystander, LineConnection, rpc_line, rss_bytes
from wharf.testing import WharfServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> Optional[Tuple[Dict[str, str], bytes]]:
    """One HTTP/1.1 request: lowercased headers and the body; None when the peer closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    headers: Dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


def response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body)


class Receivers:
    """HTTP receivers on 127.0.0.1, each a listener with its own behaviour, on one asyncio loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: List[asyncio.AbstractServer] = []
        self.posts: Dict[int, List[Tuple[float, Dict[str, str], bytes]]] = {}
        self.open_now: Dict[int, int] = {}
        self.open_max: Dict[int, int] = {}
        self.lock = threading.Lock()

    def listen(self, handler: Handler) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = writer.get_extra_info("sockname")[1]
            with self.lock:
                self.open_now[port] = self.open_now.get(port, 0) + 1
                self.open_max[port] = max(self.open_max.get(port, 0), self.open_now[port])
            try:
                await handler(reader, writer, port)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                with self.lock:
                    self.open_now[port] -= 1
                writer.close()

        async def start() -> int:
            server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
            self.servers.append(server)
            return server.sockets[0].getsockname()[1]

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result()

    def record(self, port: int, headers: Dict[str, str], body: bytes) -> None:
        with self.lock:
            self.posts.setdefault(port, []).append((time.monotonic(), headers, body))

    def count(self, port: int) -> int:
        with self.lock:
            return len(self.posts.get(port, []))

    async def deliveries(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int):
        """The deliveries a connection carries, each recorded; registration pings are answered 200."""
        while (req := await read_request(reader)) is not None:
            headers, body_in = req
            if b"webhook.ping" in body_in:
                writer.write(response(200, b"ok"))
                await writer.drain()
                continue
            self.record(port, headers, body_in)
            yield headers, body_in

    def answering(self, status: int, body: bytes, extra: bytes = b"") -> int:
        """A receiver that answers every request with `status` and `body` (keep-alive)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
            async for _ in self.deliveries(reader, writer, port):
                writer.write(response(status, body, extra))
                await writer.drain()

        return self.listen(handle)

    def hanging(self) -> int:
        """A receiver that answers the registration ping, then accepts every delivery and never answers."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
            async for _ in self.deliveries(reader, writer, port):
                await reader.read()  # until the server gives up and closes
                return

        return self.listen(handle)

    def endless(self, chunk: int = 16384, every_s: float = 0.01) -> Tuple[int, List[dict]]:
        """A receiver that answers a delivery 200 and then streams a body that never ends, `chunk`
        bytes every `every_s`; per delivery it notes the bytes written and how long until the peer
        closed."""
        streams: List[dict] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
            async for _ in self.deliveries(reader, writer, port):
                s = {"started": time.monotonic(), "bytes": 0, "closed": None}
                streams.append(s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                block = b"x" * chunk
                try:
                    while time.monotonic() - s["started"] < 60:
                        writer.write(block)
                        await writer.drain()
                        s["bytes"] += chunk
                        if reader.at_eof():
                            break
                        await asyncio.sleep(every_s)
                except ConnectionError:
                    pass
                s["closed"] = time.monotonic()
                return

        return self.listen(handle), streams

    def close(self) -> None:
        async def stop() -> None:
            for s in self.servers:
                s.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def call_all(conn: LineConnection, calls: List[Tuple[str, dict]]) -> List[dict]:
    """Pipelines `calls` in one write and returns the replies in request order."""
    conn.send(b"".join(rpc_line(m, p, id=i) for i, (m, p) in enumerate(calls)))
    replies: Dict[int, dict] = {}
    while len(replies) < len(calls):
        r = json.loads(conn.read_line())
        replies[r["id"]] = r
    return [replies[i] for i in range(len(calls))]


def register(conn: LineConnection, port: int, path: str = "/") -> str:
    r = conn.call("webhooks.register", {"url": f"http://127.0.0.1:{port}{path}"})
    assert "result" in r, r
    return r["result"]["id"]


def deliveries(conn: LineConnection, endpoint: str) -> List[dict]:
    r = conn.call("webhooks.deliveries", {"endpointId": endpoint, "limit": 1000})
    assert "result" in r, r
    return r["result"]["deliveries"]


def measure_at_least(bystander: Bystander, seconds: float) -> None:
    """Lets the bystander ping for at least `seconds` since it started, so its p99 means something."""
    pings = list(bystander.latencies_ms)
    left = seconds - (sum(pings) / 1000 + len(pings) * bystander.interval)
    if left > 0:
        time.sleep(left)


def wait_until(fn: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    return fn()


def test_nul_bytes_and_invalid_utf8_from_receivers_never_wedge_deliveries():
    """Receivers answering with NUL bytes and invalid UTF-8 in bodies and headers: every delivery,
    theirs and a healthy endpoint's, finishes at once with the right outcome; the stored bodies are
    sanitised."""
    receivers = Receivers()
    ok = receivers.answering(200, b"ok")
    err = receivers.answering(500, b"err\0or")
    nul = receivers.answering(200, b"ok\0")
    bad_utf8 = receivers.answering(200, b"caf\xc3 \xff\xfe\0")
    junk_headers = receivers.answering(503, b"busy", extra=b"Retry-After: \xff\xfe1\r\nX-Junk: \xc3\x28\r\n")
    nul_header = receivers.answering(200, b"ok", extra=b"X-Nul: a\0b\r\n")
    args = ["--allow-private-webhooks", "--webhook-retry-schedule", "0,1s", "--webhook-timeout", "3s",
            "--webhook-connect-timeout", "1s"]
    try:
        with WharfServer(extra_args=args) as server:
            conn = LineConnection(server.host, server.port)
            ids = {name: register(conn, port) for name, port in
                   [("ok", ok), ("err", err), ("nul", nul), ("bad_utf8", bad_utf8), ("junk", junk_headers),
                    ("nul_header", nul_header)]}
            with Bystander(server.host, server.port) as bystander:
                sends = [("webhooks.send", {"endpointId": ids["ok"], "payload": {"n": i}}) for i in range(10)]
                sends += [("webhooks.send", {"endpointId": ids[k], "payload": {"k": k}})
                          for k in ("err", "nul", "bad_utf8", "junk", "nul_header")]
                for r in call_all(conn, sends):
                    assert "result" in r, r

                def settled() -> bool:
                    return all(d["state"] in ("succeeded", "failed")
                               for e in ids.values() for d in deliveries(conn, e))

                # Finished well before a lease (connect + timeout + 10 s) could run out and resend.
                assert wait_until(settled, 8), {k: [d["state"] for d in deliveries(conn, e)] for k, e in ids.items()}
                measure_at_least(bystander, 1.5)
                rss = rss_bytes(server.proc.pid)
            bystander.assert_healthy()
            assert rss < 200 << 20, f"RSS {rss >> 20} MiB"

            ok_log = deliveries(conn, ids["ok"])
            assert [d["state"] for d in ok_log] == ["succeeded"] * 10
            assert receivers.count(ok) == 10, "each healthy message was POSTed once"
            [d] = deliveries(conn, ids["err"])
            assert d["state"] == "failed" and d["attempts"] == 2 and receivers.count(err) == 2
            assert [a["responseBody"] for a in d["attemptLog"]] == ["err\ufffdor"] * 2
            assert [a["status"] for a in d["attemptLog"]] == [500, 500]
            [d] = deliveries(conn, ids["nul"])
            assert d["state"] == "succeeded" and d["attemptLog"][0]["responseBody"] == "ok\ufffd"
            [d] = deliveries(conn, ids["bad_utf8"])
            assert d["state"] == "succeeded"
            assert d["attemptLog"][0]["responseBody"] == "caf\ufffd \ufffd\ufffd\ufffd"
            [d] = deliveries(conn, ids["junk"])
            assert d["state"] == "failed" and [a["status"] for a in d["attemptLog"]] == [503, 503]
            # curl refuses a header holding a NUL: a network error, recorded and retried like any.
            [d] = deliveries(conn, ids["nul_header"])
            assert d["state"] == "failed" and [a["errorKind"] for a in d["attemptLog"]] == ["network", "network"]
            # Health counts the failures that were recorded.
            h = conn.call("webhooks.health", {"id": ids["err"]})["result"]
            assert h["consecutiveFailures"] == 2 and h["state"] == "failing"
            conn.close()
    finally:
        receivers.close()


def test_hanging_receivers_do_not_starve_a_healthy_endpoint():
    """200 endpoints that accept deliveries and never answer, 10 messages each (the flood is queued
    first, and its attempts left hanging), while a healthy endpoint gets a message every 50 ms: the
    healthy ones arrive at once, no hanging endpoint holds more than its share of connections, and
    the server stays responsive while hundreds of attempts hang."""
    receivers = Receivers()
    hanging = [receivers.hanging() for _ in range(200)]
    healthy = receivers.answering(200, b"ok")
    args = ["--allow-private-webhooks", "--webhook-timeout", "20s", "--webhook-connect-timeout", "1s"]
    try:
        with WharfServer(extra_args=args) as server:
            conn = LineConnection(server.host, server.port, timeout=30)
            regs = call_all(conn, [("webhooks.register", {"url": f"http://127.0.0.1:{p}/"}) for p in hanging])
            hanging_ids = [r["result"]["id"] for r in regs]
            healthy_id = register(conn, healthy)
            flood = [("webhooks.send", {"endpointId": e, "payload": {"i": i}}) for i in range(10) for e in hanging_ids]
            for k in range(0, len(flood), 100):
                assert all("result" in r for r in call_all(conn, flood[k:k + 100]))

            def hanging_now() -> int:
                with receivers.lock:
                    return sum(len(receivers.posts.get(p, [])) for p in hanging)

            # The hanging attempts are under way (half the replica's 1,000 slots, by the fairness rule).
            assert wait_until(lambda: hanging_now() >= 450, 15), hanging_now()
            time.sleep(0.3)
            with Bystander(server.host, server.port) as bystander:
                sent: Dict[int, float] = {}
                for i in range(30):
                    sent[i] = time.monotonic()
                    r = conn.call("webhooks.send", {"endpointId": healthy_id, "payload": {"i": i}})
                    assert "result" in r, r
                    time.sleep(0.05)
                arrived = wait_until(lambda: receivers.count(healthy) == 30, 15)
                rss = rss_bytes(server.proc.pid)
            bystander.assert_healthy()
            assert rss < 300 << 20, f"RSS {rss >> 20} MiB"
            assert arrived, f"only {receivers.count(healthy)} of 30 healthy deliveries arrived"
            latencies = sorted(at - sent[json.loads(body)["data"]["i"]] for at, _, body in receivers.posts[healthy])
            p50, worst = statistics.median(latencies), latencies[-1]
            assert p50 < 1.0 and worst < 3.0, f"healthy send-to-arrival p50 {p50:.2f} s, max {worst:.2f} s"
            assert hanging_now() <= 500, "at most half the slots go to endpoints that already have one in flight"
            assert max(receivers.open_max[p] for p in hanging) <= 16
            conn.close()
    finally:
        receivers.close()


def test_an_endless_response_body_is_cut_after_the_stored_prefix():
    """Receivers that answer 200 and then stream a body for ever: each delivery succeeds as soon as
    the stored 4 KiB prefix is in, the transfer is closed at once, and a healthy endpoint is served."""
    receivers = Receivers()
    slow, slow_streams = receivers.endless(chunk=4096, every_s=0.01)
    fast, fast_streams = receivers.endless(chunk=65536, every_s=0)
    healthy = receivers.answering(200, b"ok")
    args = ["--allow-private-webhooks", "--webhook-timeout", "10s", "--webhook-connect-timeout", "1s"]
    try:
        with WharfServer(extra_args=args) as server:
            conn = LineConnection(server.host, server.port)
            slow_id, fast_id, healthy_id = register(conn, slow), register(conn, fast), register(conn, healthy)
            with Bystander(server.host, server.port) as bystander:
                sends = [("webhooks.send", {"endpointId": e, "payload": {"i": i}})
                         for i in range(8) for e in (slow_id, fast_id, healthy_id)]
                assert all("result" in r for r in call_all(conn, sends))

                def done() -> bool:
                    return all(d["state"] == "succeeded" for e in (slow_id, fast_id, healthy_id)
                               for d in deliveries(conn, e)) and receivers.count(healthy) == 8

                assert wait_until(done, 5), [d["state"] for d in deliveries(conn, slow_id)]
                measure_at_least(bystander, 1.5)
                rss = rss_bytes(server.proc.pid)
            bystander.assert_healthy()
            assert rss < 200 << 20, f"RSS {rss >> 20} MiB"
            for e in (slow_id, fast_id):
                for d in deliveries(conn, e):
                    [a] = d["attemptLog"]
                    assert a["status"] == 200 and a["responseBody"] == "x" * 4096
                    assert a["latencyMs"] < 2000, a["latencyMs"]
            assert wait_until(lambda: all(s["closed"] for s in slow_streams + fast_streams), 3)
            for s in slow_streams:
                assert s["closed"] - s["started"] < 2.0, s
            conn.close()
    finally:
        receivers.close()
