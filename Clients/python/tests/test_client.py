"""Client and AsyncClient against a live server: server.* and session.*, errors, pipelining, batches,
reconnects, auth."""

from __future__ import annotations

import asyncio
import threading

import pytest
from _wharf_support import requires, wait_for

import wharf
from wharf.pytest_plugin import start_server
from wharf.testing import WharfServer, free_port

TOKENS = {"admin": "adm-secret", "producer": "prod-secret", "worker": "work-secret", "reader": "read-secret"}


@pytest.fixture(scope="module")
def token_server():
    """A server that requires tokens, one per role."""
    s = start_server(extra_args=[arg for role, secret in TOKENS.items() for arg in ("--token", f"{role}:{secret}")])
    yield s
    s.stop()


def test_ping_info_health_hello(client):
    assert client.server.ping() == "pong"
    assert client.role == "admin" and client.session_id
    info = client.server.info()
    assert info["name"] == "wharf" and info["protocolVersion"] == "1"
    assert client.limits["maxFrameBytes"] == info["limits"]["maxFrameBytes"]
    health = client.server.health()
    assert health["status"] == "ok" and health["database"]["reachable"] is True
    hello = client.session.hello(client="tests")
    assert hello["role"] == "admin" and hello["authenticated"] is False
    assert hello["sessionId"] == client.session_id


def test_call_takes_a_dict_or_keywords(client):
    assert client.call("server.ping") == "pong"
    assert client.call("session.hello", {"client": "a"})["role"] == "admin"
    assert client.call("session.hello", client="b")["role"] == "admin"
    assert client.client_name == "b"  # an explicit hello is what reconnects present


def test_errors_are_typed(client):
    with pytest.raises(wharf.MethodNotFound) as e:
        client.call("no.such")
    assert e.value.code == -32601 and e.value.data["method"] == "no.such" and e.value.reason == "method_not_found"
    with pytest.raises(wharf.InvalidParams) as e:
        client.server.info(verbose=True)
    assert e.value.field == "verbose" and "verbose" in str(e.value)
    with pytest.raises(wharf.InvalidParams) as e:
        client.session.hello(token=5)
    assert e.value.field == "token"
    assert client.server.ping() == "pong"  # errors leave the connection usable


