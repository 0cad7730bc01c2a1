"""Hostile input to the parsing layer: objects with very many keys (before authentication, and stored
in a job's `meta` then read back), and malformed frames by the hundred thousand.

Each test asserts its own outcome, that a bystander's ping p99 stays under 50 ms meanwhile, and that
the server's RSS stays under a stated bound.
"""

from __future__ import annotations

import itertools
import json
import string
import time

from hostile import Bystander, LineConnection, rss_bytes
from wharf.testing import WharfServer

TOKEN = "secret"
SERVER_ARGS = ["--token", f"admin:{TOKEN}"]
ALPHABET = string.ascii_letters + string.digits


def wide_object(keys: int) -> bytes:
    """`{"aaa":0,"aab":0,...}` with `keys` distinct three-character keys: 8 bytes a key."""
    names = ("".join(t) for t in itertools.product(ALPHABET, repeat=3))
    return b"{" + b",".join(b'"%s":0' % n.encode() for n in itertools.islice(names, keys)) + b"}"


# Linear parsing still costs time per byte: a debug build spends a few hundred ms on one 1 MB
# line, a release build a few tens. Before the fix one such line froze the loop for 23.7 s (release),
# so the bystander's worst ping is bounded too, generously enough for a debug build.
MAX_PING_MS = 3000.0


def keep_pinging(b: Bystander, pings: int, timeout: float = 30.0) -> None:
    """Waits until the bystander has made `pings` pings in all: a few stalls must stay under 1%."""
    deadline = time.monotonic() + timeout
    while len(b.latencies_ms) < pings and not b.errors and time.monotonic() < deadline:
        time.sleep(0.05)


def test_wide_objects_before_hello_do_not_stall_others():
    # One ~1 MB line with 125,000 keys, then three ~476 KB lines of 59,500 keys from a connection that
    # never says hello: before the fix each took seconds (23.7 s for the first) with the loop frozen.
    first = wide_object(125_000) + b"\n"
    assert 990_000 < len(first) < 1 << 20
    params = wide_object(59_500)
    others = [
        b'{"jsonrpc":"2.0","id":%d,"method":"jobs.enqueue","params":%s}\n' % (i, params) for i in range(3)
    ]
    assert all(470_000 < len(line) < 490_000 for line in others)
    with WharfServer(extra_args=SERVER_ARGS) as server:
        attacker = LineConnection(server.host, server.port, timeout=30)
        with Bystander(server.host, server.port, token=TOKEN) as b:
            time.sleep(0.5)
            started = time.monotonic()
            attacker.send(first)
            reply = json.loads(attacker.read_line())
            assert reply["error"]["code"] == -32600, reply  # an object, but not a request
            for line in others:
                attacker.send(line)
            for i in range(3):
                reply = json.loads(attacker.read_line())
                assert reply["error"]["code"] == -32001, reply  # parsed, then refused: no session
            attack_s = time.monotonic() - started
            keep_pinging(b, 500)
        attacker.close()
        rss = rss_bytes(server.proc.pid)
    assert attack_s < 8.0, f"four wide lines took {attack_s:.1f} s to answer"
    b.assert_healthy(min_pings=500)
    assert b.max_ms() < MAX_PING_MS, f"a ping waited {b.max_ms():.0f} ms"
    assert rss < 200 << 20, f"RSS {rss >> 20} MiB"


def test_job_meta_with_50000_keys_is_stored_and_read_back_quickly():
    # Stored JSON is read back with the same parser: before the fix every jobs.get of this job froze
    # the server for seconds.
    meta = {name: i for i, name in enumerate(itertools.islice(
        ("".join(t) for t in itertools.product(ALPHABET, repeat=3)), 50_000))}
    with WharfServer(extra_args=SERVER_ARGS) as server:
        client = LineConnection(server.host, server.port, timeout=30)
        assert "result" in client.call("session.hello", {"token": TOKEN})
        with Bystander(server.host, server.port, token=TOKEN) as b:
            time.sleep(0.5)
            reply = client.call("jobs.enqueue", {"queue": "wide", "kind": "k", "meta": meta})
            assert "result" in reply, str(reply)[:300]
            job_id = reply["result"]["id"]
            started = time.monotonic()
            rounds = 3
            for _ in range(rounds):
                got = client.call("jobs.get", {"id": job_id})
                assert got["result"]["meta"] == meta
            per_get_s = (time.monotonic() - started) / rounds
            keep_pinging(b, 500)  # four stalls: one enqueue, three reads
        rss = rss_bytes(server.proc.pid)
        client.close()
    assert per_get_s < 2.0, f"jobs.get of a 50,000-key meta took {per_get_s:.2f} s"
    b.assert_healthy(min_pings=500)
    assert b.max_ms() < MAX_PING_MS, f"a ping waited {b.max_ms():.0f} ms"
    assert rss < 200 << 20, f"RSS {rss >> 20} MiB"


