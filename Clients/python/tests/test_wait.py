"""`jobs.wait` and `Client.result`: waiting for jobs to end, on one replica and across two."""

from __future__ import annotations

import threading
import time

import pytest

from wharf import JobNotCompleted, NotFound, InvalidParams
from wharf.testing import WharfServer, fresh_database


@pytest.fixture(scope="module")
def pair():
    db = fresh_database()
    a = WharfServer(database=db)
    b = WharfServer(database=db)
    yield a, b
    a.stop()
    b.stop()


def lease_one(c, queue):
    jobs = c.jobs.lease([queue], "w-1", max=1, lease_ms=30_000, wait_ms=5_000)["jobs"]
    assert len(jobs) == 1
    return jobs[0]


def test_final_jobs_answer_at_once_with_results(pair):
    a, _ = pair
    with a.client() as c:
        j = c.jobs.enqueue("wait-now", "k", {"x": 1})
        job = lease_one(c, "wait-now")
        c.jobs.complete(job["id"], job["leaseToken"], result={"sum": 3})
        dead = c.jobs.enqueue("wait-now", "k", {}, max_attempts=1)
        job = lease_one(c, "wait-now")
        c.jobs.fail(job["id"], job["leaseToken"], error={"message": "boom"})
        gone = c.jobs.enqueue("wait-now", "k", {})
        c.jobs.cancel(gone["id"])
        started = time.monotonic()
        reply = c.jobs.wait([j["id"], dead["id"], gone["id"]], timeout_ms=10_000)
        assert time.monotonic() - started < 2
        assert reply["done"] is True
        states = {x["id"]: x for x in reply["jobs"]}
        assert [x["id"] for x in reply["jobs"]] == [j["id"], dead["id"], gone["id"]]
        assert states[j["id"]]["state"] == "completed" and states[j["id"]]["result"] == {"sum": 3}
        assert states[dead["id"]]["state"] == "dead" and states[dead["id"]]["lastError"]["message"] == "boom"
        assert states[gone["id"]]["state"] == "cancelled"
        assert c.result(j["id"]) == {"sum": 3}
        with pytest.raises(JobNotCompleted) as e:
            c.result(dead["id"])
        assert e.value.state == "dead" and e.value.done is True


def test_a_timeout_answers_with_the_states_then(pair):
    a, _ = pair
    with a.client() as c:
        j = c.jobs.enqueue("wait-timeout", "k", {})
        started = time.monotonic()
        reply = c.jobs.wait([j["id"]], timeout_ms=300)
        took = time.monotonic() - started
        assert 0.29 <= took < 3, took
        assert reply == {"jobs": [reply["jobs"][0]], "done": False}
        assert reply["jobs"][0]["state"] == "available"
        with pytest.raises(JobNotCompleted) as e:
            c.result(j["id"], timeout=0.2)
        assert e.value.done is False and e.value.state == "available"


def complete_later(server, queue, delay, result, done_at):
    def run():
        with server.client() as w:
            job = lease_one(w, queue)
            time.sleep(delay)
            w.jobs.complete(job["id"], job["leaseToken"], result=result)
            done_at.append(time.monotonic())

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("where", ["same replica", "other replica"])
def test_a_waiting_call_is_woken_by_the_completion(pair, where):
    """Woken by the job's end (an event), not by the once-a-second re-read: the reply follows the
    completion by far less than that second, on the replica that completed it or another."""
    a, b = pair
    queue = f"wait-wake-{where.replace(' ', '-')}"
    worker_side = a if where == "same replica" else b
    with a.client() as c:
        j = c.jobs.enqueue(queue, "k", {})
        done_at = []
        t = complete_later(worker_side, queue, 0.5, {"ok": True}, done_at)
        reply = c.jobs.wait([j["id"]], timeout_ms=10_000)
        answered = time.monotonic()
        t.join()
        assert reply["done"] is True and reply["jobs"][0]["result"] == {"ok": True}
        lag = answered - done_at[0]
        print(f"{where}: answered {lag * 1000:.1f} ms after the completion")
        assert lag < 0.25, f"answered {lag * 1000:.0f} ms after the completion"


