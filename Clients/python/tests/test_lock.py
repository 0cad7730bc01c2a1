import threading
import time

import pytest

import wharf


def test_lock_context_manager_renews_and_releases(client):
    with wharf.lock(client, "py-lock", ttl=1.0) as held:
        assert held.fencing_token >= 1
        time.sleep(1.6)  # longer than the TTL: the background renewal keeps it
        info = client.locks.get(name="py-lock")
        assert info["held"] is True and not held.lost
        with pytest.raises(wharf.LockHeld):
            wharf.lock(client, "py-lock", ttl=1.0).acquire()
        first = held.fencing_token
    assert client.locks.get(name="py-lock")["held"] is False
    with client.lock("py-lock", ttl=5) as again:
        assert again.fencing_token > first


def test_waiting_for_a_lock(client, server):
    other = wharf.Client("127.0.0.1", server.port)
    holder = wharf.lock(client, "py-wait", ttl=10).acquire()
    got = {}

    def wait():
        with wharf.lock(other, "py-wait", ttl=10, wait=5) as waited:
            got["token"] = waited.fencing_token

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    holder.release()
    t.join(5)
    assert got["token"] > holder.fencing_token
    other.close()
