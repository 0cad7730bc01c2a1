"""jobs.* and queues.* through the client's helpers, against a live server.

Each test skips until its methods are described in Protocol/openrpc.json.
"""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from _wharf_support import requires

import wharf

LIFECYCLE = ("jobs.enqueue", "jobs.lease", "jobs.heartbeat", "jobs.complete", "jobs.fail", "jobs.get")


@requires("jobs.enqueue", "jobs.get")
def test_enqueue_and_get(client, unique):
    r = client.jobs.enqueue(
        unique, "welcome", {"to": "ada@example.com"}, priority=5, max_attempts=3, tags=["mail"], meta={"source": "test"}
    )
    assert r["state"] == "available" and r["duplicate"] is False and isinstance(r["id"], str)
    job = client.jobs.get(id=r["id"])
    assert job["queue"] == unique and job["kind"] == "welcome" and job["payload"] == {"to": "ada@example.com"}
    assert (job["priority"], job["maxAttempts"], job["tags"], job["meta"]) == (5, 3, ["mail"], {"source": "test"})


@requires("jobs.enqueue", "jobs.get")
def test_run_at_and_delay_schedule_later(client, unique):
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    a = client.jobs.enqueue(unique, "k", run_at=later)
    b = client.jobs.enqueue(unique, "k", delay_ms=datetime.timedelta(minutes=5))
    assert a["state"] == b["state"] == "scheduled"
    run_at = wharf._wire.parse_time(client.jobs.get(id=a["id"])["runAt"])
    assert abs((run_at - later).total_seconds()) < 0.01
    with pytest.raises(wharf.InvalidParams) as e:
        client.jobs.enqueue(unique, "k", run_at=later, delay_ms=5)
    assert e.value.field in ("runAt", "delayMs")


@requires("jobs.enqueue")
def test_unique_key_dedups_unfinished_jobs(client, unique):
    first = client.jobs.enqueue(unique, "k", unique_key=unique)
    again = client.jobs.enqueue(unique, "k", unique_key=unique)
    assert again == {"id": first["id"], "state": first["state"], "duplicate": True}


@requires("jobs.enqueueBatch", "queues.stats")
def test_enqueue_batch_is_all_or_nothing(client, unique):
    ok = client.jobs.enqueue_batch([{"queue": unique, "kind": "k", "payload": i} for i in range(3)])
    assert [j["duplicate"] for j in ok["jobs"]] == [False] * 3 and len({j["id"] for j in ok["jobs"]}) == 3
    with pytest.raises(wharf.InvalidParams) as e:
        client.jobs.enqueue_batch([{"queue": unique, "kind": "k"}, {"queue": unique}])
    assert e.value.field == "jobs[1].kind"
    assert client.queues.stats(queue=unique)["counts"]["available"] == 3


@requires(*LIFECYCLE)
def test_lease_heartbeat_complete(client, unique):
    job_id = client.jobs.enqueue(unique, "k", {"n": 1})["id"]
    leased = client.jobs.lease(unique, "py-test", max=10, lease_ms=5000)["jobs"]
    assert [j["id"] for j in leased] == [job_id]
    job = leased[0]
    assert job["payload"] == {"n": 1} and job["attempt"] == 1 and job["leaseToken"] and job["leaseExpiresAt"]
    beat = client.jobs.heartbeat(job_id, job["leaseToken"], extend_ms=10_000, progress={"done": 50})
    assert beat["leaseExpiresAt"] >= job["leaseExpiresAt"]
    assert client.jobs.get(id=job_id)["progress"] == {"done": 50}
    done = client.jobs.complete(job_id, job["leaseToken"], {"sent": True})
    assert done == {"id": job_id, "state": "completed"}
    assert client.jobs.complete(job_id, job["leaseToken"], {"sent": True})["state"] == "completed"  # idempotent
    got = client.jobs.get(id=job_id)
    assert got["state"] == "completed" and got["result"] == {"sent": True}


@requires(*LIFECYCLE)
def test_stale_tokens_are_refused_as_lease_lost(client, unique):
    job_id = client.jobs.enqueue(unique, "k")["id"]
    job = client.jobs.lease(unique, "py-test")["jobs"][0]
    for call in (
        lambda: client.jobs.heartbeat(job_id, "forged"),
        lambda: client.jobs.complete(job_id, "forged"),
        lambda: client.jobs.fail(job_id, "forged", "nope"),
    ):
        with pytest.raises(wharf.LeaseLost) as e:
            call()
        assert e.value.reason == "lease_lost" and e.value.retryable is False
        assert isinstance(e.value, wharf.Conflict)
    assert client.jobs.get(id=job_id)["state"] == "running"
    client.jobs.complete(job_id, job["leaseToken"])


