"""wharf.Worker against a live server: outcomes, async handlers, heartbeats, cancellation, concurrency,
graceful stop (in-process and `python -m wharf.worker` with SIGTERM)."""

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
    "jobs.enqueue", "jobs.lease", "jobs.heartbeat", "jobs.complete", "jobs.fail", "jobs.get", "jobs.cancel"
)

PACKAGE_ROOT = pathlib.Path(wharf.__file__).resolve().parents[1]


def state(client, job_id):
    return client.jobs.get(id=job_id)["state"]


def test_outcomes_complete_retry_discard_fail(make_worker, client, unique):
    worker = make_worker([unique], concurrency=4, lease_ms=3000)
    attempts = {}

    @worker.task("add")
    def add(payload):
        return {"sum": payload["a"] + payload["b"]}

    @worker.task("flaky")
    def flaky(job: wharf.Job):
        attempts[job.id] = job.attempt
        if job.attempt < 2:
            raise wharf.Retry(after=0.1, reason="not yet")
        return "ok"

    @worker.task("bad")
    def bad(payload):
        raise wharf.Discard("invalid input")

    @worker.task("boom")
    def boom(payload):
        raise ValueError("kaput")

    ids = {
        "add": client.jobs.enqueue(unique, "add", {"a": 2, "b": 3})["id"],
        "flaky": client.jobs.enqueue(unique, "flaky")["id"],
        "bad": client.jobs.enqueue(unique, "bad")["id"],
        "boom": client.jobs.enqueue(unique, "boom", max_attempts=1)["id"],
    }
    t = worker.run_in_thread()
    assert wait_for(lambda: state(client, ids["flaky"]) == "completed")
    assert wait_for(lambda: state(client, ids["boom"]) == "dead")
    assert wait_for(lambda: state(client, ids["bad"]) == "dead")
    assert wait_for(lambda: state(client, ids["add"]) == "completed")
    add_job = client.jobs.get(id=ids["add"])
    assert add_job["state"] == "completed" and add_job["result"] == {"sum": 5}
    assert attempts[ids["flaky"]] == 2
    flaky_job = client.jobs.get(id=ids["flaky"])
    assert flaky_job["attempts"][0]["error"]["message"] == "not yet"
    bad_job = client.jobs.get(id=ids["bad"])
    assert bad_job["lastError"]["message"] == "invalid input" and bad_job["attempt"] == 1
    boom_error = client.jobs.get(id=ids["boom"])["lastError"]
    assert boom_error["message"] == "ValueError: kaput" and "Traceback" in boom_error["traceback"]
    assert boom_error["type"] == "builtins.ValueError"
    worker.stop()
    t.join(5)
    assert not t.is_alive()
    assert worker.stats["completed"] == 2 and worker.stats["failed"] == 3


def test_async_handlers_run_on_the_workers_loop(make_worker, client, unique):
    worker = make_worker([unique], concurrency=4)
    loops = set()

    @worker.task("sleepy")
    async def sleepy(job: wharf.Job):
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.2)
        return job.payload * 2

    @worker.task
    async def broken(payload):
        raise RuntimeError("async failure")

    ids = [client.jobs.enqueue(unique, "sleepy", n)["id"] for n in range(4)]
    broken_id = client.jobs.enqueue(unique, "broken", max_attempts=1)["id"]
    started = time.monotonic()
    worker.run_in_thread()
    assert wait_for(lambda: all(state(client, i) == "completed" for i in ids))
    assert time.monotonic() - started < 3  # concurrently, not one after another
    assert [client.jobs.get(id=i)["result"] for i in ids] == [0, 2, 4, 6]
    assert len(loops) == 1
    assert wait_for(lambda: state(client, broken_id) == "dead")
    assert client.jobs.get(id=broken_id)["lastError"]["message"] == "RuntimeError: async failure"


def test_a_keyed_job_holds_its_lock_with_a_fencing_token(make_worker, client, unique):
    # A long poll that outlives the release below: when the release's wake-up lease and a long poll's
    # expiry cross, the server gives the job back as worker_lost (JobsService.pump), which costs an
    # attempt and a fencing token; this test is about the token of a plain handover.
    worker = make_worker([unique], concurrency=2, poll_ms=5000)
    seen = []

    @worker.task("keyed")
    def keyed(job: wharf.Job):
        lock = client.locks.get(name=job.lock_key)
        seen.append((job.lock_key, job.fencing_token, lock["held"], lock["holder"], lock["fencingToken"]))

    name = unique + "-lock"
    held = client.locks.acquire(name=name, holder="admin", ttl_ms=60_000)
    job_id = client.jobs.enqueue(unique, "keyed", lock_key=name)["id"]
    worker.run_in_thread()
    time.sleep(1.0)
    assert state(client, job_id) == "available", "the job must wait while a client holds its lock"
    client.locks.release(name=name, token=held["token"])
    assert wait_for(lambda: state(client, job_id) == "completed")
    assert seen == [(name, held["fencingToken"] + 1, True, f"job {job_id}", held["fencingToken"] + 1)]
    assert client.locks.get(name=name)["held"] is False


def test_concurrency_bounds_the_jobs_in_hand(make_worker, client, unique):
    worker = make_worker([unique], concurrency=2)
    running, peak = [0], [0]
    lock = threading.Lock()

    @worker.task("slow")
    def slow(payload):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.15)
        with lock:
            running[0] -= 1

    ids = [client.jobs.enqueue(unique, "slow")["id"] for _ in range(6)]
    worker.run_in_thread()
    assert wait_for(lambda: all(state(client, i) == "completed" for i in ids))
    assert peak[0] == 2
    assert client.queues.stats(queue=unique)["counts"]["completed"] == 6


