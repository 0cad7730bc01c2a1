"""A lock workload in the spirit of Jepsen's lock tests, against two real replicas on one database.

Clients loop: acquire -> read a register -> pause (sometimes past the TTL) -> write the register ->
release, while one replica is killed with SIGKILL and restarted. The register is the resource the lock
protects; with fencing it refuses any read or write whose fencing token is below the highest it has
seen. Checked: fencing tokens are unique and grow with grant order, a grant never overlaps an earlier
unreleased grant, and with fencing no update is lost. The control run drops the fencing check and
must lose updates, which shows the workload can see the bug.
"""

import random
import signal
import threading
import time

import wharf
from wharf.testing import WharfServer

TTL = 0.4
DURATION = 6.0
CLIENTS = 6


class Register:
    def __init__(self, fenced):
        self.fenced = fenced
        self.value = 0
        self.max_token = 0
        self.accepted = 0
        self.rejected = 0
        self.lock = threading.Lock()

    def read(self, token):
        with self.lock:
            if self.fenced:
                if token < self.max_token:
                    self.rejected += 1
                    return None
                self.max_token = token
            return self.value

    def write(self, token, value):
        with self.lock:
            if self.fenced and token < self.max_token:
                self.rejected += 1
                return False
            self.max_token = max(self.max_token, token)
            self.value = value
            self.accepted += 1
            return True


def workload(fenced):
    a = WharfServer()
    b = WharfServer(database=a.database)
    servers = {"a": a, "b": b}
    register = Register(fenced)
    grants = []  # (fencing token, acquired at, expires at, released) in server-clock seconds
    glock = threading.Lock()
    stop = threading.Event()
    name = "jepsen-" + ("fenced" if fenced else "control")

    def client(n):
        rng = random.Random(n)
        replica = "a" if n % 2 else "b"
        c = wharf.Client("127.0.0.1", servers[replica].port, timeout=5)
        while not stop.is_set():
            try:
                r = c.locks.acquire(name=name, holder=f"c{n}", ttl_ms=int(TTL * 1000), wait_ms=1000)
            except (wharf.WharfError, wharf.ConnectionLost, OSError, TimeoutError):
                time.sleep(0.05)
                continue
            if not r["granted"]:
                continue
            token = r["fencingToken"]
            expires = _seconds(r["expiresAt"])
            seen = register.read(token)
            # Sometimes stall past the lease, like a GC pause or a SIGSTOP.
            time.sleep(TTL * 1.5 if rng.random() < 0.25 else rng.uniform(0, TTL / 4))
            if seen is not None:
                register.write(token, seen + 1)
            released = False
            try:
                released = c.locks.release(name=name, token=r["token"])["released"]
            except (wharf.WharfError, wharf.ConnectionLost, OSError, TimeoutError):
                pass
            with glock:
                grants.append((token, expires - TTL, expires, released))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(DURATION / 2)
    port, database = a.port, a.database
    a.stop(signal.SIGKILL)
    time.sleep(0.3)
    servers["a"] = WharfServer(database=database, port=port)
    time.sleep(DURATION / 2)
    stop.set()
    for t in threads:
        t.join(10)
    for s in servers.values():
        s.stop()
    b.stop()
    return register, sorted(grants)


def _seconds(rfc3339):
    import datetime

    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_fenced_locks_lose_nothing_and_never_overlap():
    register, grants = workload(fenced=True)
    tokens = [g[0] for g in grants]
    assert len(grants) > 10
    assert len(tokens) == len(set(tokens)), "a fencing token was granted twice"
    for (t1, start1, end1, released1), (t2, start2, _, _) in zip(grants, grants[1:]):
        assert start2 >= start1 - 0.005, f"token {t2} granted before {t1}"
        if not released1:
            # Nobody may be granted the lock while an unreleased grant is unexpired.
            assert start2 >= end1 - 0.005, f"token {t2} granted at {start2} while {t1} held until {end1}"
    assert register.value == register.accepted, "an update was lost despite fencing"
    assert register.rejected > 0, "no holder ever went stale: the workload did not exercise fencing"


def test_control_without_fencing_loses_updates():
    register, grants = workload(fenced=False)
    assert len(grants) > 10
    assert register.value < register.accepted, "the unfenced workload lost no update: the test cannot see the bug"