@requires(*LIFECYCLE, "jobs.retry")
def test_fail_retries_then_dies_and_retry_revives(client, unique):
    job_id = client.jobs.enqueue(unique, "k", max_attempts=2)["id"]
    job = client.jobs.lease(unique, "py-test")["jobs"][0]
    failed = client.jobs.fail(job_id, job["leaseToken"], {"message": "boom", "code": 7}, retry_in_ms=0)
    assert failed["state"] == "retryable" and "nextRunAt" in failed
    for _ in range(50):
        leased = client.jobs.lease(unique, "py-test")["jobs"]
        if leased:
            break
        time.sleep(0.05)
    assert leased and leased[0]["attempt"] == 2
    dead = client.jobs.fail(job_id, leased[0]["leaseToken"], "boom again")
    assert dead["state"] == "dead"
    got = client.jobs.get(id=job_id)
    assert got["state"] == "dead" and got["lastError"]["message"] == "boom again"
    assert client.jobs.retry(id=job_id) == {"id": job_id, "state": "available"}
    with pytest.raises(wharf.Conflict) as e:
        client.jobs.retry(id=job_id)
    assert e.value.reason == "invalid_state"


@requires(*LIFECYCLE)
def test_fail_not_retryable_is_dead_at_once(client, unique):
    job_id = client.jobs.enqueue(unique, "k")["id"]
    job = client.jobs.lease(unique, "py-test")["jobs"][0]
    assert client.jobs.fail(job_id, job["leaseToken"], "bad input", retryable=False)["state"] == "dead"


@requires(*LIFECYCLE, "jobs.cancel")
def test_cancel_reaches_the_holder_as_job_cancelled(client, unique):
    job_id = client.jobs.enqueue(unique, "k")["id"]
    job = client.jobs.lease(unique, "py-test")["jobs"][0]
    assert client.jobs.cancel(id=job_id)["state"] == "cancelled"
    with pytest.raises(wharf.JobCancelled) as e:
        client.jobs.heartbeat(job_id, job["leaseToken"])
    assert e.value.reason == "cancelled"
    with pytest.raises(wharf.JobCancelled):
        client.jobs.complete(job_id, job["leaseToken"])
    with pytest.raises(wharf.NotFound) as nf:
        client.jobs.cancel(id="987654321")
    assert nf.value.reason == "not_found"


@requires("jobs.enqueue", "jobs.list")
def test_list_filters_and_pages(client, unique):
    ids = [client.jobs.enqueue(unique, "even" if i % 2 == 0 else "odd", tags=[unique])["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        page = client.jobs.list(queue=unique, limit=3, cursor=cursor)
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen, key=int) == ids
    assert [j["kind"] for j in client.jobs.list(queue=unique, kind="odd")["jobs"]] == ["odd"] * 3
    assert len(client.jobs.list(tag=unique, state="available")["jobs"]) == 7
    with pytest.raises(wharf.InvalidParams) as e:
        client.jobs.list(state="sleeping")
    assert e.value.field == "state"


@requires("jobs.enqueue", "jobs.lease", "queues.pause", "queues.resume", "queues.list", "queues.stats")
def test_paused_queues_are_not_leased(client, unique):
    client.jobs.enqueue(unique, "k")
    assert client.queues.pause(queue=unique)["paused"] is True
    assert client.jobs.lease(unique, "py-test")["jobs"] == []
    listed = {q["name"]: q for q in client.queues.list()["queues"]}
    assert listed[unique]["paused"] is True and listed[unique]["available"] == 1
    assert client.queues.resume(queue=unique)["paused"] is False
    assert len(client.jobs.lease(unique, "py-test")["jobs"]) == 1
    stats = client.queues.stats(queue=unique)
    assert stats["queue"] == unique and stats["counts"]["running"] == 1


@requires("queues.configure")
def test_queue_retry_policy(client, unique):
    r = client.queues.configure(unique, {"initial_ms": 50, "coefficient": 1.5})
    assert r["retry"]["initialMs"] == 50 and r["retry"]["coefficient"] == 1.5
    assert client.queues.configure(unique, None)["retry"] is None


@requires("jobs.enqueue", "jobs.lease")
def test_a_long_poll_does_not_hold_up_other_calls_on_the_connection(client, server, unique):
    got = {}

    def poll():
        started = time.monotonic()
        got["jobs"] = client.jobs.lease(unique, "py-test", wait_ms=5000)["jobs"]
        got["after"] = time.monotonic() - started

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert client.server.ping() == "pong"  # same connection, while the lease waits
    assert time.monotonic() - started < 1
    with wharf.Client(server.host, server.port) as producer:
        job_id = producer.jobs.enqueue(unique, "k")["id"]
    t.join(6)
    assert [j["id"] for j in got["jobs"]] == [job_id] and got["after"] < 3
