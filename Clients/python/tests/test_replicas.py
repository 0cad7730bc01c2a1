"""`server.replicas`: the replicas sharing a database, as they come, drain and go."""

from __future__ import annotations

import signal
import time

from wharf.testing import WharfServer, fresh_database


def replicas(server):
    with server.client() as c:
        return {r["replicaId"]: r for r in c.call("server.replicas")["replicas"]}


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_replicas_list_each_other_and_a_stopped_one_leaves():
    db = fresh_database()
    a = WharfServer(database=db)
    b = WharfServer(database=db, extra_args=["--drain-timeout", "3s"])
    try:
        with a.client() as c:
            a_id = c.call("server.info")["replicaId"]
        with b.client() as c:
            b_id = c.call("server.info")["replicaId"]
        seen = wait_for(lambda: (lambda r: r if {a_id, b_id} <= set(r) else None)(replicas(a)))
        assert seen[a_id]["self"] is True and seen[b_id]["self"] is False
        for rid, server in ((a_id, a), (b_id, b)):
            r = seen[rid]
            assert r["alive"] is True and r["draining"] is False
            assert r["listen"].endswith(f":{server.port}")
            assert r["httpListen"].endswith(f":{server.http_port}")
        # A long poll keeps b draining a moment; meanwhile its row says so.
        with b.client() as worker:
            worker.call("jobs.lease", {"queues": ["nothing"], "worker": "w", "waitMs": 100})
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(timeout=15) == 0
        # Stopped: its row is gone.
        after = wait_for(lambda: (lambda r: r if b_id not in r else None)(replicas(a)))
        assert after[a_id]["alive"] is True
    finally:
        a.stop()
        b.stop()