def test_threads_share_one_connection(client):
    results = []

    def ping(n):
        for i in range(50):
            results.append(client.call("session.hello", client=f"t{n}") if i == 0 else client.server.ping())

    threads = [threading.Thread(target=ping, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 800 and results.count("pong") == 784
    assert client.connects == 1


def test_batch_returns_outcomes_in_order(client):
    results = client.batch([("server.ping", None), ("no.such",), {"method": "server.info", "params": {"x": 1}}])
    assert results[0] == "pong"
    assert isinstance(results[1], wharf.MethodNotFound)
    assert isinstance(results[2], wharf.InvalidParams) and results[2].field == "x"
    with pytest.raises(wharf.MethodNotFound):
        client.batch([("server.ping",), ("no.such",)], return_exceptions=False)
    assert client.batch([]) == []


def test_batch_builder(client):
    with client.batch() as b:
        pong = b.server.ping()
        info = b.server.info()
        bad = b.call("no.such")
    assert pong.result() == "pong" and info.result()["name"] == "wharf"
    assert isinstance(bad.exception(), wharf.MethodNotFound)
    with pytest.raises(wharf.MethodNotFound):
        bad.result()


def test_batch_over_the_limit_fails_each_call_and_keeps_the_connection(client):
    results = client.batch([("server.ping",)] * (client.server.info()["limits"]["maxBatch"] + 1))
    assert all(isinstance(r, wharf.LimitExceeded) and r.data["limit"] == "batch" for r in results)
    assert client.server.ping() == "pong" and client.connects == 1


def test_oversized_request_is_refused_before_sending(client):
    client.server.ping()
    with pytest.raises(wharf.LimitExceeded) as e:
        client.call("server.ping", {"pad": "x" * (client.limits["maxFrameBytes"] + 1)})
    assert e.value.data["limit"] == "frameBytes"
    assert client.server.ping() == "pong" and client.connects == 1


def test_notification_gets_no_reply(client):
    client.notify("server.ping")
    client.notify("no.such", x=1)
    assert client.server.ping() == "pong"


def test_reconnects_after_an_idle_timeout():
    s = start_server(extra_args=["--idle-timeout-ms", "300"])
    try:
        c = wharf.Client(s.host, s.port)
        first = c.session.hello()["sessionId"]
        assert wait_for(lambda: not c.connected, timeout=5)  # the server closed the idle connection
        assert c.server.ping() == "pong"
        assert c.connects == 2 and c.session_id != first
        c.close()
    finally:
        s.stop()


def test_reconnects_after_a_server_restart_and_presents_the_token_again():
    s = start_server(extra_args=["--token", "reader:r1"])
    try:
        c = wharf.Client(s.host, s.port, token="r1", timeout=5)
        assert c.server.info()["name"] == "wharf" and c.role == "reader"
        s.stop()
        with pytest.raises((wharf.ConnectionLost, ConnectionError)):
            c.server.info()
        s = WharfServer(database=s.database, port=s.port, extra_args=["--token", "reader:r1"])
        # server.info needs a session: it only works if the new connection said hello with the token.
        assert c.server.info()["name"] == "wharf"
        assert c.connects == 2 and c.role == "reader"
        c.close()
        with pytest.raises(wharf.ConnectionLost):
            c.server.ping()
    finally:
        s.stop()


def test_tokens_and_roles(token_server):
    s = token_server
    with pytest.raises(wharf.Unauthorized):
        wharf.Client(s.host, s.port).server.ping()  # no token: the hello is refused
    with pytest.raises(wharf.Unauthorized) as e:
        wharf.Client(s.host, s.port, token="wrong").server.info()
    assert e.value.reason == "unauthorized" and e.value.retryable is False
    for role, secret in TOKENS.items():
        with wharf.Client(s.host, s.port, token=secret) as c:
            assert c.server.ping() == "pong" and c.role == role
    with wharf.Client(s.host, s.port, token=TOKENS["reader"]) as c:
        assert c.session.hello(token=TOKENS["admin"])["role"] == "admin"
        assert c.token == TOKENS["admin"] and c.role == "admin"


@requires("jobs.enqueue")
def test_forbidden_names_role_and_method(token_server):
    with wharf.Client(token_server.host, token_server.port, token=TOKENS["reader"]) as c:
        with pytest.raises(wharf.Forbidden) as e:
            c.jobs.enqueue("q", "k")
    assert e.value.data["role"] == "reader" and e.value.data["method"] == "jobs.enqueue"


def test_connect_refused_is_a_connection_error():
    with pytest.raises(ConnectionError):
        wharf.Client("127.0.0.1", free_port(), connect_timeout=2).server.ping()


def test_async_client(server):
    async def main():
        async with wharf.AsyncClient(server.host, server.port) as c:
            assert await asyncio.gather(*[c.server.ping() for _ in range(50)]) == ["pong"] * 50
            assert c.role == "admin" and c.connects == 1
            assert (await c.call("session.hello", client="aio"))["role"] == "admin"
            with pytest.raises(wharf.MethodNotFound):
                await c.call("no.such")
            with pytest.raises(wharf.InvalidParams) as e:
                await c.server.info(verbose=1)
            assert e.value.field == "verbose"
            results = await c.batch([("server.ping",), ("no.such",)])
            assert results[0] == "pong" and isinstance(results[1], wharf.MethodNotFound)
            async with c.batch() as b:
                item = b.server.info()
            assert item.result()["name"] == "wharf"
            await c.notify("server.ping")
            with pytest.raises(wharf.LimitExceeded):
                await c.call("server.ping", {"pad": "x" * (c.limits["maxFrameBytes"] + 1)})
            assert await c.server.ping() == "pong"

    asyncio.run(main())


def test_async_client_reconnects():
    s = start_server(extra_args=["--idle-timeout-ms", "300"])

    async def main():
        async with wharf.AsyncClient(s.host, s.port) as c:
            await c.server.ping()
            for _ in range(100):
                if not c.connected:
                    break
                await asyncio.sleep(0.05)
            assert await c.server.ping() == "pong"
            assert c.connects == 2

    try:
        asyncio.run(main())
    finally:
        s.stop()


def test_rpc_discover_returns_the_servers_openrpc_document(client):
    doc = client.rpc.discover()
    assert doc["openrpc"].startswith("1.")
    assert {"rpc.discover", "server.ping", "jobs.lease"} <= {m["name"] for m in doc["methods"]}
