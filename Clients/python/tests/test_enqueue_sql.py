"""Enqueueing from SQL in the application's own transaction (`wharf.enqueue`, `wharf.enqueue_batch`).

The application's statements run on their own libpq connection to the server's database (libpq through
ctypes, so the commit's moment is known to the microsecond), beside a real `wharf serve`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import socket
import statistics
import threading
import time
from typing import List, Optional

import pytest

import wharf

_lib: Optional[ctypes.CDLL] = None

# The libpq functions this file calls: name -> (result type, argument types).
_P, _S, _I = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
_SIGNATURES = {
    "PQconnectdb": (_P, [_S]),
    "PQstatus": (_I, [_P]),
    "PQerrorMessage": (_S, [_P]),
    "PQexec": (_P, [_P, _S]),
    "PQresultStatus": (_I, [_P]),
    "PQresultErrorField": (_S, [_P, _I]),
    "PQresultErrorMessage": (_S, [_P]),
    "PQntuples": (_I, [_P]),
    "PQnfields": (_I, [_P]),
    "PQgetvalue": (_S, [_P, _I, _I]),
    "PQgetisnull": (_I, [_P, _I, _I]),
    "PQclear": (None, [_P]),
    "PQfinish": (None, [_P]),
}


def libpq() -> ctypes.CDLL:
    """libpq, loaded once, with the signatures this file uses."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(ctypes.util.find_library("pq") or "libpq.so.5")
        for name, (result, arguments) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype = result
            function.argtypes = arguments
        _lib = lib
    return _lib


class SQLError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate
        self.message = message


class App:
    """An application's own database connection (libpq, blocking, in this thread)."""

    PG_DIAG_SQLSTATE = ord("C")

    def __init__(self, conninfo: str) -> None:
        self.pq = libpq()
        self.conn = self.pq.PQconnectdb(conninfo.encode())
        if self.pq.PQstatus(self.conn) != 0:
            message = self.pq.PQerrorMessage(self.conn).decode()
            self.pq.PQfinish(self.conn)
            raise RuntimeError(f"connecting to {conninfo}: {message}")

    def sql(self, statement: str) -> List[List[Optional[str]]]:
        """Runs `statement`; returns its rows (text values, None for NULL), or raises `SQLError`."""
        r = self.pq.PQexec(self.conn, statement.encode())
        try:
            if self.pq.PQresultStatus(r) not in (1, 2):  # PGRES_COMMAND_OK, PGRES_TUPLES_OK
                state = (self.pq.PQresultErrorField(r, self.PG_DIAG_SQLSTATE) or b"").decode()
                raise SQLError(state, (self.pq.PQresultErrorMessage(r) or b"").decode().strip())
            return [
                [
                    None if self.pq.PQgetisnull(r, i, j) else self.pq.PQgetvalue(r, i, j).decode()
                    for j in range(self.pq.PQnfields(r))
                ]
                for i in range(self.pq.PQntuples(r))
            ]
        finally:
            self.pq.PQclear(r)

    def close(self) -> None:
        self.pq.PQfinish(self.conn)


@pytest.fixture
def app(server):
    a = App(server.database)
    yield a
    a.close()


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_a_committed_enqueue_is_an_ordinary_job(app, client, unique):
    app.sql("begin")
    app.sql("create temporary table orders (id int)")
    app.sql("insert into orders values (42)")
    [[job_id, state]] = app.sql(
        f"select id, state from wharf.enqueue({quoted(unique)}, 'order.confirm', '{{\"order\": 42}}',"
        " priority => 7, tags => array['orders'], meta => '{\"by\": \"sql\"}', max_attempts => 3)"
    )
    assert state == "available"
    # Not there for anyone else until the application commits.
    with pytest.raises(wharf.NotFound):
        client.jobs.get(id=job_id)
    assert client.jobs.lease(unique, "w")["jobs"] == []
    app.sql("commit")

    job = client.jobs.get(id=job_id)
    assert (job["queue"], job["kind"], job["payload"], job["priority"]) == (unique, "order.confirm", {"order": 42}, 7)
    assert (job["tags"], job["meta"], job["maxAttempts"], job["state"]) == (["orders"], {"by": "sql"}, 3, "available")
    [leased] = client.jobs.lease(unique, "w")["jobs"]
    assert leased["id"] == job_id and leased["attempt"] == 1
    assert client.jobs.complete(id=job_id, lease_token=leased["leaseToken"])["state"] == "completed"


