import datetime
import json
import pathlib
import threading

import pytest

import wharf
from wharf.methods import METHODS

OPENRPC = pathlib.Path(__file__).resolve().parents[3] / "Protocol" / "openrpc.json"


def test_every_described_method_has_a_helper():
    described = [m["name"] for m in json.loads(OPENRPC.read_text())["methods"]]
    assert described
    missing = [name for name in described if name.split(".")[1] not in METHODS.get(name.split(".")[0], [])]
    assert missing == [], f"methods the server serves but the client lacks: {missing}"


def test_ping_info_hello(client):
    assert client.server.ping() == "pong"
    assert client.server.info()["name"] == "wharf"
    assert client.role == "admin"
    assert client.session.hello(client="again")["role"] == "admin"


def test_errors_are_typed(client):
    with pytest.raises(wharf.MethodNotFound):
        client.call("no.such")
    with pytest.raises(wharf.InvalidParams) as e:
        client.jobs.enqueue(queue="q")
    assert e.value.field == "kind"
    with pytest.raises(wharf.NotFound):
        client.jobs.get(id="999999")
    job_id = client.jobs.enqueue(queue="typed", kind="k")["id"]
    client.jobs.lease(queues=["typed"], worker="w")
    with pytest.raises(wharf.LeaseLost) as lost:
        client.jobs.complete(id=job_id, lease_token="forged")
    assert lost.value.reason == "lease_lost" and not lost.value.retryable


def test_snake_case_and_datetimes_reach_the_wire(client):
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    r = client.jobs.enqueue(queue="dt", kind="k", run_at=later, max_attempts=3, unique_key="dt-1")
    job = client.jobs.get(id=r["id"])
    assert job["state"] == "scheduled"
    assert job["maxAttempts"] == 3 and job["uniqueKey"] == "dt-1"


def test_threads_share_one_connection(client):
    ids = []
    lock = threading.Lock()

    def enqueue(n):
        for i in range(25):
            r = client.jobs.enqueue(queue="threads", kind="k", payload={"n": n, "i": i})
            with lock:
                ids.append(r["id"])

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 200
    assert client.queues.stats(queue="threads")["counts"]["available"] == 200


def test_reconnects_after_the_connection_drops(client):
    assert client.server.ping() == "pong"
    client._sock.shutdown(2)
    for _ in range(50):
        try:
            assert client.server.ping() == "pong"
            break
        except wharf.ConnectionLost:
            continue
    assert client.server.ping() == "pong"


def test_batch_helper(client):
    results = client.batch([("server.ping", None), ("no.such", None), ("jobs.enqueue", {"queue": "b", "kind": "k"})])
    assert results[0] == "pong"
    assert isinstance(results[1], wharf.MethodNotFound)
    assert results[2]["state"] == "available"


def test_async_client(server):
    import asyncio

    async def main():
        async with wharf.AsyncClient("127.0.0.1", server.port) as c:
            pongs = await asyncio.gather(*[c.server.ping() for _ in range(20)])
            assert pongs == ["pong"] * 20
            r = await c.jobs.enqueue(queue="aio", kind="k", payload=[1])
            assert r["duplicate"] is False
            with pytest.raises(wharf.InvalidParams):
                await c.jobs.enqueue(queue="aio")

    asyncio.run(main())
