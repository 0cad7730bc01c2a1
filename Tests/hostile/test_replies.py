"""Huge replies: lists and leases over large payloads are capped by bytes, so one request (or eight
connections that never read) cannot make the server build replies of any size.

The data is modest (60 jobs with 1 MB payloads, 60 MB in all): without the cap one `jobs.list
{limit: 1000}` built a 60 MB reply (the issue measured 120 MB and RSS 99 -> 442 MB); with the default
`--max-reply-bytes` of 1 MiB each reply holds one of these jobs.
"""

from __future__ import annotations

import json
import threading
import time

from hostile import Bystander, LineConnection, rpc_line, rss_bytes
from wharf.testing import WharfServer

MIB = 1 << 20
PAYLOAD_CHARS = 1_000_000
JOBS = 60
# The default --max-reply-bytes. Every job here is smaller than it, so no reply may pass it (only a
# single job larger than the budget is sent whole, alone).
REPLY_BOUND = MIB


class PeakRSS:
    """Samples the server's RSS every 20 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(0.02)


def fill(server: WharfServer, queue: str) -> list:
    """Enqueues JOBS jobs with 1 MB payloads (pipelined ten at a time); returns their ids in order."""
    conn = LineConnection(server.host, server.port, timeout=30)
    ids = []
    try:
        for first in range(0, JOBS, 10):
            conn.send(b"".join(
                rpc_line("jobs.enqueue", {"queue": queue, "kind": "big", "payload": {"n": i, "blob": "x" * PAYLOAD_CHARS}},
                         id=i)
                for i in range(first, min(first + 10, JOBS))))
            replies = [json.loads(conn.read_line()) for _ in range(first, min(first + 10, JOBS))]
            for reply in sorted(replies, key=lambda r: r["id"]):
                assert "result" in reply, reply
                ids.append(reply["result"]["id"])
    finally:
        conn.close()
    return ids


def read_reply(conn: LineConnection) -> tuple:
    """The next reply line's size in bytes and its parsed message.

    Reads into a bytearray and looks for the newline only in what arrived, so that reading a
    megabytes-long line costs this process (and the bystander thread sharing its GIL) little.
    """
    buf = bytearray(conn.buf)
    conn.buf = b""
    searched = 0
    while True:
        end = buf.find(b"\n", searched)
        if end >= 0:
            break
        searched = len(buf)
        chunk = conn.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    conn.buf = bytes(buf[end + 1:])
    return end, json.loads(bytes(buf[:end]))


def test_a_huge_list_is_paged_by_bytes():
    with WharfServer() as server:
        ids = fill(server, "big")
        baseline = rss_bytes(server.proc.pid)
        conn = LineConnection(server.host, server.port, timeout=30)
        seen, sizes, cursor = [], [], None
        with Bystander(server.host, server.port) as bystander, PeakRSS(server.proc.pid) as rss:
            for _ in range(JOBS + 1):
                params = {"queue": "big", "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                conn.send(rpc_line("jobs.list", params))
                size, reply = read_reply(conn)
                sizes.append(size)
                seen += [j["id"] for j in reply["result"]["jobs"]]
                cursor = reply["result"]["nextCursor"]
                if cursor is None:
                    break
        conn.close()
        assert seen == sorted(ids, key=int, reverse=True), "the pages cover every job once, newest first"
        assert max(sizes) <= REPLY_BOUND, f"largest page {max(sizes)} bytes"
        assert len(sizes) == JOBS, f"{len(sizes)} pages for {JOBS} 1 MB jobs"
        growth = rss.peak - baseline
        assert growth < 64 * MIB, f"RSS grew {growth / MIB:.0f} MiB (baseline {baseline / MIB:.0f} MiB)"
        bystander.assert_healthy()


def test_a_huge_lease_is_capped_by_bytes():
    with WharfServer() as server:
        fill(server, "big")
        baseline = rss_bytes(server.proc.pid)
        conn = LineConnection(server.host, server.port, timeout=30)
        leased, sizes = 0, []
        with Bystander(server.host, server.port) as bystander, PeakRSS(server.proc.pid) as rss:
            while True:
                conn.send(rpc_line("jobs.lease", {"queues": ["big"], "max": 1000, "worker": "w"}))
                size, reply = read_reply(conn)
                jobs = reply["result"]["jobs"]
                if not jobs:
                    break
                sizes.append(size)
                leased += len(jobs)
                assert len(jobs) == 1
        conn.close()
        assert leased == JOBS
        assert max(sizes) <= REPLY_BOUND, f"largest lease reply {max(sizes)} bytes"
        growth = rss.peak - baseline
        assert growth < 64 * MIB, f"RSS grew {growth / MIB:.0f} MiB (baseline {baseline / MIB:.0f} MiB)"
        bystander.assert_healthy()


def test_eight_non_readers_asking_for_everything():
    """Eight connections each ask for the whole list three times and do not read. Whatever the
    per-connection output bound does, each reply is capped, so the server holds at most 8 x 3 capped
    replies instead of 8 x 3 x 60 MB."""
    with WharfServer() as server:
        fill(server, "big")
        baseline = rss_bytes(server.proc.pid)
        conns = [LineConnection(server.host, server.port, timeout=30) for _ in range(8)]
        with Bystander(server.host, server.port) as bystander, PeakRSS(server.proc.pid) as rss:
            for c in conns:
                c.send(b"".join(rpc_line("jobs.list", {"queue": "big", "limit": 1000}, id=i) for i in range(3)))
            time.sleep(3)
        # Now read them: every reply is one capped page.
        for c in conns:
            for _ in range(3):
                size, reply = read_reply(c)
                assert size <= REPLY_BOUND, f"a reply of {size} bytes"
                assert len(reply["result"]["jobs"]) == 1
                assert reply["result"]["nextCursor"] is not None
            c.close()
        growth = rss.peak - baseline
        assert growth < 160 * MIB, f"RSS grew {growth / MIB:.0f} MiB (baseline {baseline / MIB:.0f} MiB)"
        bystander.assert_healthy()