def test_a_rolled_back_enqueue_leaves_nothing(app, client, unique):
    app.sql("begin")
    [[job_id]] = app.sql(f"select id from wharf.enqueue({quoted(unique)}, 'k')")
    [[made]] = app.sql(f"select count(*) from wharf.jobs where queue = {quoted(unique)}")
    assert made == "1"
    app.sql("rollback")
    assert app.sql(f"select count(*) from wharf.jobs where queue = {quoted(unique)}") == [["0"]]
    with pytest.raises(wharf.NotFound):
        client.jobs.get(id=job_id)
    assert client.jobs.lease(unique, "w")["jobs"] == []
    assert client.queues.stats(queue=unique)["counts"]["available"] == 0


def test_sql_and_protocol_share_unique_and_idempotency_keys(app, client, unique):
    first = client.jobs.enqueue(unique, "k", unique_key=unique, idempotency_key=None)
    [[same, created]] = app.sql(
        f"select job_id, created from wharf.enqueue_batch(array[{quoted(unique)}], array['k'],"
        f" unique_key => array[{quoted(unique)}])"
    )
    assert (same, created) == (first["id"], "f")
    [[keyed]] = app.sql(f"select id from wharf.enqueue({quoted(unique)}, 'k', idempotency_key => {quoted(unique)})")
    again = client.jobs.enqueue(unique, "k", idempotency_key=unique)
    assert again["id"] == keyed and again["replayed"] is True


def test_a_batch_from_sql_reports_each_row_and_runs_at_its_time(app, client, unique):
    rows = app.sql(
        "select ord, job_id, job_state, created, replayed from wharf.enqueue_batch("
        f" queue => array[{quoted(unique)}, {quoted(unique)}, {quoted(unique)}],"
        " kind => array['a', 'b', 'c'],"
        " payload => array['1', '{\"x\": 2}', null]::jsonb[],"
        " run_at => array[null, now() + interval '1 hour', null]::timestamptz[],"
        " idempotency_key => array[null, null, 'key-' || txid_current()::text])"
    )
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("1", "available", "t", "f"),
        ("2", "scheduled", "t", "f"),
        ("3", "available", "t", "f"),
    ]
    assert client.jobs.get(id=rows[1][1])["payload"] == {"x": 2}
    assert client.jobs.get(id=rows[2][1])["payload"] is None


def test_a_batch_without_keys_answers_each_row_with_the_job_it_made(app, client, unique):
    """No unique key, schedule fire or id in the batch: the function's plain insert (no conflict to look
    for). Each row still answers, in order, with its own new job as made from that row."""
    q = quoted(unique)
    rows = app.sql(
        "select ord, job_id, job_state, created, replayed from wharf.enqueue_batch("
        f" queue => array[{q}, {q}, {q}, {q}],"
        " kind => array['a', 'b', 'c', 'd'],"
        " payload => array['1', '{\"x\": 2}', null, '\"s\"']::jsonb[],"
        " run_at => array[null, now() + interval '1 hour', null, null]::timestamptz[],"
        " tags => array['[\"t1\", \"t2\"]', '[]', null, '[\"t3\"]']::jsonb[],"
        " lock_key => array[null, null, 'lk-' || txid_current()::text, null])"
    )
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("1", "available", "t", "f"),
        ("2", "scheduled", "t", "f"),
        ("3", "available", "t", "f"),
        ("4", "available", "t", "f"),
    ]
    ids = [r[1] for r in rows]
    assert len(set(ids)) == 4 and ids == sorted(ids, key=int)
    jobs = [client.jobs.get(id=i) for i in ids]
    assert [(j["kind"], j["payload"], j["tags"]) for j in jobs] == [
        ("a", 1, ["t1", "t2"]), ("b", {"x": 2}, []), ("c", None, []), ("d", "s", ["t3"]),
    ]
    assert jobs[2]["lockKey"].startswith("lk-") and "lockKey" not in jobs[0]
    # The same call with a unique key on one row takes the path that looks for holders: that row comes
    # to the job holding its key, the others are made.
    [[holder]] = app.sql(f"select id from wharf.enqueue({q}, 'held', unique_key => {q})")
    mixed = app.sql(
        "select ord, job_id, created from wharf.enqueue_batch("
        f" queue => array[{q}, {q}], kind => array['e', 'f'], unique_key => array[null, {q}])"
    )
    assert mixed[1] == ["2", holder, "f"] and mixed[0][2] == "t" and mixed[0][1] not in (holder, *ids)


