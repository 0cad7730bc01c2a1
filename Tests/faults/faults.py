"""Shared pieces of the fault suite: a PostgreSQL of its own that it can restart and make read-only,
a workload of producers and a worker over real TCP, and a ledger that compares what clients were
told with what the database holds afterwards.

The ledger's rules (issue 12, items 7 and 8):

- an acknowledged enqueue is in the database under the id it was acknowledged with, and an
  acknowledged completion left its job completed (lost acknowledged work: must be 0);
- a call reported as failed whose job is in the database anyway was told its outcome was unknown
  (`-32003 outcome_unknown`, or a lost connection / timeout on the client's side): never a
  "did not happen" reason such as `store_unavailable`;
- no call makes two jobs: keyed producers repeat with their idempotency key, the unkeyed producer
  repeats only when the server says `retryable: true`.
"""

from __future__ import annotations

import collections
import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional

import wharf
from wharf.retry import RetryPolicy


def _pg_bin() -> str:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    versions = sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else []
    if not versions:
        raise RuntimeError("PostgreSQL's pg_ctl not found: install postgresql")
    return f"/usr/lib/postgresql/{versions[-1]}/bin"


class OwnPostgres:
    """A throwaway PostgreSQL cluster in a fresh temporary directory, on a Unix socket and on a
    free loopback TCP port (for `CuttingProxy`).

    As root it runs as the `postgres` user (PostgreSQL refuses root). Durability settings are the
    defaults that matter here: `synchronous_commit` on (an acknowledged commit is in the WAL before
    the reply), `fsync` off (the tests crash processes, never the machine, and the page cache
    survives a process).
    """

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = tempfile.mkdtemp(prefix="wharf-faults-pg-")
        os.chmod(self.dir, 0o755)
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "pg")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")
        options = (
            f"-c listen_addresses=127.0.0.1 -k {self.dir} -p {self.port} -c fsync=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", options, "start")

    def _run(self, tool: str, *args: str, timeout: float = 120) -> str:
        cmd = [os.path.join(self.bin, tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.log_tail()}")
        return done.stdout

    def log_tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.dir} port={self.port} user=postgres dbname={dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        # The session itself stays writable while the suite makes the cluster read-only.
        env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=off")
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(dbname), "-c", sql],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f"create database {name}")
        return self.conninfo(name)

    def restart(self, mode: str) -> float:
        """`pg_ctl restart -m fast|immediate`; returns how long it took (seconds). An immediate
        restart kills every backend at once (no checkpoint) and recovers from the WAL."""
        started = time.monotonic()
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "restart", "-l", self.log)
        return time.monotonic() - started

    def set_read_only(self, on: bool) -> None:
        """`default_transaction_read_only` for every session, at once (ALTER SYSTEM and a reload)."""
        if on:
            self.psql("alter system set default_transaction_read_only = on")
        else:
            self.psql("alter system reset default_transaction_read_only")
        self.psql("select pg_reload_conf()")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop")
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CuttingProxy:
    """A TCP proxy between `wharf serve` and PostgreSQL that cuts its connections the way a network
    failure can: `cut()` keeps passing requests to PostgreSQL for a moment while dropping every reply,
    then closes all connections. Statements sent meanwhile run and commit, and the server never
    hears how they ended: the outcome_unknown case, made certain instead of left to timing.
    One thread; `close()` stops it.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.peers: Dict[socket.socket, socket.socket] = {}
        self.to_client: Dict[socket.socket, bool] = {}  # server-side socket -> True
        self.dropping = False
        self.cut_requested = False
        self.dropped_bytes = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname} sslmode=disable"

    def cut(self, hold: float = 0.3) -> None:
        self.dropping = True
        time.sleep(hold)
        self.cut_requested = True
        while self.cut_requested and self.running:
            time.sleep(0.01)
        self.dropping = False

    def close(self) -> None:
        self.running = False
        self.thread.join(5)

    def _drop(self, sock: socket.socket) -> None:
        peer = self.peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self.peers.pop(s, None)
            self.to_client.pop(s, None)
            try:
                self.selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass

    def _run(self) -> None:
        while self.running:
            if self.cut_requested:
                for s in list(self.peers):
                    self._drop(s)
                self.cut_requested = False
            for key, _ in self.selector.select(timeout=0.05):
                sock = key.fileobj
                if sock is self.listener:
                    try:
                        client, _ = self.listener.accept()
                        server = socket.create_connection(self.target)
                    except OSError:
                        continue
                    for s in (client, server):
                        s.setblocking(True)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self.selector.register(s, selectors.EVENT_READ, None)
                    self.peers[client], self.peers[server] = server, client
                    self.to_client[server] = True
                    continue
                if sock not in self.peers:
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(sock)
                    continue
                if sock in self.to_client and self.dropping:
                    self.dropped_bytes += len(data)
                    continue
                try:
                    self.peers[sock].sendall(data)
                except OSError:
                    self._drop(sock)
        for s in list(self.peers):
            self._drop(s)
        self.listener.close()


def uncertain(error: BaseException) -> bool:
    """Whether an error tells the client that its call may have taken effect."""
    if isinstance(error, wharf.WharfError):
        return error.reason == "outcome_unknown"
    if isinstance(error, wharf.ConnectionLost):
        return error.sent
    return isinstance(error, (wharf.CallTimeout, TimeoutError))


class Ledger:
    """What every client was told, by call tag (each enqueue call carries a unique `tag` in its
    payload, one per job for batches), and what the worker was told about completions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: Dict[str, str] = {}  # tag -> job id acknowledged
        self.failed: Dict[str, BaseException] = {}  # tag -> the error its call finally got
        self.completed: Dict[str, str] = {}  # job id -> lease token of the acknowledged completion
        self.completed_twice: List[str] = []
        self.errors: collections.Counter = collections.Counter()  # reason -> count, every attempt seen

    def ack(self, tag: str, job_id: str) -> None:
        with self.lock:
            self.acked[tag] = job_id
            self.failed.pop(tag, None)

    def fail(self, tag: str, error: BaseException) -> None:
        with self.lock:
            self.failed[tag] = error

    def saw(self, error: BaseException) -> None:
        reason = error.reason if isinstance(error, wharf.WharfError) else type(error).__name__
        with self.lock:
            self.errors[reason or "?"] += 1

    def complete(self, job_id: str, token: str) -> None:
        with self.lock:
            if job_id in self.completed and self.completed[job_id] != token:
                self.completed_twice.append(job_id)
            self.completed[job_id] = token

    def check(self, pg: OwnPostgres, dbname: str, queue: str) -> Dict[str, object]:
        """Compares the ledger with the database; returns counts and the offending examples."""
        rows = pg.psql(
            f"select payload->>'tag', id, state from wharf.jobs where queue = '{queue}' order by id", dbname
        )
        by_tag: Dict[str, List[str]] = collections.defaultdict(list)
        state: Dict[str, str] = {}
        for line in rows.splitlines():
            tag, job_id, st = line.split("|")
            by_tag[tag].append(job_id)
            state[job_id] = st
        with self.lock:
            lost = [t for t, i in self.acked.items() if i not in by_tag.get(t, [])]
            duplicated = {t: ids for t, ids in by_tag.items() if len(ids) > 1}
            committed_failed = {t: e for t, e in self.failed.items() if by_tag.get(t)}
            misreported = {t: repr(e) for t, e in committed_failed.items() if not uncertain(e)}
            lost_completions = [i for i in self.completed if state.get(i) != "completed"]
            return {
                "acknowledged": len(self.acked),
                "failed": len(self.failed),
                "lostAcknowledged": len(lost),
                "lostExamples": lost[:5],
                "duplicated": len(duplicated),
                "duplicatedExamples": dict(list(duplicated.items())[:5]),
                "committedButReportedFailed": len(committed_failed),
                "misreported": len(misreported),
                "misreportedExamples": dict(list(misreported.items())[:5]),
                "completions": len(self.completed),
                "lostCompletions": len(lost_completions),
                "completedTwice": len(self.completed_twice),
                "errorsSeen": dict(self.errors),
            }


