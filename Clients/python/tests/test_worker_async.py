"""wharf.Worker's event loop against a live server: outcomes batched per loop turn (each applied once),
retries of async handlers, lease loss and cancellation cancelling the handler's task, graceful stop,
plain handlers on threads beside async ones, drain mode, and `python -m wharf.bench`."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from _wharf_support import requires, wait_for

import wharf

pytestmark = requires(
    "jobs.enqueue", "jobs.enqueueBatch", "jobs.lease", "jobs.heartbeat", "jobs.complete", "jobs.fail", "jobs.get"
)


def state(client, job_id):
    return client.jobs.get(id=job_id)["state"]


def enqueue_many(client, queue, kind, payloads, **extra):
    jobs = [{"queue": queue, "kind": kind, "payload": p, **extra} for p in payloads]
    return [j["id"] for j in client.jobs.enqueue_batch(jobs=jobs)["jobs"]]


def test_batched_outcomes_are_each_applied_once_to_their_own_job(make_worker, client, unique):
    worker = make_worker([unique], concurrency=100)

    @worker.task("double")
    async def double(n):
        if n % 7 == 3:
            raise wharf.Discard(f"no {n}")
        return {"n": n, "twice": 2 * n}

    ids = enqueue_many(client, unique, "double", list(range(300)))
    t = worker.run_in_thread(drain=True)
    t.join(30)
    assert not t.is_alive(), "drain mode returns once the queue is empty"
    discarded = {n for n in range(300) if n % 7 == 3}
    assert worker.stats["completed"] == 300 - len(discarded) and worker.stats["failed"] == len(discarded)
    # Outcomes went out together: far fewer batches than outcomes.
    assert worker.stats["batches"] < 300 // 10, worker.stats
    for n, job_id in enumerate(ids):
        job = client.jobs.get(id=job_id)
        assert len(job["attempts"]) == 1, job
        if n in discarded:
            assert job["state"] == "dead" and job["lastError"]["message"] == f"no {n}"
        else:
            assert job["state"] == "completed" and job["result"] == {"n": n, "twice": 2 * n}


def test_a_failing_async_handler_is_retried_then_dead_per_policy(make_worker, client, unique):
    worker = make_worker([unique], concurrency=4)
    seen = []

    @worker.task("flaky")
    async def flaky(job: wharf.Job):
        seen.append(("flaky", job.attempt))
        await asyncio.sleep(0)
        if job.attempt < 3:
            raise ConnectionError(f"attempt {job.attempt}")
        return "third time"

    @worker.task("doomed")
    async def doomed(job: wharf.Job):
        seen.append(("doomed", job.attempt))
        raise ValueError("never")

    quick = {"initial_ms": 50, "max_ms": 100}
    flaky_id = client.jobs.enqueue(unique, "flaky", retry=quick)["id"]
    doomed_id = client.jobs.enqueue(unique, "doomed", retry=quick, max_attempts=2)["id"]
    worker.run_in_thread()
    assert wait_for(lambda: state(client, flaky_id) == "completed" and state(client, doomed_id) == "dead")
    flaky_job = client.jobs.get(id=flaky_id)
    assert flaky_job["result"] == "third time"
    assert [a["error"]["message"] for a in flaky_job["attempts"][:2]] == [
        "ConnectionError: attempt 1",
        "ConnectionError: attempt 2",
    ]
    doomed_job = client.jobs.get(id=doomed_id)
    assert len(doomed_job["attempts"]) == 2 and doomed_job["lastError"]["type"] == "builtins.ValueError"
    assert "raise ValueError" in doomed_job["lastError"]["traceback"]
    assert sorted(seen) == [("doomed", 1), ("doomed", 2), ("flaky", 1), ("flaky", 2), ("flaky", 3)]


def test_a_lost_lease_cancels_the_async_handler_and_reports_nothing(make_worker, client, unique):
    worker = make_worker([unique], concurrency=1, lease_ms=1000)
    stolen, cancelled = threading.Event(), threading.Event()
    jobs_seen = []

    @worker.task("long")
    async def long(job: wharf.Job):
        jobs_seen.append(job)
        # Holds the worker's loop (so no heartbeat goes out) until the lease lapsed and another worker took it.
        stolen.wait(15)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "should not be reported"

    job_id = client.jobs.enqueue(unique, "long")["id"]
    worker.run_in_thread()
    assert wait_for(lambda: jobs_seen)
    thief = client.call("jobs.lease", queues=[unique], max=1, lease_ms=30_000, wait_ms=8_000, worker="thief")["jobs"]
    assert [j["id"] for j in thief] == [job_id]
    stolen.set()
    assert cancelled.wait(5), "the refused heartbeat cancels the handler"
    assert jobs_seen[0].lease_lost.is_set() and not jobs_seen[0].cancelled
    assert wait_for(lambda: not worker.running_jobs, timeout=5)
    assert worker.stats["completed"] == 0 and worker.stats["failed"] == 0
    # The thief's lease is intact: its outcome is the one that counts.
    client.jobs.complete(id=job_id, lease_token=thief[0]["leaseToken"], result="thief")
    assert client.jobs.get(id=job_id)["result"] == "thief"


def test_cancelling_a_running_job_cancels_its_async_handler(make_worker, client, unique):
    worker = make_worker([unique], concurrency=2, lease_ms=1000)
    started, cancelled = threading.Event(), threading.Event()

    @worker.task("wait")
    async def wait(job: wharf.Job):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = client.jobs.enqueue(unique, "wait")["id"]
    worker.run_in_thread()
    assert started.wait(5)
    client.jobs.cancel(id=job_id)
    assert cancelled.wait(5)
    assert wait_for(lambda: not worker.running_jobs, timeout=5)
    assert state(client, job_id) == "cancelled" and worker.stats["failed"] == 0


def test_graceful_stop_finishes_and_reports_running_async_jobs_and_abandons_the_stuck_one(server, client, unique):
    # Six slots for six jobs: no lease is parked when stop() comes.
    worker = wharf.Worker([unique], concurrency=6, port=server.port, grace=1.5, poll_ms=300)
    stuck_cancelled = threading.Event()

    @worker.task("short")
    async def short(n):
        await asyncio.sleep(0.4)
        return n

    @worker.task("stuck")
    async def stuck(payload):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stuck_cancelled.set()
            raise

    ids = enqueue_many(client, unique, "short", list(range(5)))
    stuck_id = client.jobs.enqueue(unique, "stuck")["id"]
    t = worker.run_in_thread()
    assert wait_for(lambda: len(worker.running_jobs) == 6)
    worker.stop()
    later = client.jobs.enqueue(unique, "short", 99)["id"]
    t.join(10)
    assert not t.is_alive()
    assert [client.jobs.get(id=i)["result"] for i in ids] == list(range(5))
    assert all(state(client, i) == "completed" for i in ids)
    assert worker.stats["completed"] == 5 and worker.stats["abandoned"] == 1
    assert stuck_cancelled.is_set(), "the handler left behind is cancelled"
    assert state(client, later) == "available", "no lease after stop"
    # The worker closed its connection: the server gave the stuck job back at once.
    assert wait_for(lambda: state(client, stuck_id) == "available", timeout=5)
    assert client.jobs.get(id=stuck_id)["attempts"][-1]["outcome"] == "worker_lost"


def test_plain_handlers_run_on_threads_beside_async_ones_on_the_loop(make_worker, client, unique):
    worker = make_worker([unique], concurrency=4)
    threads = {}
    blocking_done = threading.Event()
    quick_done_while_blocking = []

    @worker.task("blocking")
    def blocking(payload):
        threads["plain"] = threading.current_thread()
        time.sleep(1.0)  # a thread of its own: the loop keeps running the async jobs meanwhile
        blocking_done.set()
        return "slept"

    @worker.task("quick")
    async def quick(n):
        threads.setdefault("async", threading.current_thread())
        quick_done_while_blocking.append(not blocking_done.is_set())
        return n

    blocking_id = client.jobs.enqueue(unique, "blocking")["id"]
    t = worker.run_in_thread()
    assert wait_for(lambda: "plain" in threads)
    quick_ids = enqueue_many(client, unique, "quick", [1, 2, 3])
    assert wait_for(lambda: all(state(client, i) == "completed" for i in quick_ids + [blocking_id]))
    assert quick_done_while_blocking == [True, True, True]
    assert threads["plain"] is not t and threads["plain"].name.startswith("wharf-job")
    assert threads["async"] is t, "async handlers run on the worker's own thread (its event loop)"
    assert client.jobs.get(id=blocking_id)["result"] == "slept"


def test_python_m_wharf_bench_drains_with_worker_processes_and_checks_the_counts(server):
    package_root = pathlib.Path(wharf.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(package_root))
    done = subprocess.run(
        [sys.executable, "-m", "wharf.bench", "--port", str(server.port), "--jobs", "300", "--procs", "2"]
        + ["--concurrency", "20", "--runs", "1", "--server-pid", str(server.proc.pid)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("wharf.Worker (2 procs x concurrency 20, async handler, N=300, median of 1): ")
    assert " jobs/s processed" in summary
    assert "'completed': 300" in done.stderr and "server " in done.stderr


def test_the_worker_reconnects_after_the_server_restarts_and_finishes_every_job(unique):
    from wharf.testing import WharfServer, fresh_database, free_port

    database, port = fresh_database(), free_port()
    first = WharfServer(database=database, port=port)
    client = wharf.Client(port=port, timeout=10)
    worker = wharf.Worker([unique], concurrency=10, port=port, poll_ms=300, lease_ms=2000)
    done = []

    @worker.task("step")
    async def step(n):
        await asyncio.sleep(0.05)
        done.append(n)
        return n

    second = None
    try:
        ids = enqueue_many(client, unique, "step", list(range(60)))
        t = worker.run_in_thread()
        assert wait_for(lambda: len(done) >= 10)
        first.stop(signal.SIGKILL)
        second = WharfServer(database=database, port=port)
        # Jobs the worker held when the server died come back when their leases expire.
        assert wait_for(lambda: all(state(client, i) == "completed" for i in ids), timeout=20)
        assert [client.jobs.get(id=i)["result"] for i in ids] == list(range(60))
        worker.stop()
        t.join(10)
        assert not t.is_alive()
    finally:
        worker.stop(wait_for_jobs=False)
        client.close()
        first.stop()
        if second is not None:
            second.stop()