def test_a_value_the_protocol_refuses_fails_the_transaction_clearly(app, unique):
    app.sql("begin")
    with pytest.raises(SQLError) as e:
        app.sql(
            "select * from wharf.enqueue_batch("
            f" array[{quoted(unique)}, {quoted(unique)}], array['k', 'k'], priority => array[1, 5000])"
        )
    assert e.value.sqlstate == "22023"
    assert "job 2 of the batch: priority must be between -1000 and 1000" in e.value.message
    app.sql("rollback")
    q = quoted(unique)
    for arguments, field in [
        ("'', 'k'", "queue"),
        (f"{q}, 'k', max_attempts => 0", "max_attempts"),
        (f"{q}, 'k', timeout_ms => 0", "timeout_ms"),
        (f"{q}, 'k', meta => '[]'", "meta"),
        (f"{q}, 'k', retry => '3'", "retry"),
        (f"{q}, 'k', unique_key => ''", "unique_key"),
        (f"{q}, 'k', tags => array_fill('t'::text, array[51])", "tags"),
    ]:
        with pytest.raises(SQLError) as e:
            app.sql(f"select wharf.enqueue({arguments})")
        assert e.value.sqlstate == "22023" and f"job 1 of the batch: {field} " in e.value.message
    assert app.sql(f"select count(*) from wharf.jobs where queue = {quoted(unique)}") == [["0"]]


class LongPoll:
    """One `jobs.lease {waitMs}` on its own TCP connection; `arrived` is when its reply came in."""

    def __init__(self, server, queue: str, wait_ms: int) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=wait_ms / 1000 + 5)
        self.arrived: Optional[float] = None
        self.reply: Optional[dict] = None
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "jobs.lease",
            "params": {"queues": [queue], "worker": "idle", "waitMs": wait_ms},
        }
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            if self.arrived is None:
                self.arrived = time.monotonic()
            data += chunk
        self.reply = json.loads(data)

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)
        self.sock.close()


def test_an_idle_long_poll_gets_the_job_within_50_ms_of_the_commit(server, app, unique):
    # Each sample: a worker long-polls an empty queue (and has time to settle into waiting), the
    # application enqueues in its own transaction on its own connection, and the worker's reply is
    # timed from the moment the COMMIT was sent. The server's fallback re-check of waiters runs every
    # 500 ms, so only the commit's NOTIFY can bring every sample in under 50 ms.
    delays = []
    for i in range(5):
        queue = f"{unique}-{i}"
        poll = LongPoll(server, queue, wait_ms=10_000)
        time.sleep(0.3)
        app.sql("begin")
        [[job_id]] = app.sql(f"select id from wharf.enqueue({quoted(queue)}, 'k', '{{\"n\": {i}}}')")
        time.sleep(0.1)
        assert poll.arrived is None, "the job must not reach the worker before the commit"
        committing = time.monotonic()
        app.sql("commit")
        poll.wait(timeout=5)
        assert poll.reply is not None and poll.arrived is not None, "the long poll got no reply"
        [job] = poll.reply["result"]["jobs"]
        assert job["id"] == job_id and job["payload"] == {"n": i}
        delays.append(poll.arrived - committing)
    print("pickup delays (s):", [round(d, 4) for d in delays])
    assert max(delays) < 0.050, f"pickup after commit (s): {delays}, median {statistics.median(delays):.4f}"
