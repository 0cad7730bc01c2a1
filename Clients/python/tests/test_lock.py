"""wharf.lock / client.lock against a live server: renewal, release, LockHeld, waiting, fencing, loss."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from _wharf_support import requires, wait_for

import wharf

pytestmark = requires("locks.acquire", "locks.renew", "locks.release", "locks.get")


def test_held_lock_is_renewed_and_released(client, unique):
    with wharf.lock(client, unique, ttl=0.6, holder="tests") as held:
        assert held.held and held.token and held.fencing_token >= 1
        time.sleep(1.0)  # longer than the TTL: only the background renewal keeps it
        info = client.locks.get(name=unique)
        assert info["held"] is True and info["holder"] == "tests" and not held.lost
        with pytest.raises(wharf.LockHeld) as e:
            wharf.lock(client, unique, ttl=1).acquire()
        assert e.value.held_by == "tests" and e.value.name == unique and e.value.expires_at
        assert isinstance(e.value, wharf.Conflict)
        first = held.fencing_token
    assert not held.held and held.token is None
    assert client.locks.get(name=unique)["held"] is False
    with client.lock(unique, ttl=5) as again:
        assert again.fencing_token > first


def test_waiting_for_a_lock(client, server, unique):
    holder = wharf.lock(client, unique, ttl=10).acquire()
    got = {}

    def wait():
        with wharf.Client(server.host, server.port) as other:
            with other.lock(unique, ttl=10, wait=5) as waited:
                got["fencing"] = waited.fencing_token

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    assert "fencing" not in got
    holder.release()
    t.join(5)
    assert got["fencing"] == holder.fencing_token + 1


def test_a_wait_that_runs_out_raises_lock_held(client, unique):
    with client.lock(unique, ttl=10):
        started = time.monotonic()
        with pytest.raises(wharf.LockHeld):
            client.lock(unique, ttl=10, wait=0.3).acquire()
        assert 0.25 < time.monotonic() - started < 3


def test_a_lost_lock_is_reported(client, unique):
    lost = threading.Event()
    with client.lock(unique, ttl=0.6, on_lost=lambda lk: lost.set()) as held:
        # Someone with the token (here: us, behind the lock's back) releases it; the next renewal is refused.
        client.locks.release(name=unique, token=held.token)
        assert lost.wait(3)
        assert held.lost and not held.held
        with pytest.raises(wharf.LeaseLost):
            held.check()
    # Leaving the block does not raise, and does not release someone else's lock.


def test_bind_to_session_releases_when_the_connection_closes(server, client, unique):
    other = wharf.Client(server.host, server.port)
    other.lock(unique, ttl=30, bind_to_session=True).acquire()
    assert client.locks.get(name=unique)["held"] is True
    other.close()
    assert wait_for(lambda: client.locks.get(name=unique)["held"] is False, timeout=5)


@requires("locks.list")
def test_locks_list_by_prefix(client, unique):
    with client.lock(f"{unique}/a", ttl=5), client.lock(f"{unique}/b", ttl=5):
        names = [lk["name"] for lk in client.locks.list(prefix=f"{unique}/")["locks"]]
    assert names == [f"{unique}/a", f"{unique}/b"]


def test_async_lock(server, unique):
    async def main():
        async with wharf.AsyncClient(server.host, server.port) as c:
            async with wharf.lock(c, unique, ttl=0.6) as held:
                assert isinstance(held, wharf.AsyncLock) and held.fencing_token >= 1
                await asyncio.sleep(1.0)
                assert (await c.locks.get(name=unique))["held"] is True and not held.lost
                with pytest.raises(wharf.LockHeld):
                    await c.lock(unique, ttl=1).acquire()
            assert (await c.locks.get(name=unique))["held"] is False
            async with c.lock(unique, ttl=1) as again:
                assert again.fencing_token == held.fencing_token + 1

    asyncio.run(main())


def test_async_release_stops_a_renewal_whose_reply_beats_the_cancel(server, unique):
    """Before Python 3.12, a call whose reply arrives as its task is cancelled may return the reply
    (asyncio.wait_for) instead of raising: release must stop renewing all the same, not wait forever."""

    async def main():
        async with wharf.AsyncClient(server.host, server.port) as c:
            real_call = c.call
            renewing = asyncio.Event()

            async def slowly(method, params, kwargs):
                await asyncio.sleep(0.3)  # the release comes while this renewal is in flight
                return await real_call(method, params, **kwargs)

            async def call_losing_the_cancel(method, params=None, **kwargs):
                if method != "locks.renew":
                    return await real_call(method, params, **kwargs)
                task = asyncio.ensure_future(slowly(method, params, kwargs))
                renewing.set()
                try:
                    return await asyncio.shield(task)
                except asyncio.CancelledError:
                    return await task  # the reply won the race: the cancellation is lost

            c.call = call_losing_the_cancel
            held = await c.lock(unique, ttl=0.6).acquire()
            await asyncio.wait_for(renewing.wait(), 5)
            started = time.monotonic()
            release = asyncio.ensure_future(held.release())
            done, _ = await asyncio.wait([release], timeout=2)
            assert release in done, "release waited for a renewer that kept renewing"
            assert time.monotonic() - started < 1.5
            renewing.clear()
            await asyncio.sleep(0.5)
            assert not renewing.is_set(), "renewals went on after release"
            c.call = real_call
            assert (await c.locks.get(name=unique))["held"] is False

    asyncio.run(main())
