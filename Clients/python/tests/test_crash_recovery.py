"""kill -9 of the server in the middle of a produce/consume workload, then a restart on the same
database: every acknowledged job is eventually completed, and no job is completed by two different
lease tokens."""

import collections
import signal
import threading
import time

from _wharf_support import requires

import wharf
from wharf.pytest_plugin import start_server
from wharf.testing import WharfServer

JOBS = 3000


@requires("jobs.enqueueBatch", "jobs.lease", "jobs.complete", "jobs.list", "queues.stats")
def test_kill_dash_nine_loses_and_duplicates_nothing():
    server = start_server()
    port, database = server.port, server.database
    acked = set()
    completions = collections.defaultdict(set)  # job id -> lease tokens whose complete succeeded
    lock = threading.Lock()
    stop = threading.Event()

    def produce():
        c = wharf.Client("127.0.0.1", port, timeout=5)
        sent = 0
        while sent < JOBS and not stop.is_set():
            batch = [{"queue": "crash", "kind": "k", "payload": {"n": sent + i}} for i in range(50)]
            try:
                ids = [j["id"] for j in c.jobs.enqueue_batch(jobs=batch)["jobs"]]
            except (wharf.ConnectionLost, wharf.RetryableError, OSError, TimeoutError):
                time.sleep(0.1)  # unacknowledged: it may or may not have committed
                continue
            with lock:
                acked.update(ids)
            sent += len(batch)

    def consume(n):
        c = wharf.Client("127.0.0.1", port, timeout=5)
        while not stop.is_set():
            try:
                jobs = c.jobs.lease(queues=["crash"], max=20, lease_ms=2000, wait_ms=200, worker=f"w{n}")["jobs"]
            except (wharf.ConnectionLost, wharf.RetryableError, OSError, TimeoutError):
                time.sleep(0.1)
                continue
            for j in jobs:
                try:
                    c.jobs.complete(id=j["id"], lease_token=j["leaseToken"])
                except (wharf.LeaseLost, wharf.ConnectionLost, wharf.RetryableError, OSError, TimeoutError):
                    continue
                with lock:
                    completions[j["id"]].add(j["leaseToken"])

    threads = [threading.Thread(target=produce)] + [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while len(completions) < JOBS // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop(signal.SIGKILL)
        time.sleep(0.5)
        server = WharfServer(database=database, port=port)
        deadline = time.monotonic() + 60
        checker = wharf.Client("127.0.0.1", port)
        while time.monotonic() < deadline:
            counts = checker.queues.stats(queue="crash")["counts"]
            unfinished = sum(v for k, v in counts.items() if k != "completed")
            if len(acked) >= JOBS and unfinished == 0:
                break
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(15)
        counts = checker.queues.stats(queue="crash")["counts"]
        completed_rows = {j["id"] for j in _all_jobs(checker) if j["state"] == "completed"}
        assert len(acked) >= JOBS
        assert acked <= completed_rows, f"lost: {len(acked - completed_rows)}"
        assert sum(v for k, v in counts.items() if k != "completed") == 0
        doubled = {i: t for i, t in completions.items() if len(t) > 1}
        assert doubled == {}, f"completed by two tokens: {list(doubled.items())[:5]}"
        checker.close()
    finally:
        stop.set()
        server.stop()


def _all_jobs(c):
    out, cursor = [], None
    while True:
        page = c.jobs.list(queue="crash", limit=1000, cursor=cursor)
        out += page["jobs"]
        cursor = page["nextCursor"]
        if cursor is None:
            return out
