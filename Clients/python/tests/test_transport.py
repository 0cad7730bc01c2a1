"""Client mechanics the real server cannot be made to show on demand, against a scripted peer:
timeouts, replies out of order, server notifications, a connection dropped mid-call."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Callable, List, Optional

import pytest
from _wharf_support import wait_for

import wharf

Handler = Callable[["Peer", socket.socket, dict], Optional[List[dict]]]


class Peer:
    """A TCP server speaking line-delimited JSON; `on_request` decides what to answer (None: nothing)."""

    def __init__(self, on_request: Optional[Handler] = None) -> None:
        self.on_request = on_request
        self.requests: List[dict] = []
        self.hellos = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            for line in f:
                request = json.loads(line)
                self.requests.append(request)
                if request.get("method") == "session.hello":
                    self.hellos += 1
                    self.send(
                        conn,
                        {
                            "jsonrpc": "2.0",
                            "id": request["id"],
                            "result": {"role": "admin", "sessionId": f"s{self.hellos}"},
                        },
                    )
                    continue
                if request.get("method") == "server.info":
                    self.send(conn, {"jsonrpc": "2.0", "id": request["id"], "result": {"limits": {}}})
                    continue
                replies = self.on_request(self, conn, request) if self.on_request else None
                for reply in replies or []:
                    self.send(conn, reply)

    @staticmethod
    def send(conn: socket.socket, message: object) -> None:
        try:
            conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def pong(request: dict) -> dict:
    return {"jsonrpc": "2.0", "id": request["id"], "result": "pong"}


@pytest.fixture
def peer_factory():
    peers = []

    def make(handler=None):
        p = Peer(handler)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()


def test_a_call_without_reply_times_out_and_the_connection_stays(peer_factory):
    peer = peer_factory(lambda p, c, r: [pong(r)] if r["method"] == "server.ping" else None)
    client = wharf.Client("127.0.0.1", peer.port, timeout=5)
    started = time.monotonic()
    with pytest.raises(wharf.CallTimeout) as e:
        client.call("slow.method", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2 and e.value.method == "slow.method"
    assert client.server.ping() == "pong" and client.connects == 1
    with pytest.raises(TimeoutError):  # a CallTimeout is a TimeoutError
        client.call("slow.method", timeout=0.1)
    client.close()


def test_a_long_poll_gets_its_wait_on_top_of_the_timeout(peer_factory):
    def late(p, conn, request):
        threading.Timer(0.6, p.send, args=(conn, pong(request))).start()

    peer = peer_factory(late)
    client = wharf.Client("127.0.0.1", peer.port, timeout=0.3)
    assert client.call("jobs.lease", {"queues": ["q"], "worker": "w", "waitMs": 1000}) == "pong"
    client.close()


def test_replies_out_of_order_reach_their_callers(peer_factory):
    held = []
    lock = threading.Lock()

    def reverse(p, conn, request):
        with lock:
            held.append(request)
            if len(held) < 5:
                return None
            batch = list(reversed(held))
            held.clear()
        return [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"]["n"]} for r in batch]

    peer = peer_factory(reverse)
    client = wharf.Client("127.0.0.1", peer.port, timeout=5)
    client.connect()
    results = {}

    def call(n):
        results[n] = client.call("echo", n=n)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: n for n in range(5)}
    client.close()


def test_notifications_reach_the_callback_which_may_call_the_client(peer_factory):
    def on_request(p, conn, request):
        if request["method"] == "events.subscribe":
            return [
                {"jsonrpc": "2.0", "id": request["id"], "result": {"subscribed": True}},
                {"jsonrpc": "2.0", "method": "event", "params": {"type": "job.completed", "n": 1}},
                {"jsonrpc": "2.0", "method": "event", "params": {"type": "job.completed", "n": 2}},
            ]
        return [pong(request)]

    peer = peer_factory(on_request)
    seen = []
    client = wharf.Client("127.0.0.1", peer.port, timeout=5)

    def on_notification(method, params):
        # Runs off the reader thread, so a call from here does not deadlock.
        seen.append((method, params["n"], client.server.ping()))

    client.on_notification = on_notification
    assert client.events.subscribe(["job.completed"]) == {"subscribed": True}
    assert wait_for(lambda: len(seen) == 2, timeout=5)
    assert seen == [("event", 1, "pong"), ("event", 2, "pong")]
    assert peer.requests[-1]["method"] == "server.ping"
    client.close()


def test_a_dropped_connection_fails_calls_in_flight_and_the_next_call_says_hello_again(peer_factory):
    def on_request(p, conn, request):
        if request["method"] == "drop":
            conn.shutdown(socket.SHUT_RDWR)
            return None
        return [pong(request)]

    peer = peer_factory(on_request)
    client = wharf.Client("127.0.0.1", peer.port, token="t", timeout=5)
    assert client.server.ping() == "pong"
    with pytest.raises(wharf.ConnectionLost):
        client.call("drop")
    assert wait_for(lambda: not client.connected, timeout=2)
    assert client.server.ping() == "pong"
    hellos = [r for r in peer.requests if r["method"] == "session.hello"]
    assert len(hellos) == 2 and all(h["params"]["token"] == "t" for h in hellos)
    assert client.connects == 2 and client.session_id == "s2"
    client.close()


def test_async_client_notifications_and_timeouts(peer_factory):
    def on_request(p, conn, request):
        if request["method"] == "events.subscribe":
            return [
                {"jsonrpc": "2.0", "id": request["id"], "result": {}},
                {"jsonrpc": "2.0", "method": "event", "params": {"n": 1}},
            ]
        if request["method"] == "server.ping":
            return [pong(request)]
        return None

    peer = peer_factory(on_request)

    async def main():
        got = asyncio.Event()
        seen = []

        async def on_notification(method, params):
            seen.append((method, params))
            got.set()

        async with wharf.AsyncClient("127.0.0.1", peer.port, on_notification=on_notification) as c:
            await c.events.subscribe(["*"])
            await asyncio.wait_for(got.wait(), 5)
            assert seen == [("event", {"n": 1})]
            with pytest.raises(wharf.CallTimeout):
                await c.call("slow.method", timeout=0.2)
            assert await c.server.ping() == "pong"

    asyncio.run(main())
