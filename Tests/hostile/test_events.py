"""Hostile event subscribers: subscribers that never read while events pour in, a subscriber too slow
for a burst, and a subscriber that only listens (it must not be taken for idle).

Events are real: webhook endpoints whose receiver answers 410 Gone are disabled at once, and each
disabling raises an `endpoint.disabled` event; re-enabling them and sending again raises more. Each test
runs beside a `Bystander` and states an RSS bound.
"""

from __future__ import annotations

import http.server
import json
import multiprocessing
import time
from typing import List

import pytest

import wharf
from hostile import Bystander, LineConnection, rpc_line, rss_bytes
from test_connections import MiB, RSSWatch, connections, raw_socket, wait_until
from wharf.testing import WharfServer


class _GoneHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(410)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve_gone(report) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GoneHandler)
    httpd.daemon_threads = True
    report.send(httpd.server_address[1])
    httpd.serve_forever()


class GoneReceiver:
    """An HTTP receiver that answers every POST with 410 Gone (which disables the endpoint at once). It
    runs in a child process, so that its work does not compete with the bystander's thread for this
    interpreter's lock."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_gone, args=(child,), daemon=True)
        self.proc.start()
        assert parent.poll(10)
        self.url = f"http://127.0.0.1:{parent.recv()}/gone"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


@pytest.fixture(scope="module")
def gone():
    r = GoneReceiver()
    yield r
    r.close()


def _witness(host: str, port: int, counter, ready) -> None:
    conn = LineConnection(host, port, timeout=600)
    reply = conn.call("events.subscribe", {"events": ["endpoint.disabled"]})
    ready.send(reply["result"]["events"])
    while True:
        try:
            line = conn.read_line()
        except (OSError, ConnectionError):
            return
        message = json.loads(line)
        if message.get("method") == "event" and message["params"]["type"] == "endpoint.disabled":
            with counter.get_lock():
                counter.value += 1


class Witness:
    """A subscriber that reads everything, in a child process (so that decoding every event does not
    compete with the bystander's thread for this interpreter's lock): counts the events raised."""

    def __init__(self, server: WharfServer) -> None:
        ctx = multiprocessing.get_context("fork")
        self.counter = ctx.Value("i", 0)
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_witness, args=(server.host, server.port, self.counter, child), daemon=True)
        self.proc.start()
        assert parent.poll(10) and parent.recv() == ["endpoint.disabled"]

    @property
    def count(self) -> int:
        return self.counter.value

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


def register_endpoints(admin: wharf.Client, url: str, n: int) -> List[str]:
    """`n` endpoints for `url`, subscribed to the `hostile.tick` webhook event, registered in batches."""
    ids: List[str] = []
    for start in range(0, n, 100):
        calls = [("webhooks.register", {"url": url, "events": ["hostile.tick"]}) for _ in range(start, min(n, start + 100))]
        for r in admin.batch(calls, return_exceptions=False):
            ids.append(r["id"])
    return ids


def disable_rounds(admin: wharf.Client, witness: Witness, ids: List[str], rounds: int) -> int:
    """Sends to every endpoint, waits until each was disabled (one event each), re-enables them; `rounds`
    times. Returns the number of `endpoint.disabled` events raised."""
    raised = 0
    for r in range(rounds):
        admin.webhooks.send({"round": r}, event="hostile.tick")
        raised += len(ids)
        wait_until(lambda: witness.count >= raised, timeout=30, step=0.05)
        for start in range(0, len(ids), 250):
            admin.batch([("webhooks.enable", {"id": i}) for i in ids[start:start + 250]], return_exceptions=False)
    return raised


def hooks_server(*extra: str) -> WharfServer:
    return WharfServer(extra_args=["--allow-private-webhooks", "--webhook-retry-schedule", "0", *extra])


def subscribe_raw(s, events=("endpoint.disabled",)) -> None:
    s.sendall(rpc_line("events.subscribe", {"events": list(events)}))


def test_subscribers_that_never_read_are_bounded_and_cut_off(gone):
    """Ten connections subscribe and never read while endpoints are disabled over and over (the issue's
    case, 500 endpoints: RSS 1.6 GB in 75 s, and the connections outlived the idle timeout). Their
    events queue up to --max-subscriber-queue each, and the write timeout closes them once their sockets
    are full; a reading subscriber hears every event meanwhile. (Rounds of 25 endpoints and a 64 KiB
    write buffer keep the test short and the event source itself gentle with the loop; what fills a
    socket is the same.)"""
    write_timeout_s = 3.0
    with hooks_server(
        "--write-timeout-ms", str(int(write_timeout_s * 1000)), "--max-subscriber-queue", "200",
        "--max-write-buffer-bytes", "65536", "--idle-timeout-ms", "600000",
    ) as server:
        pid = server.proc.pid
        admin = wharf.Client(server.host, server.port, timeout=30)
        ids = register_endpoints(admin, gone.url, 25)
        witness = Witness(server)
        control = LineConnection(server.host, server.port)
        base = rss_bytes(pid)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            before = connections(control)
            deaf = [raw_socket(server.host, server.port, rcvbuf=4096) for _ in range(10)]
            for s in deaf:
                subscribe_raw(s, events=("*",))
            wait_until(lambda: connections(control) == before + 10, timeout=5)
            started = time.monotonic()
            # Enough events (2,400) that no kernel buffering can absorb them: the sockets must fill.
            raised = disable_rounds(admin, witness, ids, rounds=96)
            # Every deaf subscriber is gone within the write timeout of its socket filling up.
            took = wait_until(lambda: connections(control) == before, timeout=write_timeout_s + 8)
            elapsed = time.monotonic() - started
        b.assert_healthy()
        assert witness.count == raised, (witness.count, raised)
        # The server is healthy afterwards and still raises events.
        assert control.call("server.ping")["result"] == "pong"
        for s in deaf:
            s.close()
        witness.close()
        admin.close()
        control.close()
    print(f"{raised} events in {elapsed:.1f} s; deaf subscribers gone {took:.1f} s after the last round; "
          f"RSS {base / MiB:.0f} -> peak {rss.peak / MiB:.0f} MiB")
    assert rss.peak - base < 64 * MiB


def test_a_subscriber_too_slow_for_a_burst_gets_a_counted_gap(gone):
    """A subscriber that stops reading during a burst loses the oldest events beyond its queue, keeps
    its connection, and is told how many it missed, in order: delivered + dropped = raised."""
    queue = 100
    with hooks_server("--max-subscriber-queue", str(queue), "--max-write-buffer-bytes", "65536") as server:
        pid = server.proc.pid
        admin = wharf.Client(server.host, server.port, timeout=30)
        ids = register_endpoints(admin, gone.url, 25)
        witness = Witness(server)
        base = rss_bytes(pid)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            slow = raw_socket(server.host, server.port, rcvbuf=4096)
            subscribe_raw(slow)
            # Enough events (2,400) that the kernel's socket buffers cannot hold them all whatever
            # their sizing, so the server's own queue must overflow.
            raised = disable_rounds(admin, witness, ids, rounds=96)
            # Now it reads everything that is left for it.
            lines: List[dict] = []
            buf = b""
            slow.settimeout(10)

            def accounted() -> int:
                events = [m for m in lines if m.get("method") == "event"]
                got = sum(1 for m in events if m["params"]["type"] == "endpoint.disabled")
                lost = sum(m["params"]["data"]["dropped"] for m in events if m["params"]["type"] == "events.dropped")
                return got + lost

            deadline = time.monotonic() + 20
            while accounted() < raised and time.monotonic() < deadline:
                buf += slow.recv(65536)
                *complete, buf = buf.split(b"\n")
                lines += [json.loads(x) for x in complete if x.strip()]
            slow.sendall(rpc_line("server.ping", id="after"))
            while not any(m.get("id") == "after" for m in lines):
                buf += slow.recv(65536)
                *complete, buf = buf.split(b"\n")
                lines += [json.loads(x) for x in complete if x.strip()]
            slow.close()
        b.assert_healthy()
        witness.close()
        admin.close()
    assert lines[0]["result"] == {"events": ["endpoint.disabled"]}
    events = [m["params"] for m in lines if m.get("method") == "event"]
    gaps = [e for e in events if e["type"] == "events.dropped"]
    got = [e for e in events if e["type"] == "endpoint.disabled"]
    assert gaps, "no gap marker"
    assert all(g["data"]["queueLimit"] == queue and g["data"]["dropped"] > 0 for g in gaps)
    assert len(got) + sum(g["data"]["dropped"] for g in gaps) == raised
    # The queue held at most `queue` events when the reader came back; what reached it before was in flight.
    assert len(got) < raised
    assert rss.peak - base < 64 * MiB


def test_a_subscriber_that_only_listens_is_not_idle(gone):
    """A subscriber that reads but sends nothing outlives the idle timeout and hears a later event; an
    unsubscribed connection that does the same is closed by it."""
    idle_s = 1.0
    with hooks_server("--idle-timeout-ms", str(int(idle_s * 1000))) as server:
        pid = server.proc.pid
        admin = wharf.Client(server.host, server.port, timeout=30)
        ids = register_endpoints(admin, gone.url, 1)
        base = rss_bytes(pid)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            listener = LineConnection(server.host, server.port)
            assert listener.call("events.subscribe", {"events": ["endpoint.disabled"]})["result"]
            quiet = LineConnection(server.host, server.port)
            assert quiet.call("server.ping")["result"] == "pong"
            time.sleep(idle_s * 3)
            closing = json.loads(quiet.read_line())
            assert closing["error"]["data"]["limit"] == "idleTimeoutMs"
            # The admin client's own connection idled out too; it reconnects on its next call.
            admin.webhooks.send({"late": True}, endpoint_id=ids[0])
            note = json.loads(listener.read_line())
            assert note["method"] == "event" and note["params"]["type"] == "endpoint.disabled"
            assert note["params"]["data"]["endpointId"] == ids[0]
            assert listener.call("server.ping")["result"] == "pong"
            listener.close()
            quiet.close()
        b.assert_healthy()
        admin.close()
    assert rss.peak - base < 64 * MiB


def _sse_witness(host: str, http_port: int, counter, ready) -> None:
    """Reads `GET /events?events=job.completed` to the end, counting the events (a child process)."""
    import http.client

    conn = http.client.HTTPConnection(host, http_port, timeout=600)
    conn.request("GET", "/events?events=job.completed")
    response = conn.getresponse()
    ready.send(response.status)
    for line in response.fp:
        if line.startswith(b"event: job.completed"):
            with counter.get_lock():
                counter.value += 1


def complete_jobs(client: wharf.Client, rounds: int, per_round: int = 500) -> int:
    """Enqueues, leases and completes `rounds * per_round` jobs (one `job.completed` event each)."""
    done = 0
    for _ in range(rounds):
        client.call("jobs.enqueueBatch", {"jobs": [{"queue": "burst", "kind": "k"}] * per_round})
        leased = client.call("jobs.lease", {"worker": "w", "queues": ["burst"], "max": per_round})["jobs"]
        client.batch([("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"]}) for j in leased],
                     return_exceptions=False)
        done += len(leased)
    return done


def test_a_slow_event_stream_is_dropped_with_a_notice_and_others_keep_up():
    """A `GET /events` client that stops reading during a burst of 10,000 job events outgrows its queue
    (--max-subscriber-queue 500, more than the 100 events one loop turn raises here): the server ends its stream with an `events.dropped` message (reason
    slow_subscriber, the last id it queued, to resume from) and closes it, while a stream that reads
    gets every event, the bystander's pings stay fast, and RSS stays bounded."""
    with WharfServer(extra_args=["--max-subscriber-queue", "500"]) as server:
        pid = server.proc.pid
        client = wharf.Client(server.host, server.port, timeout=30)
        ctx = multiprocessing.get_context("fork")
        counter = ctx.Value("i", 0)
        parent, child = ctx.Pipe()
        witness = ctx.Process(target=_sse_witness, args=(server.host, server.http_port, counter, child), daemon=True)
        witness.start()
        assert parent.poll(10) and parent.recv() == 200
        base = rss_bytes(pid)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            slow = raw_socket(server.host, server.http_port, rcvbuf=4096)
            slow.sendall(b"GET /events?events=job.completed HTTP/1.1\r\nHost: wharf\r\n\r\n")
            time.sleep(0.2)
            raised = complete_jobs(client, rounds=100, per_round=100)
            wait_until(lambda: counter.value >= raised, timeout=30, step=0.05)
            # Now it reads what is left: some events, then the notice, then the end of the stream.
            slow.settimeout(10)
            data = b""
            while True:
                chunk = slow.recv(65536)
                if not chunk:
                    break
                data += chunk
            slow.close()
        b.assert_healthy()
        assert counter.value == raised, (counter.value, raised)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        messages = [m for m in body.decode().split("\n\n") if m.strip()]
        got = [m for m in messages if m.startswith("id: ")]
        last = messages[-1].split("\n")
        assert last[0] == "event: events.dropped", messages[-1]
        notice = json.loads(last[1][len("data: "):])
        assert notice["reason"] == "slow_subscriber" and notice["queueLimit"] == 500
        # It got part of the burst only, and the notice names the last event it was given.
        assert 0 < len(got) < raised
        assert notice["lastEventId"] == got[-1].split("\n")[0][len("id: "):]
        assert client.call("server.ping") == "pong"
        witness.terminate()
        witness.join(5)
        client.close()
    print(f"{raised} events; the slow stream got {len(got)} before it was dropped; "
          f"RSS {base / MiB:.0f} -> peak {rss.peak / MiB:.0f} MiB")
    assert rss.peak - base < 64 * MiB
