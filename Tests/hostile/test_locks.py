"""Hostile load on locks: ten thousand waiters on one held lock.

A careless tenant pipelines 10,000 `locks.acquire {waitMs}` on one held name over 12 connections. The
server must queue them at a cost linear in their number (bounded RSS, a bystander's pings stay fast),
hand the lock to the first in line within a moment of its release, and drop the waiters of closed
connections, in memory and in `wharf.lock_waiters`, at once.
"""

from __future__ import annotations

import json
import select
import subprocess
import time

from hostile import Bystander, LineConnection, rpc_line, rss_bytes
from wharf.testing import WharfServer

WAITERS = 10_000
CONNECTIONS = 12
SLICE = 5
# The server's resident memory while 10,000 waiters are queued (a debug build idles near 40 MB; before
# waiting was made linear the same load took it to 2.4 GB).
RSS_BOUND = 256 << 20


def psql(conninfo: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
        capture_output=True, text=True, check=True)
    return done.stdout.strip()


def waiter_rows(server: WharfServer) -> int:
    return int(psql(server.database, "select count(*) from wharf.lock_waiters"))


def test_ten_thousand_waiters_on_one_lock():
    with WharfServer() as server:
        pid = server.proc.pid
        owner = LineConnection(server.host, server.port)
        held = owner.call("locks.acquire", {"name": "hot", "holder": "owner", "ttlMs": 120_000})["result"]
        assert held["granted"] is True
        peak_rss = rss_bytes(pid)
        with Bystander(server.host, server.port) as bystander:
            conns = [LineConnection(server.host, server.port, timeout=30) for _ in range(CONNECTIONS)]
            frames = [[] for _ in conns]
            for k in range(WAITERS):
                frames[k % CONNECTIONS].append(rpc_line(
                    "locks.acquire",
                    {"name": "hot", "holder": f"w{k}", "ttlMs": 60_000, "waitMs": 240_000}, id=k))
            started = time.monotonic()
            # Pipelined without waiting for any reply, at about 6,000 requests/s: the line of waiters is
            # what is under test here, not how many requests one read of a socket may take in at once
            # (the connection layer's concern; a debug build takes ~30 us of loop time per request).
            for start in range(0, len(frames[0]), SLICE):
                for c, f in zip(conns, frames):
                    c.send(b"".join(f[start:start + SLICE]))
                time.sleep(0.01)

            # Every waiter is queued, durably, within a few seconds.
            queued = 0
            while time.monotonic() - started < 30:
                queued = owner.call("locks.get", {"name": "hot"})["result"]["waiters"]
                peak_rss = max(peak_rss, rss_bytes(pid))
                if queued == WAITERS:
                    break
                time.sleep(0.1)
            queue_s = time.monotonic() - started
            assert queued == WAITERS, f"only {queued} of {WAITERS} waiters queued after {queue_s:.1f} s"

            # The release hands the lock to the oldest waiter at once, whoever it is.
            released_at = time.monotonic()
            assert owner.call("locks.release", {"name": "hot", "token": held["token"]})["result"]["released"]
            ready, _, _ = select.select([c.sock for c in conns], [], [], 10)
            handoff_s = time.monotonic() - released_at
            assert ready, "no waiter was granted within 10 s of the release"
            conn = next(c for c in conns if c.sock is ready[0])
            reply = json.loads(conn.read_line())
            assert reply["result"]["granted"] is True, reply
            assert reply["result"]["fencingToken"] == held["fencingToken"] + 1
            assert handoff_s < 1.0, f"first grant {handoff_s * 1000:.0f} ms after the release"
            lock = owner.call("locks.get", {"name": "hot"})["result"]
            assert lock["held"] is True and lock["holder"].startswith("w"), lock
            assert lock["fencingToken"] == reply["result"]["fencingToken"]
            assert lock["waiters"] == WAITERS - 1
            peak_rss = max(peak_rss, rss_bytes(pid))

            # The waiters' connections close: their rows go with them.
            closed_at = time.monotonic()
            for c in conns:
                c.close()
            rows = waiter_rows(server)
            while rows > 0 and time.monotonic() - closed_at < 10:
                time.sleep(0.05)
                rows = waiter_rows(server)
            cleanup_s = time.monotonic() - closed_at
            assert rows == 0, f"{rows} waiter rows remain {cleanup_s:.1f} s after their connections closed"
            assert cleanup_s < 2.0, f"waiter rows took {cleanup_s:.1f} s to go"
            assert owner.call("locks.get", {"name": "hot"})["result"]["waiters"] == 0
            peak_rss = max(peak_rss, rss_bytes(pid))
        print(f"queued {WAITERS} waiters in {queue_s:.2f} s, first grant {handoff_s * 1000:.1f} ms after the "
              f"release, rows gone {cleanup_s * 1000:.0f} ms after close, peak RSS {peak_rss >> 20} MB, "
              f"bystander p99 {bystander.p99_ms():.1f} ms (max {bystander.max_ms():.1f} ms)")
        bystander.assert_healthy()
        assert peak_rss < RSS_BOUND, f"RSS peaked at {peak_rss >> 20} MB"
        owner.close()
