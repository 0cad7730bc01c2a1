"""The clients repeat enqueues safely: with an idempotency key, after a lost outcome or while the
database refuses writes, and never without one after a lost outcome."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest
from _wharf_support import requires

import wharf
from wharf.errors import CallTimeout, ConnectionLost, WharfError
from wharf.pytest_plugin import start_server
from wharf.retry import RetryPolicy, carries_idempotency_key
from wharf.testing import database_url


def psql(conninfo: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def dbname(conninfo: str) -> str:
    return next(p.split("=", 1)[1] for p in conninfo.split() if p.startswith("dbname="))


def terminate(conninfo: str) -> None:
    psql(
        database_url(),
        f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{dbname(conninfo)}'",
    )


def test_what_is_safe_to_repeat():
    unavailable = WharfError(-32003, "m", {"reason": "store_unavailable", "retryable": True})
    unknown = WharfError(-32003, "m", {"reason": "outcome_unknown", "retryable": False})
    keyed = {"queue": "q", "kind": "k", "idempotencyKey": "x"}
    assert RetryPolicy.is_safe_to_repeat("jobs.enqueue", {"queue": "q"}, unavailable)
    assert not RetryPolicy.is_safe_to_repeat("jobs.enqueue", keyed, unknown), "the server's word decides"
    assert not RetryPolicy.is_safe_to_repeat("jobs.enqueue", keyed, WharfError(-32602, "m", {}))
    assert RetryPolicy.is_safe_to_repeat("jobs.enqueue", {"queue": "q"}, ConnectionLost("x", sent=False))
    assert not RetryPolicy.is_safe_to_repeat("jobs.enqueue", {"queue": "q"}, ConnectionLost("x"))
    assert RetryPolicy.is_safe_to_repeat("jobs.enqueue", keyed, ConnectionLost("x"))
    assert RetryPolicy.is_safe_to_repeat("jobs.enqueue", keyed, CallTimeout("jobs.enqueue", 1))
    assert not carries_idempotency_key("jobs.enqueue", {"webhook": {}, "idempotencyKey": "x"})
    assert carries_idempotency_key("jobs.enqueueBatch", {"jobs": [keyed, keyed]})
    assert not carries_idempotency_key("jobs.enqueueBatch", {"jobs": [keyed, {"queue": "q"}]})
    policy = RetryPolicy(attempts=8, initial_delay=0.05, max_delay=2.0)
    delays = list(policy.delays())
    assert len(delays) == 7
    assert all(min(2.0, 0.05 * 2**n) / 2 <= d <= min(2.0, 0.05 * 2**n) for n, d in enumerate(delays))
    assert policy.covers("jobs.enqueue") and not policy.covers("jobs.lease")
    assert RetryPolicy(methods=None).covers("jobs.lease") and not RetryPolicy(attempts=1).covers("jobs.enqueue")


@pytest.fixture
def lossy_server():
    """A server with one database connection and a trigger that holds the first commit of a job of
    kind `slow` for 30 s: ending the session then loses that enqueue's outcome."""
    server = start_server(extra_args=["--pool-size", "1"])
    psql(
        server.database,
        """
        create sequence slow_once;
        create function slow_commit() returns trigger language plpgsql as
            $$ begin if nextval('slow_once') = 1 then perform pg_sleep(30); end if; return null; end $$;
        create constraint trigger jobs_slow_commit after insert on wharf.jobs deferrable initially deferred
            for each row when (new.kind = 'slow') execute function slow_commit();
        """,
    )
    yield server
    server.stop()


def end_session_when_sleeping(conninfo: str) -> threading.Thread:
    def run():
        for _ in range(200):
            n = psql(
                database_url(),
                f"select count(*) from pg_stat_activity where datname = '{dbname(conninfo)}' "
                "and wait_event = 'PgSleep'",
            )
            if n != "0":
                terminate(conninfo)
                return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@requires("jobs.enqueue")
def test_a_lost_outcome_is_repeated_with_the_key_and_makes_one_job(lossy_server):
    killer = end_session_when_sleeping(lossy_server.database)
    with wharf.Client(lossy_server.host, lossy_server.port, timeout=40) as c:
        job = c.jobs.enqueue("lossy", "slow")
        assert c.retries >= 1
        killer.join(5)
        jobs = c.jobs.list(queue="lossy")["jobs"]
        assert [j["id"] for j in jobs] == [job["id"]]


@requires("jobs.enqueue")
def test_a_lost_outcome_without_a_key_is_not_repeated(lossy_server):
    killer = end_session_when_sleeping(lossy_server.database)
    with wharf.Client(lossy_server.host, lossy_server.port, timeout=40) as c:
        with pytest.raises(wharf.Unavailable) as e:
            c.jobs.enqueue("lossy", "slow", idempotency_key=None)
        assert e.value.reason == "outcome_unknown" and e.value.retryable is False
        assert c.retries == 0
        killer.join(5)


@requires("jobs.enqueue", "jobs.enqueueBatch")
def test_enqueues_wait_out_a_read_only_database():
    server = start_server()
    try:
        base = database_url()
        name = dbname(server.database)
        psql(base, f"alter database {name} set default_transaction_read_only = on")
        terminate(server.database)

        def writable_again():
            time.sleep(0.7)
            psql(base, f"alter database {name} reset default_transaction_read_only")
            terminate(server.database)

        threading.Thread(target=writable_again, daemon=True).start()

        async def enqueue_async():
            a = wharf.AsyncClient(server.host, server.port, timeout=10)
            try:
                return await a.jobs.enqueue_batch([{"queue": "ro", "kind": "k"}] * 3), a.retries
            finally:
                await a.close()

        with wharf.Client(server.host, server.port, timeout=10) as c:
            # Both start while the database is read-only; each waits it out by itself.
            many_box = {}
            t = threading.Thread(target=lambda: many_box.update(r=asyncio.run(enqueue_async())))
            t.start()
            one = c.jobs.enqueue("ro", "k")
            t.join(15)
            many, async_retries = many_box["r"]
            assert c.retries >= 1 and async_retries >= 1, "the database was read-only at first"
            ids = {j["id"] for j in c.jobs.list(queue="ro")["jobs"]}
            assert ids == {one["id"]} | {j["id"] for j in many["jobs"]} and len(ids) == 4
    finally:
        server.stop()