class Workload:
    """Producers and a worker against one server, in threads, until `stop()`.

    - `keyed`: single enqueues with the client's default idempotency keys and a patient retry
      policy (so that a restart is ridden out inside the client);
    - `batches`: `jobs.enqueueBatch` of 20, keyed per job, the same policy;
    - `unkeyed` (two threads) and `unkeyed batches` of 100: without keys and without the client's
      retries, repeated by hand only when the error says `retryable: true` (so a dishonest
      `retryable` shows as a duplicate); the large batches keep statements in flight most of the
      time, so that a restart often cuts one off;
    - a worker leasing and completing.
    """

    PATIENT = RetryPolicy(attempts=30, initial_delay=0.05, max_delay=0.5)

    def __init__(self, host: str, port: int, queue: str, ledger: Ledger) -> None:
        self.host, self.port, self.queue, self.ledger = host, port, queue, ledger
        self.halt = threading.Event()
        self.threads = [
            threading.Thread(target=self._keyed, args=("a",), daemon=True),
            threading.Thread(target=self._keyed, args=("b",), daemon=True),
            threading.Thread(target=self._batches, daemon=True),
            threading.Thread(target=self._unkeyed, args=("u",), daemon=True),
            threading.Thread(target=self._unkeyed, args=("v",), daemon=True),
            threading.Thread(target=self._unkeyed_batches, daemon=True),
            threading.Thread(target=self._worker, daemon=True),
        ]

    def start(self) -> "Workload":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(30)

    def _client(self, retry: Optional[RetryPolicy]) -> wharf.Client:
        return wharf.Client(self.host, self.port, timeout=15, retry=retry)

    def _keyed(self, name: str) -> None:
        c = self._client(self.PATIENT)
        n = 0
        while not self.halt.is_set():
            n += 1
            tag = f"{name}{n}"
            try:
                job = c.jobs.enqueue(self.queue, "k", {"tag": tag})
                self.ledger.ack(tag, job["id"])
            except (wharf.WharfError, wharf.ConnectionLost, wharf.CallTimeout, OSError) as e:
                self.ledger.saw(e)
                self.ledger.fail(tag, e)
                time.sleep(0.05)
        c.close()

    def _batches(self) -> None:
        c = self._client(self.PATIENT)
        n = 0
        while not self.halt.is_set():
            n += 1
            tags = [f"c{n}.{i}" for i in range(20)]
            try:
                jobs = c.jobs.enqueue_batch([{"queue": self.queue, "kind": "k", "payload": {"tag": t}} for t in tags])
                for t, j in zip(tags, jobs["jobs"]):
                    self.ledger.ack(t, j["id"])
            except (wharf.WharfError, wharf.ConnectionLost, wharf.CallTimeout, OSError) as e:
                self.ledger.saw(e)
                for t in tags:
                    self.ledger.fail(t, e)
                time.sleep(0.05)
        c.close()

    def _unkeyed(self, name: str) -> None:
        c = self._client(None)
        n = 0
        while not self.halt.is_set():
            n += 1
            tag = f"{name}{n}"
            self._repeat_while_retryable(
                [tag], lambda: [c.jobs.enqueue(self.queue, "k", {"tag": tag}, idempotency_key=None)]
            )
        c.close()

    def _unkeyed_batches(self) -> None:
        c = self._client(None)
        n = 0
        while not self.halt.is_set():
            n += 1
            tags = [f"w{n}.{i}" for i in range(100)]
            jobs = [{"queue": self.queue, "kind": "k", "payload": {"tag": t}} for t in tags]
            self._repeat_while_retryable(tags, lambda: c.jobs.enqueue_batch(jobs, idempotency_keys=False)["jobs"])
        c.close()

    def _repeat_while_retryable(self, tags: List[str], call) -> None:
        """Calls until it succeeds or fails with an error that does not say `retryable: true`."""
        while True:
            try:
                for t, job in zip(tags, call()):
                    self.ledger.ack(t, job["id"])
                return
            except wharf.WharfError as e:
                self.ledger.saw(e)
                if not e.retryable or self.halt.is_set():
                    for t in tags:
                        self.ledger.fail(t, e)
                    return
                time.sleep(0.05)
            except (wharf.ConnectionLost, wharf.CallTimeout, OSError) as e:
                # The client side lost the reply: the call may have been done. Not repeated.
                self.ledger.saw(e)
                for t in tags:
                    self.ledger.fail(t, e)
                time.sleep(0.05)
                return

    def _worker(self) -> None:
        c = self._client(None)
        while not self.halt.is_set():
            try:
                jobs = c.jobs.lease(self.queue, "faults", max=20, wait_ms=200, lease_ms=60_000)["jobs"]
            except (wharf.WharfError, wharf.ConnectionLost, wharf.CallTimeout, OSError) as e:
                self.ledger.saw(e)
                time.sleep(0.05)
                continue
            for j in jobs:
                try:
                    c.jobs.complete(j["id"], j["leaseToken"])
                    self.ledger.complete(j["id"], j["leaseToken"])
                except (wharf.WharfError, wharf.ConnectionLost, wharf.CallTimeout, OSError) as e:
                    # Unacknowledged: the lease expires and the job runs again.
                    self.ledger.saw(e)
        c.close()
