"""The event stream (Protocol/events.md): every event type reaches `GET /events` (Server-Sent Events) and
`events.subscribe` once, in order per subject; filters by type and subject; `Last-Event-ID` resumes from
the replica's window, and an id the window cannot serve gets an `events.reset` notice; an endpoint that
lists `job.dead` gets a webhook when a job dies."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import pytest
import wharf
from wharf.testing import WharfServer

ALL_TYPES = {
    "job.completed", "job.failed", "job.dead", "job.cancelled", "job.rescued",
    "schedule.fired", "schedule.skipped", "schedule.missed", "lock.granted", "lock.expired",
    "endpoint.disabled", "endpoint.enabled", "delivery.failed",
}


class Receiver:
    """An HTTP receiver on a thread that answers every POST with `status` and keeps the bodies."""

    def __init__(self, status: int) -> None:
        self.bodies: List[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()


class SSEReader:
    """Reads `GET /events` on a thread: each message as {id, event, data} (comments counted apart)."""

    def __init__(self, server: WharfServer, query: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.messages: List[Dict[str, Any]] = []
        self.comments = 0
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        self.conn.request("GET", "/events?" + query, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.closed = False
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        message: Dict[str, Any] = {}
        try:
            while True:
                line = self.response.fp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line == "":
                    if message:
                        message["data"] = json.loads(message["data"])
                        self.messages.append(message)
                    message = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    field, _, value = line.partition(": ")
                    message[field] = value
        except (OSError, ValueError):
            pass
        self.closed = True

    def events(self) -> List[Dict[str, Any]]:
        return [m for m in self.messages if "id" in m]

    def close(self) -> None:
        self.conn.close()


class TCPSubscriber:
    """A connection that called events.subscribe, reading notifications on a thread."""

    def __init__(self, server: WharfServer, params: dict) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=60)
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe",
                                      "params": params}).encode() + b"\n")
        self.file = self.sock.makefile("rb")
        self.reply = json.loads(self.file.readline())
        self.events: List[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.file:
                m = json.loads(line)
                if m.get("method") == "event":
                    self.events.append(m["params"])
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.sock.close()


def wait_for(predicate, timeout: float = 15.0, what=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out {what()}"
        time.sleep(0.05)


def subject_of(event_type: str, data: dict) -> str:
    """The thing an event is about, for the order check: a job, a schedule, a lock, an endpoint."""
    if event_type.startswith("job."):
        return "job:" + data["jobId"]
    if event_type.startswith("schedule."):
        return "schedule:" + data["schedule"]
    if event_type.startswith("lock."):
        return "lock:" + data["lock"]
    return "endpoint:" + data["endpointId"]


@pytest.fixture(scope="module")
def receivers():
    ok, gone = Receiver(200), Receiver(410)
    yield ok, gone
    ok.close()
    gone.close()


def events_server(*extra: str) -> WharfServer:
    return WharfServer(extra_args=["--allow-private-webhooks", "--webhook-retry-schedule", "0", *extra])


def run_workload(client: wharf.Client, gone_url: str) -> Dict[str, Any]:
    """One of everything: returns the ids it made."""
    ids: Dict[str, Any] = {}
    ids["completed"] = client.call("jobs.enqueue", {"queue": "ev", "kind": "k"})["id"]
    job = client.call("jobs.lease", {"worker": "w", "queues": ["ev"]})["jobs"][0]
    client.call("jobs.complete", {"id": job["id"], "leaseToken": job["leaseToken"]})
    ids["dead"] = client.call("jobs.enqueue", {"queue": "ev", "kind": "k", "maxAttempts": 2})["id"]
    for _ in range(2):
        job = client.call("jobs.lease", {"worker": "w", "queues": ["ev"], "waitMs": 5000})["jobs"][0]
        client.call("jobs.fail", {"id": job["id"], "leaseToken": job["leaseToken"], "error": "no", "retryInMs": 0})
    ids["cancelled"] = client.call("jobs.enqueue", {"queue": "ev2", "kind": "k"})["id"]
    client.call("jobs.cancel", {"id": ids["cancelled"]})
    ids["rescued"] = client.call("jobs.enqueue", {"queue": "ev3", "kind": "k"})["id"]
    client.call("jobs.lease", {"worker": "w", "queues": ["ev3"], "leaseMs": 1000})
    # A schedule that fires every second, whose first fire is still running when the second comes
    # (overlap skip), and one whose missed fires are counted.
    client.call("cron.upsert", {"name": "ev-tick", "everyMs": 1000,
                                "target": {"job": {"queue": "ev-cron", "kind": "tick"}}, "overlap": "skip"})
    client.call("locks.acquire", {"name": "ev-lock", "holder": "me", "ttlMs": 500})
    endpoint = client.call("webhooks.register", {"url": gone_url, "events": ["ev.hook"]})["id"]
    ids["endpoint"] = endpoint
    client.call("webhooks.send", {"endpointId": endpoint, "payload": {"x": 1}})
    return ids


def test_every_event_reaches_both_transports_once_in_order_per_subject(receivers):
    ok, gone = receivers
    with events_server() as server:
        client = wharf.Client(server.host, server.port, timeout=30)
        sse = SSEReader(server, "events=*")
        assert sse.status == 200 and sse.headers["content-type"].startswith("text/event-stream")
        tcp = TCPSubscriber(server, {"events": ["*"]})
        assert tcp.reply["result"] == {"events": ["*"]}
        hook = client.call("webhooks.register", {"url": ok.url, "events": ["job.dead"]})["id"]
        time.sleep(1.5)  # endpoints' event lists are read each second
        ids = run_workload(client, gone.url)
        # The schedule's first fire leaves a running job (leased, never finished): the next fire skips.
        job = client.call("jobs.lease", {"worker": "w", "queues": ["ev-cron"], "waitMs": 5000})["jobs"][0]
        wait_for(lambda: any(e["event"] == "schedule.skipped" for e in sse.events()))
        client.call("cron.remove", {"name": "ev-tick"})
        client.call("jobs.complete", {"id": job["id"], "leaseToken": job["leaseToken"]})
        wait_for(lambda: any(e["event"] == "endpoint.disabled" for e in sse.events()))
        client.call("webhooks.enable", {"id": ids["endpoint"]})
        # A schedule with no missed window: each fire, claimed a little after its time, is missed.
        client.call("cron.upsert", {"name": "ev-missed", "everyMs": 1000, "missedWindowMs": 0,
                                    "missed": "skip", "target": {"job": {"queue": "ev-cron2", "kind": "t"}}})
        wanted = ALL_TYPES
        wait_for(lambda: wanted <= {e["event"] for e in sse.events()}, timeout=20,
                 what=lambda: f"missing {wanted - {e['event'] for e in sse.events()}}")
        wait_for(lambda: wanted <= {e["type"] for e in tcp.events}, timeout=5)
        client.call("cron.remove", {"name": "ev-missed"})
        time.sleep(0.5)
        wait_for(lambda: any(b["type"] == "job.dead" for b in ok.bodies), timeout=15)

        sse_events = [(e["event"], e["data"]["data"], e["id"]) for e in sse.events()]
        tcp_events = [(e["type"], e["data"], e["id"]) for e in tcp.events]
        # Both transports saw the same events, with the same ids, in the same order.
        assert [x[2] for x in sse_events] == [x[2] for x in tcp_events]
        assert [x[0] for x in sse_events] == [x[0] for x in tcp_events]
        for transport in (sse_events, tcp_events):
            # Each event once: ids are unique and grow by one.
            numbers = [int(i.rsplit("-", 1)[1]) for _, _, i in transport]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            by_subject: Dict[str, List[str]] = {}
            for t, data, _ in transport:
                by_subject.setdefault(subject_of(t, data), []).append(t)
            assert by_subject["job:" + ids["completed"]] == ["job.completed"]
            assert by_subject["job:" + ids["dead"]] == ["job.failed", "job.dead"]
            assert by_subject["job:" + ids["cancelled"]] == ["job.cancelled"]
            assert by_subject["job:" + ids["rescued"]] == ["job.rescued"]
            assert by_subject["lock:ev-lock"] == ["lock.granted", "lock.expired"]
            assert by_subject["endpoint:" + ids["endpoint"]] == ["delivery.failed", "endpoint.disabled",
                                                                 "endpoint.enabled"]
            assert by_subject["schedule:ev-tick"][0] == "schedule.fired"
            assert "schedule.skipped" in by_subject["schedule:ev-tick"]
            assert "schedule.missed" in by_subject["schedule:ev-missed"]
        data = {t: d for t, d, _ in tcp_events}
        assert data["job.failed"]["queue"] == "ev" and "nextRunAt" in data["job.failed"]
        assert data["job.dead"] == {"jobId": ids["dead"], "queue": "ev", "reason": "failed"}
        assert data["job.rescued"] == {"jobId": ids["rescued"], "queue": "ev3", "reason": "lease_expired"}
        assert data["lock.granted"]["holder"] == "me" and data["lock.expired"]["holder"] == "me"
        assert data["delivery.failed"]["status"] == 410 and data["delivery.failed"]["attempts"] == 1
        # The endpoint that lists job.dead got the webhook, once; the other events did not reach it.
        dead_hooks = [b for b in ok.bodies if b["type"] == "job.dead"]
        assert len(dead_hooks) == 1 and dead_hooks[0]["data"]["jobId"] == ids["dead"]
        assert {b["type"] for b in ok.bodies} <= {"webhook.ping", "job.dead"}
        assert hook
        sse.close()
        tcp.close()
        client.close()


def test_filters_by_type_prefix_and_subject():
    with events_server() as server:
        client = wharf.Client(server.host, server.port, timeout=30)
        sse = SSEReader(server, "events=job.*&queues=a")
        tcp = TCPSubscriber(server, {"events": ["job.completed", "job.cancelled"], "queues": ["b"]})
        assert tcp.reply["result"] == {"events": ["job.cancelled", "job.completed"], "queues": ["b"]}
        for q in ("a", "b", "c"):
            jid = client.call("jobs.enqueue", {"queue": q, "kind": "k"})["id"]
            client.call("jobs.cancel", {"id": jid})
        client.call("locks.acquire", {"name": "l", "holder": "h", "ttlMs": 60000})
        wait_for(lambda: len(sse.events()) >= 1 and len(tcp.events) >= 1)
        time.sleep(0.5)
        assert [(e["event"], e["data"]["data"]["queue"]) for e in sse.events()] == [("job.cancelled", "a")]
        assert [(e["type"], e["data"]["queue"]) for e in tcp.events] == [("job.cancelled", "b")]
        # Bad filters are refused with the field named.
        bad = TCPSubscriber(server, {"events": ["jo*b"]})
        assert bad.reply["error"]["code"] == -32602 and bad.reply["error"]["data"]["field"] == "events"
        bad.close()
        refused = SSEReader(server, "queues=a")
        assert refused.status == 400
        refused.close()
        sse.close()
        tcp.close()
        client.close()


def test_last_event_id_resumes_from_the_window_and_says_when_it_cannot():
    with events_server("--event-window", "5") as server:
        client = wharf.Client(server.host, server.port, timeout=30)
        first = SSEReader(server, "events=job.cancelled&heartbeatMs=1000")
        jobs = [client.call("jobs.enqueue", {"queue": "r", "kind": "k"})["id"] for _ in range(8)]
        client.call("jobs.cancel", {"id": jobs[0]})
        client.call("jobs.cancel", {"id": jobs[1]})
        wait_for(lambda: len(first.events()) == 2)
        last_id = first.events()[-1]["id"]
        first.close()
        # Missed while away: three events, within the window of five.
        for j in jobs[2:5]:
            client.call("jobs.cancel", {"id": j})
        resumed = SSEReader(server, "events=job.cancelled", {"Last-Event-ID": last_id})
        wait_for(lambda: len(resumed.events()) == 3)
        assert [e["data"]["data"]["jobId"] for e in resumed.events()] == jobs[2:5]
        # A resume inside the window has no notice.
        assert [m for m in resumed.messages if "id" not in m] == []
        resumed.close()
        # Now more than the window passes: the resume says so before the live events.
        for j in jobs[5:8]:
            client.call("jobs.cancel", {"id": j})
        for _ in range(4):
            jid = client.call("jobs.enqueue", {"queue": "r", "kind": "k"})["id"]
            client.call("jobs.cancel", {"id": jid})
        stale = SSEReader(server, "events=job.cancelled", {"Last-Event-ID": last_id})
        wait_for(lambda: len(stale.messages) >= 1)
        notice = stale.messages[0]
        assert notice["event"] == "events.reset" and "id" not in notice
        assert notice["data"]["reason"] == "outside_window" and notice["data"]["window"] == 5
        stale.close()
        foreign = SSEReader(server, "events=job.cancelled", {"Last-Event-ID": "deadbeef-3"})
        wait_for(lambda: len(foreign.messages) >= 1)
        assert foreign.messages[0]["data"]["reason"] == "unknown_id"
        foreign.close()
        client.close()


def test_heartbeat_comments_keep_an_idle_stream_open():
    with events_server() as server:
        sse = SSEReader(server, "events=job.dead&heartbeatMs=1000")
        wait_for(lambda: sse.comments >= 2, timeout=5)
        assert not sse.closed and sse.events() == []
        sse.close()


def test_events_needs_a_token_when_tokens_are_configured():
    with WharfServer(extra_args=["--token", "reader:reader-token"]) as server:
        assert SSEReader(server, "events=*").status == 401
        assert SSEReader(server, "events=*", {"Authorization": "Bearer nope"}).status == 401
        ok = SSEReader(server, "events=*", {"Authorization": "Bearer reader-token"})
        assert ok.status == 200
        ok.close()


def test_events_cross_replicas_for_the_types_they_announce():
    """Two replicas on one database: a subscriber on B gets the events raised on A (B announced its
    types; A sends them, coalesced), with B's own ids, and only the types it subscribed to."""
    with events_server() as a:
        with WharfServer(database=a.database, extra_args=["--allow-private-webhooks"]) as b:
            on_a = wharf.Client(a.host, a.port, timeout=30)
            sse = SSEReader(b, "events=job.cancelled&queues=x")
            tcp = TCPSubscriber(b, {"events": ["job.*"]})
            time.sleep(0.5)  # the announcements reach A
            ids = [on_a.call("jobs.enqueue", {"queue": "x", "kind": "k"})["id"] for _ in range(50)]
            on_a.batch([("jobs.cancel", {"id": i}) for i in ids], return_exceptions=False)
            other = on_a.call("jobs.enqueue", {"queue": "y", "kind": "k"})["id"]
            on_a.call("jobs.cancel", {"id": other})
            on_a.call("locks.acquire", {"name": "not-wanted", "holder": "h", "ttlMs": 60000})
            wait_for(lambda: len(sse.events()) == 50 and len(tcp.events) == 51)
            time.sleep(0.3)
            assert sorted(e["data"]["data"]["jobId"] for e in sse.events()) == sorted(ids)
            assert {e["type"] for e in tcp.events} == {"job.cancelled"}
            assert {e["data"]["jobId"] for e in tcp.events} == set(ids) | {other}
            # B numbers what it delivers: its own boot tag, one after another.
            assert len({e["id"].rsplit("-", 1)[0] for e in tcp.events}) == 1
            numbers = [int(e["id"].rsplit("-", 1)[1]) for e in tcp.events]
            assert numbers == list(range(numbers[0], numbers[0] + 51))
            sse.close()
            tcp.close()
            on_a.close()


def test_wharf_events_watch_filters_by_type_and_queue():
    import subprocess

    from wharf.testing import wharf_bin

    with events_server() as server:
        watch = subprocess.Popen(
            [wharf_bin(), "events", "watch", "--server", f"{server.host}:{server.port}", "--event", "job.*",
             "--queue", "a", "--count", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client = wharf.Client(server.host, server.port, timeout=30)
        deadline = time.monotonic() + 10
        # Jobs of queue b are not for it; the first of queue a ends it (--count 1).
        while watch.poll() is None and time.monotonic() < deadline:
            for q in ("b", "a"):
                client.call("jobs.cancel", {"id": client.call("jobs.enqueue", {"queue": q, "kind": "k"})["id"]})
            time.sleep(0.2)
        out, err = watch.communicate(timeout=10)
        assert watch.returncode == 0, err
        assert "subscribed to job.*" in err
        event = json.loads(out.strip().splitlines()[-1])
        assert event["type"] == "job.cancelled" and event["data"]["queue"] == "a"
        client.close()
