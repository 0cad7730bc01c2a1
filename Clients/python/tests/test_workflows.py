"""Workflows (Protocol/workflows.md) against a live server: multi-step runs through `wharf.Next`,
batches with callbacks, dependencies."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from _wharf_support import requires, wait_for

import wharf
from wharf.testing import WharfServer, fresh_database

FAST_RETRY = {"initialMs": 10, "maxMs": 10, "jitter": 0}


def _lease(client, queue, worker="t"):
    jobs = client.call("jobs.lease", {"queues": [queue], "max": 1, "worker": worker})["jobs"]
    assert len(jobs) == 1, jobs
    return jobs[0]


def _run_finished(client, run_id):
    try:
        run = client.call("runs.get", {"id": run_id})
    except wharf.NotFound:  # its first step has not completed yet
        return None
    return run if run["state"] != "running" else None


@requires("runs.get", "jobs.complete")
def test_five_step_run_passes_each_output_on(client, make_worker, unique):
    seen = []
    w = make_worker([unique])

    @w.task("step")
    def step(payload):
        seen.append(payload)
        if payload["n"] == 4:
            return {"total": payload["total"] + 4}
        return wharf.Next({"n": payload["n"] + 1, "total": payload["total"] + payload["n"]})

    first = client.jobs.enqueue(unique, "step", {"n": 0, "total": 0})
    w.run_in_thread()
    run = wait_for(lambda: _run_finished(client, first["id"]))
    assert run is not None and run["state"] == "completed", run
    assert run["id"] == first["id"] and run["step"] == 4
    assert [s["n"] for s in seen] == [0, 1, 2, 3, 4]
    # Each step's output is the next step's input, and every output is kept.
    assert run["outputs"] == [
        {"n": 1, "total": 0}, {"n": 2, "total": 1}, {"n": 3, "total": 3}, {"n": 4, "total": 6}, {"total": 10}]
    assert [s["step"] for s in run["steps"]] == [0, 1, 2, 3, 4]
    assert all(s["state"] == "completed" and s["attempt"] == 1 for s in run["steps"])
    for before, after in zip(run["steps"], run["steps"][1:]):
        assert after["payload"] == before["result"]
    # Later steps carry their run in meta.
    step3 = client.jobs.get(id=run["steps"][3]["jobId"])
    assert step3["meta"]["run"] == {"id": first["id"], "step": 3}
    assert client.call("runs.list", {"state": "completed", "limit": 1000})["runs"][0]["state"] == "completed"


@requires("runs.get", "jobs.complete")
def test_step_that_fails_twice_then_succeeds_shows_its_attempts(client, make_worker, unique):
    tries = {"n": 0}
    w = make_worker([unique])

    @w.task("first")
    def first(payload):
        return wharf.Next({"x": 1}, kind="flaky", max_attempts=5)

    @w.task("flaky")
    def flaky(payload):
        tries["n"] += 1
        if tries["n"] <= 2:
            raise wharf.Retry(after=0.01, reason=f"try {tries['n']}")
        return {"ok": True}

    job = client.jobs.enqueue(unique, "first", None)
    w.run_in_thread()
    run = wait_for(lambda: _run_finished(client, job["id"]), timeout=20)
    assert run is not None and run["state"] == "completed", run
    flaky_step = run["steps"][1]
    assert flaky_step["kind"] == "flaky" and flaky_step["attempt"] == 3 and flaky_step["maxAttempts"] == 5
    assert [a["outcome"] for a in flaky_step["attempts"]] == ["failed", "failed"]
    assert [a["error"]["message"] for a in flaky_step["attempts"]] == ["try 1", "try 2"]
    assert run["steps"][0]["attempt"] == 1 and run["outputs"][1] == {"ok": True}


@requires("runs.get", "runs.cancel", "jobs.complete")
def test_failed_step_fails_the_run(client, unique):
    job = client.jobs.enqueue(unique, "a", None)
    j = _lease(client, unique)
    r = client.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"], "result": 1,
                                      "next": {"payload": 2, "maxAttempts": 1}})
    assert r["runId"] == job["id"] and r["step"] == 0
    j2 = _lease(client, unique)
    assert j2["id"] == r["nextJobId"]
    client.call("jobs.fail", {"id": j2["id"], "leaseToken": j2["leaseToken"], "error": "boom"})
    run = client.call("runs.get", {"id": job["id"]})
    assert run["state"] == "failed" and run["outputs"] == [1] and run["steps"][1]["state"] == "dead"
    # Retrying the dead step takes the run up again.
    client.call("jobs.retry", {"id": j2["id"]})
    j3 = _lease(client, unique)
    assert j3["id"] == j2["id"]
    client.call("jobs.complete", {"id": j3["id"], "leaseToken": j3["leaseToken"], "result": 2, "next": {"payload": 3}})
    run = client.call("runs.get", {"id": job["id"]})
    assert run["state"] == "running" and run["outputs"] == [1, 2] and run["step"] == 2
    j4 = _lease(client, unique)
    client.call("jobs.complete", {"id": j4["id"], "leaseToken": j4["leaseToken"], "result": 3})
    run = client.call("runs.get", {"id": job["id"]})
    assert run["state"] == "completed" and run["outputs"] == [1, 2, 3]


@requires("runs.get", "runs.cancel", "jobs.complete")
def test_complete_with_next_is_one_completion(client, unique):
    job = client.jobs.enqueue(unique, "a", {"v": 0})
    j = _lease(client, unique)
    params = {"id": j["id"], "leaseToken": j["leaseToken"], "result": {"v": 1}, "next": {"payload": {"v": 1}}}
    r1 = client.call("jobs.complete", params)
    # A repeat (its reply lost) answers the same and makes no second step.
    r2 = client.call("jobs.complete", params)
    assert r1 == r2 and r1["state"] == "completed"
    with pytest.raises(wharf.LeaseLost):
        client.call("jobs.complete", {**params, "leaseToken": "stale"})
    run = client.call("runs.get", {"id": job["id"]})
    assert len(run["steps"]) == 2 and run["currentJobId"] == r1["nextJobId"]
    with pytest.raises(wharf.InvalidParams) as e:
        client.call("jobs.complete", {**params, "next": {"payload": 1, "priority": 5000}})
    assert e.value.data["field"] == "next.priority"


@requires("runs.get", "jobs.complete")
def test_step_completions_in_one_statement_answer_each_call(client, unique):
    """Step completions sent together are completed by one statement on the server: a mix of first
    steps, later steps, the same completion twice, a stale token and a job that does not exist each get
    their own answer, and each run gets exactly one next step."""
    for _ in range(3):
        client.jobs.enqueue(unique, "a", {"v": 0})
    first = [_lease(client, unique) for _ in range(3)]
    r = client.batch([("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"], "result": {"v": 1},
                                         "next": {"payload": {"v": 1}}}) for j in first], return_exceptions=False)
    second = {s["id"]: s for s in (_lease(client, unique) for _ in range(3))}
    assert set(second) == {x["nextJobId"] for x in r}
    a, b, c = (second[x["nextJobId"]] for x in r)
    done_a = {"id": a["id"], "leaseToken": a["leaseToken"], "result": {"v": 2}, "next": {"payload": {"v": 2}}}
    out = client.batch([
        ("jobs.complete", done_a),
        ("jobs.complete", {"id": b["id"], "leaseToken": "stale", "next": {"payload": 9}}),
        ("jobs.complete", done_a),
        ("jobs.complete", {"id": "999999999", "leaseToken": "x", "next": {"payload": 9}}),
        ("jobs.complete", {"id": c["id"], "leaseToken": c["leaseToken"], "result": {"v": 2},
                           "next": {"payload": {"v": 2}, "queue": unique + "-other"}}),
    ])
    assert out[0] == out[2] and out[0]["state"] == "completed", out
    assert isinstance(out[1], wharf.LeaseLost), out
    assert isinstance(out[3], wharf.NotFound), out
    assert out[4]["state"] == "completed" and out[4]["nextJobId"] not in (out[0]["nextJobId"],), out
    assert client.jobs.get(id=out[4]["nextJobId"])["queue"] == unique + "-other"
    run_a = client.call("runs.get", {"id": first[0]["id"]})
    assert run_a["state"] == "running" and run_a["outputs"] == [{"v": 1}, {"v": 2}]
    assert [s["jobId"] for s in run_a["steps"]] == [first[0]["id"], a["id"], out[0]["nextJobId"]]
    assert client.jobs.get(id=out[0]["nextJobId"])["meta"]["run"] == {"id": first[0]["id"], "step": 2}
    # b was not completed: it still runs under its lease and its run still points at it.
    assert client.jobs.get(id=b["id"])["state"] == "running"
    assert client.call("runs.get", {"id": first[1]["id"]})["currentJobId"] == b["id"]


@requires("runs.get", "runs.cancel", "jobs.complete")
def test_runs_cancel_cancels_pending_step_and_refuses_running_one(client, unique):
    # Pending: the next step waits an hour; cancelling the run cancels it.
    a = client.jobs.enqueue(unique, "a", None)
    j = _lease(client, unique)
    r = client.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"],
                                      "next": {"payload": None, "delayMs": 3_600_000}})
    assert client.jobs.get(id=r["nextJobId"])["state"] == "scheduled"
    c = client.call("runs.cancel", {"id": a["id"]})
    assert c == {"id": a["id"], "state": "cancelled", "cancelled": True, "cancelledJobId": r["nextJobId"]}
    assert client.jobs.get(id=r["nextJobId"])["state"] == "cancelled"
    assert client.call("runs.cancel", {"id": a["id"]})["cancelled"] is False

    # Running: the step's completion (with or without next) is refused as cancelled.
    b = client.jobs.enqueue(unique, "b", None)
    j = _lease(client, unique)
    r = client.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"], "next": {"payload": 1}})
    step1 = _lease(client, unique)
    assert step1["id"] == r["nextJobId"]
    client.call("runs.cancel", {"id": b["id"]})
    with pytest.raises(wharf.JobCancelled):
        client.call("jobs.complete", {"id": step1["id"], "leaseToken": step1["leaseToken"], "next": {"payload": 2}})
    with pytest.raises(wharf.JobCancelled):
        client.call("jobs.complete", {"id": step1["id"], "leaseToken": step1["leaseToken"]})
    run = client.call("runs.get", {"id": b["id"]})
    assert run["state"] == "cancelled" and len(run["steps"]) == 2
    # Its cancelled step, retried, does not take the run up again.
    client.call("jobs.retry", {"id": step1["id"]})
    again = _lease(client, unique)
    assert again["id"] == step1["id"]
    with pytest.raises(wharf.JobCancelled):
        client.call("jobs.complete", {"id": again["id"], "leaseToken": again["leaseToken"], "next": {"payload": 2}})
    assert client.jobs.get(id=step1["id"])["state"] == "cancelled"
    run = client.call("runs.get", {"id": b["id"]})
    assert run["state"] == "cancelled" and len(run["steps"]) == 2
    with pytest.raises(wharf.NotFound):
        client.call("runs.get", {"id": "999999999"})


@requires("batches.get", "jobs.enqueueBatch")
def test_batch_of_1000_fires_its_callbacks_once(client, make_worker, unique):
    cb_queue = unique + "-cb"
    jobs = [{"queue": unique, "kind": "item", "payload": {"i": i}, "maxAttempts": 1} for i in range(1000)]
    reply = client.call("jobs.enqueueBatch", {"jobs": jobs, "batch": {
        "onSuccess": {"queue": cb_queue, "kind": "all-good"},
        "onFailure": {"queue": cb_queue, "kind": "some-failed", "payload": {"report": "x"}},
        "onFinish": {"queue": cb_queue, "kind": "finished"}}})
    batch_id = reply["batchId"]
    assert len(reply["jobs"]) == 1000
    progress = client.call("batches.get", {"id": batch_id})
    assert progress["state"] == "running" and progress["pending"] == 1000 and progress["callbackJobs"] is None
    failing = {7, 500, 999}
    w = make_worker([unique], concurrency=16)

    @w.task("item")
    def item(payload):
        if payload["i"] in failing:
            raise wharf.Discard("no")
        return payload["i"]

    w.run_in_thread()
    done = wait_for(lambda: client.call("batches.get", {"id": batch_id})["state"] == "finished", timeout=60)
    assert done
    b = client.call("batches.get", {"id": batch_id})
    failed_ids = sorted(reply["jobs"][i]["id"] for i in failing)
    assert (b["total"], b["completed"], b["dead"], b["cancelled"], b["pending"]) == (1000, 997, 3, 0, 0)
    assert sorted(b["failedIds"]) == failed_ids
    assert set(b["callbackJobs"]) == {"onFailure", "onFinish"}
    time.sleep(0.5)
    made = client.jobs.list(queue=cb_queue, limit=100)["jobs"]
    assert sorted(j["kind"] for j in made) == ["finished", "some-failed"]
    failure = next(j for j in made if j["kind"] == "some-failed")
    assert failure["id"] == b["callbackJobs"]["onFailure"]
    p = failure["payload"]
    assert (p["batchId"], p["callback"], p["total"], p["completed"], p["dead"]) == (batch_id, "onFailure", 1000, 997, 3)
    assert sorted(p["failedIds"]) == failed_ids and p["payload"] == {"report": "x"}


@requires("batches.get", "jobs.enqueueBatch")
def test_batch_callback_is_validated_up_front(client, unique):
    with pytest.raises(wharf.InvalidParams) as e:
        client.call("jobs.enqueueBatch", {"jobs": [{"queue": unique, "kind": "k"}],
                                          "batch": {"onFinish": {"queue": unique}}})
    assert e.value.data["field"] == "batch.onFinish.kind"
    with pytest.raises(wharf.InvalidParams) as e:
        client.call("jobs.enqueueBatch", {"jobs": [{"queue": unique, "kind": "k"}],
                                          "batch": {"onFinish": {"queue": unique, "kind": "k", "priority": 5000}}})
    assert e.value.data["field"] == "batch.onFinish.priority"
    assert client.jobs.list(queue=unique)["jobs"] == []


@requires("jobs.enqueue", "jobs.enqueueBatch")
def test_diamond_dependencies_run_in_order(client, make_worker, unique):
    a = client.jobs.enqueue(unique, "node", {"name": "A"})["id"]
    bc = client.call("jobs.enqueueBatch", {"jobs": [
        {"queue": unique, "kind": "node", "payload": {"name": "B"}, "dependsOn": [a]},
        {"queue": unique, "kind": "node", "payload": {"name": "C"}, "dependsOn": [a]}]})["jobs"]
    assert [j["state"] for j in bc] == ["waiting", "waiting"]
    d = client.call("jobs.enqueue", {"queue": unique, "kind": "node", "payload": {"name": "D"},
                                     "dependsOn": [j["id"] for j in bc]})
    assert d["state"] == "waiting"
    assert client.jobs.list(queue=unique, state="waiting")["jobs"].__len__() == 3
    order = []
    lock = threading.Lock()
    w = make_worker([unique], concurrency=4)

    @w.task("node")
    def node(payload):
        with lock:
            order.append(("start", payload["name"]))
        time.sleep(0.05)
        with lock:
            order.append(("end", payload["name"]))

    w.run_in_thread()
    assert wait_for(lambda: client.jobs.get(id=d["id"])["state"] == "completed")
    pos = {e: i for i, e in enumerate(order)}
    assert pos[("end", "A")] < pos[("start", "B")] and pos[("end", "A")] < pos[("start", "C")]
    assert pos[("end", "B")] < pos[("start", "D")] and pos[("end", "C")] < pos[("start", "D")]
    assert len(order) == 8


@requires("jobs.enqueue")
def test_on_dependency_failure_cancel_and_run(client, unique):
    a = client.jobs.enqueue(unique, "a", None)["id"]
    cancel = client.call("jobs.enqueue", {"queue": unique, "kind": "c", "dependsOn": [a]})["id"]
    run = client.call("jobs.enqueue", {"queue": unique, "kind": "r", "dependsOn": [a], "onDependencyFailure": "run"})["id"]
    j = _lease(client, unique)
    assert j["id"] == a  # the waiting jobs are not leased
    assert client.call("jobs.lease", {"queues": [unique], "max": 10, "worker": "t"})["jobs"] == []
    client.call("jobs.fail", {"id": a, "leaseToken": j["leaseToken"], "error": "boom", "retryable": False})
    c = client.jobs.get(id=cancel)
    assert c["state"] == "cancelled" and c["lastError"]["reason"] == "dependency_failed"
    assert client.jobs.get(id=run)["state"] == "available"
    assert _lease(client, unique)["id"] == run
    # A dependency already dead applies the policy at once; an unknown one is refused.
    assert client.call("jobs.enqueue", {"queue": unique, "kind": "c", "dependsOn": [a]})["state"] == "cancelled"
    with pytest.raises(wharf.InvalidParams):
        client.call("jobs.enqueue", {"queue": unique, "kind": "c", "dependsOn": ["999999999"]})
    with pytest.raises(wharf.InvalidParams) as e:
        client.call("jobs.enqueue", {"queue": unique, "kind": "c", "dependsOn": [a], "onDependencyFailure": "x"})
    assert e.value.data["field"] == "onDependencyFailure"
    # A waiting job can be cancelled.
    b = client.jobs.enqueue(unique, "b", None, delay_ms=3_600_000)["id"]
    waiting = client.call("jobs.enqueue", {"queue": unique, "kind": "w", "dependsOn": [b]})["id"]
    assert client.call("jobs.cancel", {"id": waiting})["cancelled"] is True


WORKER_MODULE = '''
import os, random, time
import wharf

worker = wharf.Worker(queues=[os.environ["WF_QUEUE"]], port=int(os.environ["WF_PORT"]), concurrency=16, poll_ms=200,
                      lease_ms=2_000)

@worker.task("step")
def step(payload):
    time.sleep(random.random() * 0.01)
    k = payload["step"]
    if k == 4:
        return {"run": payload["run"], "trail": payload["trail"] + [k]}
    return wharf.Next({"run": payload["run"], "step": k + 1, "trail": payload["trail"] + [k]})
'''


@requires("runs.get", "jobs.complete")
def test_sigkilled_workers_during_concurrent_runs(server, client, unique, tmp_path):
    """SIGKILL of workers, again and again, while 1,000 five-step runs go on: every run completes with
    its outputs intact, and exactly one job per step (a step completed twice would have made two next
    steps; a completed step run again would show a completed attempt in its history)."""
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "wf_chaos_worker.py").write_text(WORKER_MODULE)
    env = {**os.environ, "WF_QUEUE": unique, "WF_PORT": str(server.port),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}

    def start():
        return subprocess.Popen([sys.executable, "-m", "wharf.worker", "wf_chaos_worker:worker", "--log-level", "ERROR"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    runs = 1000
    ids = [j["id"] for j in client.call("jobs.enqueueBatch", {"jobs": [
        {"queue": unique, "kind": "step", "payload": {"run": i, "step": 0, "trail": []}} for i in range(runs)]})["jobs"]]
    workers = [start() for _ in range(3)]
    kills = 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(0.4)
            states = client.call("runs.list", {"state": "completed", "limit": 1000})["runs"]
            if sum(1 for r in states if r["id"] in set(ids)) == runs:
                break
            victim = workers[kills % len(workers)]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            workers[(kills - 1) % len(workers)] = start()
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
            w.wait()
    assert kills >= 3
    for i, run_id in enumerate(ids):
        run = client.call("runs.get", {"id": run_id})
        assert run["state"] == "completed", run
        assert [s["step"] for s in run["steps"]] == [0, 1, 2, 3, 4], run["steps"]
        assert run["outputs"] == [{"run": i, "step": k + 1, "trail": list(range(k + 1))} for k in range(4)] + [
            {"run": i, "trail": [0, 1, 2, 3, 4]}]
        for s in run["steps"]:
            assert s["state"] == "completed"
            assert all(a["outcome"] != "completed" for a in s["attempts"]), s


@requires("runs.get", "batches.get", "jobs.enqueueBatch")
def test_client_helpers(client, unique):
    a = client.jobs.enqueue(unique, "a", 1)
    b = client.jobs.enqueue(unique, "b", 2, depends_on=[a["id"]], on_dependency_failure="run")
    assert b["state"] == "waiting"
    made = client.jobs.enqueue_batch(
        [{"queue": unique, "kind": "c", "depends_on": [a["id"]]}],
        batch={"on_finish": {"queue": unique + "-cb", "kind": "done", "max_attempts": 2}})
    assert made["jobs"][0]["state"] == "waiting"
    assert client.batches.get(made["batchId"])["callbacks"] == {
        "onFinish": {"queue": unique + "-cb", "kind": "done", "maxAttempts": 2}}
    j = client.jobs.lease(unique, "t")["jobs"][0]
    r = client.jobs.complete(j["id"], j["leaseToken"], {"out": 1}, next={"payload": {"in": 1}, "delay_ms": 3_600_000})
    assert client.runs.get(r["runId"])["outputs"] == [{"out": 1}]
    assert client.jobs.get(r["nextJobId"])["state"] == "scheduled"
    assert client.runs.cancel(r["runId"])["cancelled"] is True
    assert client.runs.list(state="cancelled")["runs"][0]["id"] == r["runId"]


@requires("runs.get", "jobs.complete")
def test_sigkilled_server_during_concurrent_runs(tmp_path):
    """SIGKILL of the server (restarted on the same database and port) while 1,000 five-step runs go on:
    every run completes with its outputs intact and one job per step."""
    import os
    import signal
    import subprocess
    import sys

    from wharf.testing import WharfServer

    srv = WharfServer(extra_args=["--http-listen", "off"])
    database, port = srv.database, srv.port
    (tmp_path / "wf_chaos_worker.py").write_text(WORKER_MODULE)
    queue = "server-chaos"
    env = {**os.environ, "WF_QUEUE": queue, "WF_PORT": str(port),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen(
        [sys.executable, "-m", "wharf.worker", "wf_chaos_worker:worker", "--log-level", "CRITICAL"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    runs = 1000
    kills = 0
    try:
        with srv.client() as c:
            ids = [j["id"] for j in c.call("jobs.enqueueBatch", {"jobs": [
                {"queue": queue, "kind": "step", "payload": {"run": i, "step": 0, "trail": []}}
                for i in range(runs)]})["jobs"]]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1.0)
            with srv.client() as c:
                done = c.call("runs.list", {"state": "completed", "limit": 1000})["runs"]
            if len(done) == runs:
                break
            if kills < 3:
                srv.stop(signal.SIGKILL)
                kills += 1
                srv = WharfServer(database=database, port=port, extra_args=["--http-listen", "off"])
        assert kills >= 1
        with srv.client() as c:
            for i, run_id in enumerate(ids):
                run = c.call("runs.get", {"id": run_id})
                assert run["state"] == "completed", run
                assert [s["step"] for s in run["steps"]] == [0, 1, 2, 3, 4]
                assert run["outputs"][-1] == {"run": i, "trail": [0, 1, 2, 3, 4]}
                assert all(a["outcome"] != "completed" for s in run["steps"] for a in s["attempts"])
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
            w.wait()
        srv.stop()


def test_batches_finishing_in_opposite_orders_on_two_replicas(tmp_path):
    """Two replicas complete jobs of the same two batches in opposite orders at the same moment: each
    statement locks one batch row and then waits for the other's (a test trigger holds each batch row
    0.3 s), PostgreSQL aborts one for the deadlock, and its calls are run again one by one rather than
    failing; each batch finishes once and fires its callback once."""
    db = fresh_database()
    a, b = WharfServer(database=db), WharfServer(database=db)
    # The leasing connection stays open: a worker's connection that closes gives its leases back.
    holder = a.client()
    try:
        q = "deadlock"
        batches = [holder.call("jobs.enqueueBatch", {
            "jobs": [{"queue": q, "kind": "k"}, {"queue": q, "kind": "k"}],
            "batch": {"onFinish": {"queue": q + "-cb", "kind": "cb"}}}) for _ in range(2)]
        leased = {j["id"]: j for j in holder.call("jobs.lease", {"queues": [q], "max": 4, "worker": "w"})["jobs"]}
        assert len(leased) == 4
        (a1, a2), (b1, b2) = ([leased[j["id"]] for j in bt["jobs"]] for bt in batches)
        # A table of some size, analysed, so that a completion updates its jobs in the order the calls
        # came (an index probe per call) rather than in the table's order.
        for _ in range(5):
            holder.call("jobs.enqueueBatch", {"jobs": [{"queue": "filler", "kind": "k"}] * 1000})
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", "analyze wharf.jobs"], check=True)
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", """
            create function public.slow_batch_update() returns trigger language plpgsql as $$
            begin perform pg_sleep(0.3); return new; end $$;
            create trigger slow_batch_update before update on wharf.batches
                for each row execute function public.slow_batch_update();"""], check=True)
        start = threading.Barrier(2)
        results = {}

        def complete(server, name, jobs):
            with server.client() as c:
                start.wait()
                results[name] = c.batch([("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"]})
                                         for j in jobs])

        threads = [threading.Thread(target=complete, args=(a, "a", [a1, b1])),
                   threading.Thread(target=complete, args=(b, "b", [b2, a2]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for name in ("a", "b"):
            assert all(isinstance(r, dict) and r["state"] == "completed" for r in results[name]), results
        for bt in batches:
            got = holder.call("batches.get", {"id": bt["batchId"]})
            assert got["state"] == "finished" and got["completed"] == 2, got
            assert set(got["callbackJobs"]) == {"onFinish"}, got
        assert len(holder.call("jobs.list", {"queue": "deadlock-cb"})["jobs"]) == 2
    finally:
        holder.close()
        a.stop()
        b.stop()