def test_numbers_that_would_change_are_refused_naming_the_field():
    # Before: 1e400 was stored as null and 99999999999999999999999999 as 1e+26, silently.
    bad = ["1e400", "-1e400", "99999999999999999999999999", "1e-400", "0.10000000000000000001"]
    good = {"0.1": 0.1, "1e300": 1e300, "-9223372036854775808": -9223372036854775808, "1.50": 1.5}
    with WharfServer(extra_args=SERVER_ARGS) as server:
        c = LineConnection(server.host, server.port)
        assert "result" in c.call("session.hello", {"token": TOKEN})
        for i, text in enumerate(bad):
            c.send(b'{"jsonrpc":"2.0","id":%d,"method":"jobs.enqueue","params":{"queue":"n","kind":"k",'
                   b'"payload":{"list":[1,{"n":%s}]}}}\n' % (i, text.encode()))
            reply = json.loads(c.read_line())
            assert reply["error"]["code"] == -32602, (text, reply)
            assert reply["error"]["data"]["field"] == "payload.list[1].n", (text, reply)
        for text, value in good.items():
            c.send(b'{"jsonrpc":"2.0","id":1,"method":"jobs.enqueue","params":{"queue":"n","kind":"k",'
                   b'"payload":{"n":%s}}}\n' % text.encode())
            reply = json.loads(c.read_line())
            job = c.call("jobs.get", {"id": reply["result"]["id"]})["result"]
            assert job["payload"]["n"] == value, (text, job["payload"])
        listed = c.call("jobs.list", {"queue": "n"})["result"]
        assert len(listed["jobs"]) == len(good), listed
        c.close()


def test_a_frame_of_exactly_the_limit_is_taken_with_or_without_cr():
    limit = 4096
    with WharfServer(extra_args=["--max-frame-bytes", str(limit)]) as server:
        def frame(size: int) -> bytes:
            head = b'{"jsonrpc":"2.0","id":1,"method":"server.ping","params":{"pad":"'
            tail = b'"}}'
            return head + b"x" * (size - len(head) - len(tail)) + tail

        for size, ending, taken in [
            (limit - 1, b"\n", True), (limit - 1, b"\r\n", True), (limit, b"\n", True), (limit, b"\r\n", True),
            (limit + 1, b"\n", False), (limit + 1, b"\r\n", False),
        ]:
            c = LineConnection(server.host, server.port)
            line = frame(size)
            assert len(line) == size
            c.send(line + ending)
            reply = json.loads(c.read_line())
            if taken:
                # server.ping refuses unknown params, but only after the frame was read and parsed.
                assert reply.get("error", {}).get("data", {}).get("limit") != "frameBytes", (size, ending, reply)
                assert reply["id"] == 1, (size, ending, reply)
            else:
                assert reply["error"]["data"]["limit"] == "frameBytes", (size, ending, reply)
            c.close()


MALFORMED = [
    b"{bad\n",  # parse error
    b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}\n',  # invalid UTF-8 in a string
    b'[1,{"jsonrpc":"1.0","id":2,"method":"m"},"x"]\n',  # a batch of invalid items
]


def send_burst(conn: LineConnection, frames_per_kind: int) -> int:
    """Sends `frames_per_kind` of each malformed frame, interleaved, and reads every reply (in bulk:
    this thread must not hog the interpreter the bystander's thread shares)."""
    conn.send(b"".join(MALFORMED) * frames_per_kind)
    expected = len(MALFORMED) * frames_per_kind
    received = conn.buf
    while received.count(b"\n") < expected:
        chunk = conn.sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        received += chunk
    lines = received.split(b"\n")
    conn.buf = lines.pop()
    assert len(lines) == expected
    # Parse errors and invalid UTF-8 get one error each, an invalid batch one error per item.
    assert received.count(b'"error"') == frames_per_kind * 5, received[:300]
    return expected


def send_round(conn: LineConnection, frames: int) -> int:
    """`frames` malformed frames in bursts of 150: small enough that a debug build answers a burst
    in well under the bystander's bound, so what is measured is memory, not a flood's stall."""
    sent = 0
    while sent < frames:
        sent += send_burst(conn, 50)
        time.sleep(0.001)  # lets the bystander's thread run (one interpreter lock)
    return sent


def test_malformed_frames_memory_flat():
    # Issue: RSS grew ~7-15 bytes per malformed frame and never came back (40 rounds of 50k frames:
    # 48.5 -> 61.8 MB). After warm-up rounds (allocator and buffers at their working size), 150,000
    # more frames must not move RSS by 1 MiB or more, i.e. 7 bytes a frame; some rounds use a fresh
    # connection. RSS bound: 150 MiB.
    per_round, warmup, measured = 15_000, 2, 10
    with WharfServer(extra_args=SERVER_ARGS) as server:
        pid = server.proc.pid
        with Bystander(server.host, server.port, token=TOKEN) as b:
            conn = LineConnection(server.host, server.port, timeout=30)
            for _ in range(warmup):
                send_round(conn, per_round)
            baseline = rss_bytes(pid)
            samples = []
            frames = 0
            for r in range(measured):
                if r % 4 == 3:
                    conn.close()
                    conn = LineConnection(server.host, server.port, timeout=30)
                frames += send_round(conn, per_round)
                samples.append(rss_bytes(pid))
            conn.close()
    growth = max(samples[-3:]) - baseline
    assert frames >= 150_000
    assert growth < 1 << 20, (
        f"RSS grew {growth / 1024:.0f} KiB over {frames} malformed frames "
        f"({growth / frames:.1f} bytes a frame): {[round(s / 2**20, 1) for s in samples]} MiB")
    assert max(samples) < 150 << 20, f"RSS peaked at {max(samples) >> 20} MiB"
    b.assert_healthy()
