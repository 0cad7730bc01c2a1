"""Batches (Protocol/workflows.md) against a live server: webhook callbacks delivered to a real local
receiver (signatures checked by the `standardwebhooks` package), and uniqueKey / idempotencyKey on the
jobs of a batch or with `dependsOn`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time

import pytest
import test_webhooks_delivery as delivery_tests
from _wharf_support import requires, wait_for
from test_metrics import scrape, value

import wharf
from wharf.testing import wharf_bin

# The webhook tests' fixtures: their server (private targets allowed, fast retries), a client of it, and
# the local receiver that verifies signatures.
hooks_server = delivery_tests.hooks_server
hc = delivery_tests.hc
receiver = delivery_tests.receiver


@pytest.fixture
def server(hooks_server):
    return hooks_server


@pytest.fixture
def client(hc):
    return hc


def _endpoint(client, receiver, path):
    e = client.webhooks.register(receiver.url(path))
    receiver.secrets[path] = e["secret"]
    return e["id"]


def _batch_posts(receiver, path):
    """The requests at `path` that carry a batch's message (all but the registration's ping)."""
    return [r for r in receiver.at(path) if b'"type":"webhook.ping"' not in r["body"]]


def _lease_all(client, queue, n):
    got = []
    while len(got) < n:
        got += client.call("jobs.lease", {"queues": [queue], "max": n - len(got), "worker": "t"})["jobs"]
    return got


def _cli(server, *args):
    done = subprocess.run([wharf_bin(), *args, "--server", server.address], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def _finished(client, batch_id):
    b = client.call("batches.get", {"id": batch_id})
    return b if b["state"] == "finished" else None


@requires("batches.get", "jobs.enqueueBatch", "webhooks.register")
def test_webhook_on_finish_is_one_signed_delivery_with_the_counts(client, server, receiver, unique):
    hook = _endpoint(client, receiver, "/finish")
    reply = client.call("jobs.enqueueBatch", {
        "jobs": [{"queue": unique, "kind": "item", "payload": i, "maxAttempts": 1} for i in range(5)],
        "batch": {"onFinish": {"webhook": {"endpointId": hook, "payload": {"report": "r1"}}},
                  "onSuccess": {"webhook": {"endpointId": hook}},
                  "onFailure": {"queue": unique + "-cb", "kind": "alert"}}})
    batch_id = reply["batchId"]
    b = client.call("batches.get", {"id": batch_id})
    assert b["callbacks"]["onFinish"] == {"webhook": {"endpointId": hook, "payload": {"report": "r1"}}}
    assert b["callbackDeliveries"] is None and b["callbackJobs"] is None
    succeeded_before = value(scrape(server), "wharf_webhook_attempts_total", outcome="succeeded") or 0
    jobs = _lease_all(client, unique, 5)
    failed = sorted((j["id"] for j in jobs[:2]), key=int)
    for j in jobs[:2]:
        client.call("jobs.fail", {"id": j["id"], "leaseToken": j["leaseToken"], "error": "no"})
    for j in jobs[2:]:
        client.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"]})
    b = _finished(client, batch_id)
    assert b is not None and (b["total"], b["completed"], b["dead"]) == (5, 3, 2)
    # onSuccess does not apply (two jobs are dead); onFinish is a delivery, onFailure a job.
    assert set(b["callbackDeliveries"]) == {"onFinish"} and set(b["callbackJobs"]) == {"onFailure"}
    made = b["callbackDeliveries"]["onFinish"]
    assert made["endpointId"] == hook and made["deliveryId"]
    posts = wait_for(lambda: _batch_posts(receiver, "/finish"))
    assert posts and len(posts) == 1, posts
    post = posts[0]
    assert post["verified"] is True
    assert post["id"] == "msg_" + hashlib.md5(f"batch:{batch_id}:onFinish".encode()).hexdigest()
    body = json.loads(post["body"])
    assert body["type"] == "batch.finished"
    assert body["data"] == {"batchId": batch_id, "callback": "onFinish", "total": 5, "completed": 3, "dead": 2,
                            "cancelled": 0, "failedIds": failed, "payload": {"report": "r1"}}
    # The same delivery as webhooks.deliveries lists, attempted once and succeeded.
    d = wait_for(lambda: next((d for d in client.webhooks.deliveries(hook)["deliveries"]
                               if d["id"] == made["deliveryId"] and d["state"] == "succeeded"), None))
    assert d is not None and d["event"] == "batch.finished" and d["attempts"] == 1 and d["messageId"] == post["id"]
    # Counted in the metrics as any delivery's attempt.
    assert value(scrape(server), "wharf_webhook_attempts_total", outcome="succeeded") == succeeded_before + 1
    # The job callback got the same data as its payload.
    cb = client.jobs.get(b["callbackJobs"]["onFailure"])
    assert cb["payload"] == {**body["data"], "callback": "onFailure", "payload": None}
    # `wharf batches get` says what each callback made.
    shown = _cli(server, "batches", "get", batch_id).splitlines()
    assert f"  onFailure: job {cb['id']}" in shown and f"  onFinish: delivery {d['id']} to endpoint {hook}" in shown
    time.sleep(0.5)
    assert len(_batch_posts(receiver, "/finish")) == 1


@requires("batches.get", "jobs.enqueueBatch", "webhooks.register")
def test_200_jobs_completed_by_concurrent_workers_make_one_delivery(client, server, receiver, make_workers, unique):
    hook = _endpoint(client, receiver, "/many")
    reply = client.call("jobs.enqueueBatch", {
        "jobs": [{"queue": unique, "kind": "item", "payload": i} for i in range(200)],
        "batch": {"onSuccess": {"webhook": {"endpointId": hook, "event": "import.done"}},
                  "onFinish": {"webhook": {"endpointId": hook}}}})
    batch_id = reply["batchId"]
    for w in make_workers(4, [unique]):
        @w.task("item")
        def item(payload):
            return payload
        w.run_in_thread()
    b = wait_for(lambda: _finished(client, batch_id), timeout=60)
    assert b is not None and (b["total"], b["completed"]) == (200, 200)
    posts = wait_for(lambda: (lambda p: p if len(p) >= 2 else None)(_batch_posts(receiver, "/many")))
    assert posts is not None
    time.sleep(0.5)
    posts = _batch_posts(receiver, "/many")
    types = sorted(json.loads(p["body"])["type"] for p in posts)
    assert types == ["batch.finished", "import.done"], types
    assert all(p["verified"] is True for p in posts)
    assert all(json.loads(p["body"])["data"]["completed"] == 200 for p in posts)
    deliveries = client.webhooks.deliveries(hook)["deliveries"]
    batch_deliveries = [d for d in deliveries if d["event"] in ("batch.finished", "import.done")]
    assert sorted(d["id"] for d in batch_deliveries) == sorted(
        m["deliveryId"] for m in b["callbackDeliveries"].values())


@pytest.fixture
def make_workers(server):
    started = []

    def make(n, queues):
        for i in range(n):
            started.append(wharf.Worker(queues=queues, port=server.port, poll_ms=200, concurrency=8,
                                        name=f"w{i}"))
        return started

    yield make
    for w in started:
        w.stop(wait_for_jobs=False)


@requires("batches.get", "jobs.enqueueBatch")
def test_unknown_or_malformed_webhook_callback_is_refused_and_nothing_is_made(client, unique):
    job = [{"queue": unique, "kind": "k"}]
    cases = [
        ({"onFinish": {"webhook": {"endpointId": "999999999"}}}, "batch.onFinish.webhook.endpointId"),
        ({"onSuccess": {"webhook": {"endpointId": "x1"}}}, "batch.onSuccess.webhook.endpointId"),
        ({"onFailure": {"webhook": {}}}, "batch.onFailure.webhook.endpointId"),
        ({"onFinish": {"webhook": "http://example.com"}}, "batch.onFinish.webhook"),
        ({"onFinish": {"webhook": {"endpointId": "1", "url": "x"}}}, "batch.onFinish.webhook.url"),
        ({"onFinish": {"webhook": {"endpointId": "1"}, "queue": "q"}}, "batch.onFinish.queue"),
    ]
    for batch, field in cases:
        with pytest.raises(wharf.InvalidParams) as e:
            client.call("jobs.enqueueBatch", {"jobs": job, "batch": batch})
        assert e.value.data["field"] == field, (batch, e.value.data)
    assert client.jobs.list(queue=unique)["jobs"] == []


@requires("batches.get", "jobs.enqueueBatch", "webhooks.remove")
def test_removed_endpoint_skips_its_callback_and_completion_succeeds(client, server, receiver, unique):
    hook = _endpoint(client, receiver, "/removed")
    reply = client.call("jobs.enqueueBatch", {
        "jobs": [{"queue": unique, "kind": "item"}],
        "batch": {"onFinish": {"webhook": {"endpointId": hook}}, "onSuccess": {"queue": unique + "-cb", "kind": "ok"}}})
    client.webhooks.remove(hook)
    (j,) = _lease_all(client, unique, 1)
    assert client.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"]})["state"] == "completed"
    b = _finished(client, reply["batchId"])
    assert b is not None and b["completed"] == 1
    assert b["callbackDeliveries"] == {
        "onFinish": {"endpointId": hook, "deliveryId": None, "skipped": "endpoint_not_found"}}
    assert client.jobs.get(b["callbackJobs"]["onSuccess"])["kind"] == "ok"
    assert f"  onFinish: skipped (endpoint_not_found), endpoint {hook}" in _cli(
        server, "batches", "get", reply["batchId"]).splitlines()
    time.sleep(0.3)
    assert _batch_posts(receiver, "/removed") == []


@requires("batches.get", "jobs.enqueueBatch")
def test_endpoint_removed_while_the_batch_finishes(client, server, receiver, unique):
    """A removal not yet committed when the last job completes: the completion waits for it, then
    records the callback skipped (it neither fails on the delivery's foreign key nor loses the job)."""
    hook = _endpoint(client, receiver, "/racing")
    reply = client.call("jobs.enqueueBatch", {"jobs": [{"queue": unique, "kind": "item"}],
                                              "batch": {"onFinish": {"webhook": {"endpointId": hook}}}})
    (j,) = _lease_all(client, unique, 1)
    remover = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", server.database],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        remover.stdin.write(f"begin; delete from wharf.webhook_endpoints where id = {hook}; select 'removed';\n")
        remover.stdin.flush()
        assert remover.stdout.readline().strip() == "removed"
        outcome = {}

        def complete():
            with wharf.Client(server.host, server.port, timeout=20) as c:
                try:
                    outcome["reply"] = c.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"]})
                except wharf.WharfError as e:
                    outcome["error"] = e

        t = threading.Thread(target=complete)
        t.start()
        waiting = ("select count(*) from pg_stat_activity"
                   " where datname = current_database() and wait_event_type = 'Lock'")
        assert wait_for(lambda: subprocess.run(["psql", "-X", "-A", "-t", "-d", server.database, "-c", waiting],
                                               capture_output=True, text=True).stdout.strip() == "1")
        remover.stdin.write("commit;\n")
        remover.stdin.close()
        remover.wait(timeout=10)
        t.join(timeout=20)
    finally:
        remover.kill()
    assert outcome.get("reply", {}).get("state") == "completed", outcome
    b = _finished(client, reply["batchId"])
    assert b is not None and b["callbackDeliveries"] == {
        "onFinish": {"endpointId": hook, "deliveryId": None, "skipped": "endpoint_not_found"}}


@requires("jobs.enqueue")
def test_dependent_job_with_idempotency_key_replays(client, unique):
    a = client.jobs.enqueue(unique, "a", None)["id"]
    first = client.call("jobs.enqueue", {"queue": unique, "kind": "b", "dependsOn": [a], "idempotencyKey": unique})
    assert first["state"] == "waiting" and first["duplicate"] is False and "replayed" not in first
    again = client.call("jobs.enqueue", {"queue": unique, "kind": "b", "dependsOn": [a], "idempotencyKey": unique})
    assert again == {"id": first["id"], "state": "waiting", "duplicate": False, "replayed": True}
    # A replay does not look at its dependencies again (the first call's stand).
    other = client.call("jobs.enqueue", {"queue": unique, "kind": "b", "dependsOn": ["999999999"],
                                         "idempotencyKey": unique})
    assert other["id"] == first["id"] and other["replayed"] is True
    assert sorted(j["kind"] for j in client.jobs.list(queue=unique)["jobs"]) == ["a", "b"]


@requires("jobs.enqueue")
def test_waiting_job_holds_its_unique_key(client, unique):
    a = client.jobs.enqueue(unique, "a", None)["id"]
    first = client.call("jobs.enqueue", {"queue": unique, "kind": "b", "dependsOn": [a], "uniqueKey": unique})
    assert first["state"] == "waiting"
    dup = client.call("jobs.enqueue", {"queue": unique, "kind": "b", "dependsOn": [a], "uniqueKey": unique})
    assert (dup["id"], dup["state"], dup["duplicate"]) == (first["id"], "waiting", True)
    # A plain enqueue (the client sends an idempotency key too) finds the waiting job.
    plain = client.jobs.enqueue(unique, "b", None, unique_key=unique)
    assert (plain["id"], plain["duplicate"]) == (first["id"], True)
    assert client.jobs.list(unique_key=unique)["jobs"][0]["id"] == first["id"]
    # Once it runs and completes, the key is free again.
    (ja,) = _lease_all(client, unique, 1)
    client.call("jobs.complete", {"id": ja["id"], "leaseToken": ja["leaseToken"]})
    (jb,) = _lease_all(client, unique, 1)
    assert jb["id"] == first["id"]
    client.call("jobs.complete", {"id": jb["id"], "leaseToken": jb["leaseToken"]})
    assert client.jobs.enqueue(unique, "b", None, unique_key=unique)["duplicate"] is False


@requires("batches.get", "jobs.enqueueBatch")
def test_batch_holds_only_the_jobs_it_made(client, unique):
    outside = client.jobs.enqueue(unique, "x", None, unique_key=unique + "-1")["id"]
    reply = client.call("jobs.enqueueBatch", {
        "jobs": [{"queue": unique, "kind": "k", "uniqueKey": unique + "-1"},
                 {"queue": unique, "kind": "k", "uniqueKey": unique + "-2"},
                 {"queue": unique, "kind": "k", "uniqueKey": unique + "-2"},
                 {"queue": unique, "kind": "k"}],
        "batch": {"onFinish": {"queue": unique + "-cb", "kind": "done"}}})
    jobs = reply["jobs"]
    assert [j["duplicate"] for j in jobs] == [True, False, True, False]
    assert jobs[0]["id"] == outside and jobs[2]["id"] == jobs[1]["id"]
    b = client.call("batches.get", {"id": reply["batchId"]})
    assert (b["total"], b["pending"]) == (2, 2)
    assert client.jobs.get(outside)["state"] == "available"
    # Completing the two jobs it made finishes the batch, while the job it found is still pending.
    leased = client.call("jobs.lease", {"queues": [unique], "max": 10, "worker": "t"})["jobs"]
    for j in leased:
        if j["id"] != outside:
            client.call("jobs.complete", {"id": j["id"], "leaseToken": j["leaseToken"]})
    b = _finished(client, reply["batchId"])
    assert b is not None and (b["total"], b["completed"]) == (2, 2)
    assert client.jobs.get(b["callbackJobs"]["onFinish"])["payload"]["total"] == 2
    assert client.jobs.get(outside)["state"] == "running"


@requires("batches.get", "jobs.enqueueBatch")
def test_batch_that_makes_no_job_makes_no_batch(client, unique):
    held = client.jobs.enqueue(unique, "x", None, unique_key=unique)["id"]
    reply = client.call("jobs.enqueueBatch", {"jobs": [{"queue": unique, "kind": "k", "uniqueKey": unique}],
                                              "batch": {"onFinish": {"queue": unique + "-cb", "kind": "done"}}})
    assert reply == {"jobs": [{"id": held, "state": "available", "duplicate": True}], "batchId": None}
    assert client.jobs.list(queue=unique + "-cb")["jobs"] == []


@requires("batches.get", "jobs.enqueueBatch")
def test_repeated_batch_call_answers_the_first_batch(client, unique):
    params = {"jobs": [{"queue": unique, "kind": "k", "payload": i, "idempotencyKey": f"{unique}-{i}"}
                       for i in range(3)],
              "batch": {"onFinish": {"queue": unique + "-cb", "kind": "done"}}}
    first = client.call("jobs.enqueueBatch", params)
    again = client.call("jobs.enqueueBatch", params)
    assert again["batchId"] == first["batchId"]
    assert [j["id"] for j in again["jobs"]] == [j["id"] for j in first["jobs"]]
    assert all(j["replayed"] is True for j in again["jobs"]) and not any("replayed" in j for j in first["jobs"])
    assert len(client.jobs.list(queue=unique)["jobs"]) == 3
    assert client.call("batches.get", {"id": first["batchId"]})["total"] == 3
    # The client's helper sends a key with every job of a batch, and names a webhook callback's fields.
    with pytest.raises(wharf.InvalidParams) as e:
        client.jobs.enqueue_batch([{"queue": unique, "kind": "h"}],
                                  batch={"on_finish": {"webhook": {"endpoint_id": "999999999"}}})
    assert e.value.data["field"] == "batch.onFinish.webhook.endpointId"
    made = client.jobs.enqueue_batch([{"queue": unique, "kind": "h"}], batch={})
    assert client.jobs.get(made["jobs"][0]["id"])["state"] == "available"


@requires("batches.get", "jobs.enqueueBatch")
def test_concurrent_batch_calls_with_one_key_make_one_job(client, server, unique):
    """Two calls racing for one new idempotency key: one makes the job, the other answers it."""
    params = {"jobs": [{"queue": unique, "kind": "k", "idempotencyKey": unique}],
              "batch": {"onFinish": {"queue": unique + "-cb", "kind": "done"}}}
    replies = []

    def call():
        with wharf.Client(server.host, server.port, timeout=20) as c:
            replies.append(c.call("jobs.enqueueBatch", params))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(replies) == 8
    assert len({r["jobs"][0]["id"] for r in replies}) == 1 and len({r["batchId"] for r in replies}) == 1
    assert len(client.jobs.list(queue=unique)["jobs"]) == 1