def test_many_waiters_on_one_job_and_one_waiter_on_many(pair):
    a, b = pair
    with a.client() as c:
        ids = [c.jobs.enqueue("wait-many", "k", {"i": i})["id"] for i in range(20)]
        replies = []

        def waiter(server, wanted):
            with server.client() as w:
                replies.append(w.jobs.wait(wanted, timeout_ms=20_000))

        threads = [threading.Thread(target=waiter, args=(a if i % 2 else b, [ids[0]])) for i in range(6)]
        threads.append(threading.Thread(target=waiter, args=(b, ids)))
        for t in threads:
            t.start()
        time.sleep(0.3)
        with b.client() as w:
            while True:
                jobs = w.jobs.lease(["wait-many"], "w-2", max=20, lease_ms=30_000, wait_ms=1_000)["jobs"]
                if not jobs:
                    break
                for job in jobs:
                    w.jobs.complete(job["id"], job["leaseToken"], result=job["payload"])
        for t in threads:
            t.join(30)
        assert len(replies) == 7
        assert all(r["done"] for r in replies)
        whole = next(r for r in replies if len(r["jobs"]) == 20)
        assert [x["result"]["i"] for x in whole["jobs"]] == list(range(20))


def test_bad_calls_are_refused(pair):
    a, _ = pair
    with a.client() as c:
        with pytest.raises(NotFound) as e:
            c.jobs.wait(["999999999"], timeout_ms=100)
        assert e.value.data["ids"] == ["999999999"]
        for bad in [{"ids": []}, {"ids": ["x"]}, {"ids": ["1"], "timeoutMs": -1}, {"ids": ["1"], "timeoutMs": 300_001},
                    {"ids": "1"}, {"ids": ["1"], "extra": 1}]:
            with pytest.raises(InvalidParams):
                c.call("jobs.wait", bad)
        # The connection still serves.
        assert c.call("server.ping")


def test_a_step_completion_wakes_a_waiting_call(pair):
    """A run's step completed with `next` raises job.completed like any completion: a wait on the step
    is answered at once, not by the once-a-second re-read."""
    a, b = pair
    with a.client() as c:
        first = c.jobs.enqueue("wait-step", "k", {"n": 1})
        done_at = []

        def run():
            with b.client() as w:
                job = lease_one(w, "wait-step")
                time.sleep(0.5)
                r = w.call("jobs.complete", {"id": job["id"], "leaseToken": job["leaseToken"], "result": {"n": 2},
                                             "next": {"payload": {"n": 2}}})
                done_at.append((time.monotonic(), r))

        t = threading.Thread(target=run)
        t.start()
        reply = c.jobs.wait([first["id"]], timeout_ms=10_000)
        answered = time.monotonic()
        t.join()
        assert reply["done"] is True and reply["jobs"][0]["result"] == {"n": 2}
        lag = answered - done_at[0][0]
        assert lag < 0.25, f"answered {lag * 1000:.0f} ms after the step's completion"
        assert done_at[0][1]["nextJobId"]


def test_enqueue_then_result(pair):
    """`client.enqueue(...).result(timeout=...)`, sync and async: the reply is the enqueue's dict and
    waits for the job's result; a job not final in time raises with its state."""
    import asyncio

    import wharf

    a, b = pair
    with a.client() as c:
        job = c.enqueue("wait-result", "k", {"n": 2})
        assert job == {"id": job["id"], "state": "available", "duplicate": False}
        done_at = []
        t = complete_later(b, "wait-result", 0.2, {"double": 4}, done_at)
        assert job.result(timeout=10) == {"double": 4}
        t.join()
        late = c.enqueue("wait-result-never", "k", None)
        with pytest.raises(JobNotCompleted) as e:
            late.result(timeout=0.2)
        assert e.value.state == "available" and e.value.done is False

    async def main():
        ac = wharf.AsyncClient("127.0.0.1", a.port)
        try:
            job = await ac.enqueue("wait-result", "k", {"n": 3})
            t = complete_later(b, "wait-result", 0.1, {"double": 6}, [])
            assert await job.result(timeout=10) == {"double": 6}
            t.join()
        finally:
            await ac.close()

    asyncio.run(main())
