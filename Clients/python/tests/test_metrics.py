"""GET /metrics after a scripted workload: the counters and histograms counted on the loop match what the
test did (jobs enqueued, completed, failed, dead, lost; a schedule fire; locks granted, waited, expired; a
failing webhook's attempts), read with the `prometheus_client` text parser."""

from __future__ import annotations

import pathlib
import re
import socket
import subprocess
import threading
import time
import urllib.request
from typing import Callable, Dict, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

import wharf
from wharf.pytest_plugin import start_server
from wharf.testing import wharf_bin


@pytest.fixture(scope="module")
def server():
    s = start_server(extra_args=["--allow-private-webhooks", "--webhook-retry-schedule", "0,200ms"])
    yield s
    s.stop()


@pytest.fixture
def client(server):
    c = wharf.Client(server.host, server.port, timeout=20)
    yield c
    c.close()


def scrape(server) -> Dict[tuple, float]:
    """Every sample of one scrape, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out: Dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Dict[tuple, float], name: str, **labels: str) -> Optional[float]:
    return samples.get((name, tuple(sorted(labels.items()))))


def eventually(server, check: Callable[[Dict[tuple, float]], bool], timeout: float = 15.0) -> Dict[tuple, float]:
    """Scrapes until `check` holds (counters are counted when statements commit, gauges are cached 1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_job_counters_and_histograms_match_the_workload(server, client):
    q = "metrics-jobs"
    ids = [client.jobs.enqueue(q, "work", {"n": i})["id"] for i in range(10)]
    leased = client.jobs.lease(q, "w1", max=10)["jobs"]
    assert sorted(j["id"] for j in leased) == sorted(ids)
    for j in leased[:6]:
        client.jobs.complete(j["id"], j["leaseToken"])
    for j in leased[6:9]:
        client.jobs.fail(j["id"], j["leaseToken"], "boom", retryable=False)
    last = leased[9]
    client.jobs.fail(last["id"], last["leaseToken"], "again", retryable=True, retry_in_ms=600_000)

    # One job whose lease runs out with no attempt left: lost, then dead.
    lost_q = "metrics-lost"
    client.jobs.enqueue(lost_q, "work", max_attempts=1)
    assert len(client.jobs.lease(lost_q, "w2", lease_ms=1000)["jobs"]) == 1

    s = eventually(
        server,
        lambda s: value(s, "wharf_jobs_leases_lost_total", queue=lost_q, reason="lease_expired") == 1
        and value(s, "wharf_jobs", queue=q, state="retryable") == 1,
    )
    assert value(s, "wharf_jobs_enqueued_total", queue=q) == 10
    assert value(s, "wharf_jobs_completed_total", queue=q) == 6
    assert value(s, "wharf_jobs_failed_total", queue=q) == 4
    assert value(s, "wharf_jobs_dead_total", queue=q) == 3
    assert value(s, "wharf_jobs_pickup_latency_seconds_count", queue=q) == 10
    assert value(s, "wharf_jobs_run_duration_seconds_count", queue=q) == 10
    assert value(s, "wharf_jobs_leases_lost_total", queue=lost_q, reason="lease_expired") == 1
    assert value(s, "wharf_jobs_dead_total", queue=lost_q) == 1
    assert value(s, "wharf_jobs_enqueued_total", queue=lost_q) == 1
    assert value(s, "wharf_jobs_leases_lost_total", queue=q, reason="lease_expired") is None
    # The database gauge: the one job waiting to retry; none available or running.
    assert value(s, "wharf_jobs", queue=q, state="running") is None
    # Leased at once after their enqueue, run for moments: far below 10 s in all.
    assert value(s, "wharf_jobs_pickup_latency_seconds_sum", queue=q) < 10
    assert value(s, "wharf_jobs_run_duration_seconds_sum", queue=q) < 10


def test_a_schedule_fire_is_counted_by_schedule(server, client):
    name = "metrics-every-second"
    client.cron.upsert(name, expression="* * * * * *", limit=1, job={"queue": "metrics-cron", "kind": "tick"})
    s = eventually(server, lambda s: value(s, "wharf_cron_schedule_fires_total", schedule=name) == 1)
    assert value(s, "wharf_cron_schedule_fires_total", schedule=name) == 1
    assert value(s, "wharf_cron_fire_lag_seconds_count") == 1
    assert value(s, "wharf_jobs_enqueued_total", queue="metrics-cron") == 1
    assert value(s, "wharf_cron_schedule_skipped_total", schedule=name) is None



def test_fires_skipped_while_a_run_holds_the_schedule_match_its_stats(server, client):
    # overlap "skip": while the first fire's job runs (leased, not finished), later fires are skipped.
    name, queue = "metrics-skipping", "metrics-skip"
    client.cron.upsert(name, expression="* * * * * *", overlap="skip", job={"queue": queue, "kind": "tick"})
    job = client.jobs.lease(queue, "w", wait_ms=5_000, lease_ms=60_000)["jobs"][0]
    eventually(server, lambda s: (value(s, "wharf_cron_schedule_skipped_total", schedule=name) or 0) >= 2)
    client.cron.pause(name)
    stats = client.cron.get(name)["stats"]
    s = eventually(
        server,
        lambda s: value(s, "wharf_cron_schedule_skipped_total", schedule=name) == stats["skippedOverlap"]
        and value(s, "wharf_cron_schedule_fires_total", schedule=name) == stats["runs"],
        timeout=5,
    )
    assert stats["runs"] == 1 and stats["skippedOverlap"] >= 2, stats
    assert value(s, "wharf_cron_schedule_fires_total", schedule=name) == stats["runs"]
    assert value(s, "wharf_cron_schedule_skipped_total", schedule=name) == stats["skippedOverlap"]
    assert value(s, "wharf_jobs_enqueued_total", queue=queue) == 1
    client.jobs.complete(job["id"], job["leaseToken"])
    client.cron.remove(name)

def test_locks_granted_waited_and_expired(server, client):
    first = client.locks.acquire("metrics-lock", "a", 10_000)
    assert first["granted"] is True
    got: dict = {}

    def waiter() -> None:
        with wharf.Client(server.host, server.port, timeout=20) as c:
            got["reply"] = c.locks.acquire("metrics-lock", "b", 10_000, wait_ms=10_000)
            c.locks.release("metrics-lock", got["reply"]["token"])

    t = threading.Thread(target=waiter)
    t.start()
    eventually(server, lambda s: value(s, "wharf_lock_waiters") == 1)
    client.locks.release("metrics-lock", first["token"])
    t.join(15)
    assert got["reply"]["granted"] is True
    # A hold nobody releases runs out.
    assert client.locks.acquire("metrics-expiring", "c", 300)["granted"] is True
    s = eventually(server, lambda s: value(s, "wharf_locks_expired_total") == 1)
    assert value(s, "wharf_locks_granted_total") == 3
    assert value(s, "wharf_locks_waited_total") == 1
    assert value(s, "wharf_locks_expired_total") == 1


def test_a_failing_webhook_counts_its_attempts(server, client):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        e = client.webhooks.register(f"http://127.0.0.1:{port}/hook")
        client.webhooks.send({"n": 1}, endpoint_id=e["id"])
        s = eventually(server, lambda s: value(s, "wharf_webhook_attempts_total", outcome="failed") == 1)
    assert value(s, "wharf_webhook_attempts_total", outcome="retry") == 1
    assert value(s, "wharf_webhook_attempts_total", outcome="failed") == 1
    assert value(s, "wharf_webhook_attempts_total", outcome="succeeded") is None
    assert value(s, "wharf_webhook_delivery_duration_seconds_count") == 2


def test_wharf_top_once_shows_the_workload(server, client):
    # After the tests above (same server): the jobs queue's row, the schedule and the failing endpoint.
    # The database gauges are cached for a second: wait until they show the end of the lock test.
    eventually(
        server,
        lambda s: value(s, "wharf_lock_waiters") == 0 and value(s, "wharf_locks_held") == 0
        and value(s, "wharf_webhook_endpoints", state="failing") == 1,
    )
    out = subprocess.run(
        [wharf_bin(), "top", "--once", "--http", f"{server.host}:{server.http_port}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    lines = out.splitlines()
    head = next(line.split() for line in lines if line.startswith("QUEUE"))
    row = dict(zip(head, next(line.split() for line in lines if line.startswith("metrics-jobs "))))
    assert row == {
        "QUEUE": "metrics-jobs", "AVAIL": "0", "SCHED": "0", "RUN": "0", "RETRY": "1", "OLDEST": "-",
        "ENQUEUED": "10", "DONE": "6", "FAILED": "4", "DEAD": "3", "LOST": "0",
    }, out
    schedule = next(line.split() for line in lines if line.startswith("metrics-every-second"))
    assert schedule[:4] == ["metrics-every-second", "1", "0", "0"], out
    assert "endpoints: 0 healthy, 1 failing, 0 disabled" in out, out
    assert "attempts: 0 succeeded, 1 retried, 1 failed" in out, out
    assert "0 held, 0 waiting; 3 granted, 1 waited, 1 expired" in out, out


ROOT = pathlib.Path(__file__).resolve().parents[3]


def documented_metrics() -> set:
    """The metric names in Protocol/http.md's tables."""
    text = (ROOT / "Protocol" / "http.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `wharf_")]
    return {name for row in rows for name in re.findall(r"`(wharf_[a-z0-9_]+)`", row.split("|")[1])}


def test_every_served_metric_is_documented_and_the_alerts_use_served_names(server):
    # After the workload above, so that the labelled families have been made.
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as r:
        served = set(re.findall(r"^# TYPE (\S+) ", r.read().decode(), re.MULTILINE))
    documented = documented_metrics()
    assert served - documented == set(), "served but not in Protocol/http.md"
    assert {"wharf_jobs_enqueued_total", "wharf_cron_fire_lag_seconds", "wharf_webhook_attempts_total"} <= served
    alerts = (ROOT / "deploy" / "wharf-alerts.yml").read_text()
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for m in re.findall(r"\b(wharf_[a-z0-9_]+)", alerts)}
    assert used and used - documented == set(), "deploy/wharf-alerts.yml uses names GET /metrics does not serve"