def test_heartbeats_keep_a_long_job_and_report_progress_and_cancel_sets_the_flag(make_worker, client, unique):
    worker = make_worker([unique], concurrency=1, lease_ms=1000)
    started, saw_cancel = threading.Event(), threading.Event()

    @worker.task("long")
    def long(job: wharf.Job):
        started.set()
        job.set_progress({"step": 1})
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # longer than the lease: only heartbeats keep it
            if job.cancelled:
                saw_cancel.set()
                return "stopped early"
            time.sleep(0.05)
        return "done"

    job_id = client.jobs.enqueue(unique, "long")["id"]
    worker.run_in_thread()
    assert started.wait(5)
    time.sleep(1.6)
    job = client.jobs.get(id=job_id)
    assert job["state"] == "running" and job["attempt"] == 1 and job["progress"] == {"step": 1}
    client.jobs.cancel(id=job_id)
    assert saw_cancel.wait(5)
    assert wait_for(lambda: not worker.running_jobs, timeout=5)
    job = client.jobs.get(id=job_id)
    assert job["state"] == "cancelled" and "result" not in job


def test_a_kind_without_handler_fails_and_is_retried(make_worker, client, unique):
    worker = make_worker([unique])
    job_id = client.jobs.enqueue(unique, "unknown-kind")["id"]
    worker.run_in_thread()
    assert wait_for(lambda: state(client, job_id) == "retryable")
    assert "no handler" in client.jobs.get(id=job_id)["lastError"]["message"]


def test_client_factory_and_unserializable_results(server, client, unique):
    made = []

    def factory():
        made.append(wharf.Client(server.host, server.port))
        return made[-1]

    worker = wharf.Worker(factory, queues=[unique], poll_ms=500)

    @worker.task("odd")
    def odd(payload):
        return {1, 2}  # a set is not JSON... but wharf encodes sets as sorted lists

    @worker.task("opaque")
    def opaque(payload):
        return object()

    a = client.jobs.enqueue(unique, "odd")["id"]
    b = client.jobs.enqueue(unique, "opaque", max_attempts=1)["id"]
    t = worker.run_in_thread()
    assert wait_for(lambda: state(client, a) == "completed" and state(client, b) == "dead")
    assert client.jobs.get(id=a)["result"] == [1, 2]
    assert "not JSON serializable" in client.jobs.get(id=b)["lastError"]["message"]
    worker.stop()
    t.join(5)
    assert len(made) == 1 and not made[0].connected  # the worker closed the connection it made


def test_stop_waits_for_running_jobs_within_grace_and_leaves_the_rest_to_the_server(server, client, unique):
    release = threading.Event()
    worker = wharf.Worker([unique], concurrency=2, port=server.port, grace=0.5, poll_ms=300)
    finished = []

    @worker.task("quick")
    def quick(payload):
        time.sleep(0.3)
        finished.append("quick")
        return "ok"

    @worker.task("stuck")
    def stuck(payload):
        release.wait(10)

    quick_id = client.jobs.enqueue(unique, "quick")["id"]
    stuck_id = client.jobs.enqueue(unique, "stuck")["id"]
    t = worker.run_in_thread()
    assert wait_for(lambda: len(worker.running_jobs) == 2)
    stopped_at = time.monotonic()
    worker.stop()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - stopped_at < 2
    assert finished == ["quick"] and state(client, quick_id) == "completed"
    assert worker.stats["abandoned"] == 1
    # The worker closed its connection; the server gives the unfinished job back at once.
    assert wait_for(lambda: state(client, stuck_id) == "available", timeout=5)
    assert client.jobs.get(id=stuck_id)["attempts"][-1]["outcome"] == "worker_lost"
    release.set()


def test_python_m_wharf_worker_stops_gracefully_on_sigterm(server, client, unique, tmp_path):
    (tmp_path / "myjobs.py").write_text(
        "import time\n"
        "import wharf\n"
        f"worker = wharf.Worker([{unique!r}], port={server.port}, poll_ms=500)\n"
        "@worker.task('hello')\n"
        "def hello(payload):\n"
        "    time.sleep(float(payload.get('sleep', 0)))\n"
        "    return 'hi ' + payload['name']\n"
    )
    quick = client.jobs.enqueue(unique, "hello", {"name": "ada"})["id"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(PACKAGE_ROOT)]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wharf.worker", "myjobs:worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(lambda: state(client, quick) == "completed", 15)
        assert client.jobs.get(id=quick)["result"] == "hi ada"
        slow = client.jobs.enqueue(unique, "hello", {"name": "bob", "sleep": 1.0})["id"]
        assert wait_for(lambda: state(client, slow) == "running", 10)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        output = proc.stdout.read()
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, output
    # The job in hand when SIGTERM came was finished, not abandoned.
    assert client.jobs.get(id=slow)["result"] == "hi bob", output
    assert "stopped" in output


def test_a_worker_with_several_addresses_moves_past_one_that_does_not_answer(make_worker, client, server, unique):
    """The first address refuses connections: the worker moves to the next and runs the job there."""
    from wharf.testing import free_port

    worker = make_worker([unique], addresses=[f"127.0.0.1:{free_port()}", (server.host, server.port)])
    done = threading.Event()

    @worker.task("hello")
    def hello(payload):
        done.set()
        return "hi"

    job = client.jobs.enqueue(unique, "hello")["id"]
    started = time.monotonic()
    worker.run_in_thread()
    assert done.wait(10)
    assert wait_for(lambda: state(client, job) == "completed")
    assert worker.stats["moves"] == 1
    assert time.monotonic() - started < 5
