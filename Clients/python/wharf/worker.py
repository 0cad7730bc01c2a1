"""Run jobs: `@worker.task("kind")` handlers, long-poll leasing, heartbeats, graceful stop.

    python -m wharf.worker myapp.jobs:worker
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from .client import Client
from .errors import Conflict, JobCancelled, WharfError

log = logging.getLogger("wharf.worker")


class Retry(Exception):
    """Raise from a handler to fail this attempt and retry after `after` seconds."""

    def __init__(self, after: float = 0, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after = after


class Discard(Exception):
    """Raise from a handler to fail the job for good (it becomes dead)."""


class Job:
    """A leased job as a handler sees it."""

    def __init__(self, raw: Dict[str, Any]) -> None:
        self.raw = raw
        self.id: str = raw["id"]
        self.queue: str = raw["queue"]
        self.kind: str = raw["kind"]
        self.payload: Any = raw.get("payload")
        self.attempt: int = raw.get("attempt", 0)
        self.lease_token: str = raw["leaseToken"]
        self.cancelled = threading.Event()

    def __repr__(self) -> str:
        return f"Job({self.id} {self.queue}/{self.kind} attempt {self.attempt})"


class Worker:
    """Leases jobs from `queues` and runs them on `concurrency` threads.

    Each job is heartbeated every third of `lease_ms`; the handler's return value is sent as the
    result; an exception fails the attempt (retried with backoff); `Retry(after=...)` and `Discard`
    steer that. A handler may accept the `Job` to read `job.cancelled`, set when the job is cancelled.
    On SIGTERM or SIGINT, `run()` stops leasing and waits up to `grace` seconds for jobs in hand.
    """

    def __init__(self, queues: List[str], concurrency: int = 4, lease_ms: int = 30_000,
                 host: str = "127.0.0.1", port: int = 7411, token: Optional[str] = None,
                 client_factory: Optional[Callable[[], Client]] = None, name: Optional[str] = None,
                 grace: float = 30.0) -> None:
        self.queues = queues
        self.concurrency = max(1, concurrency)
        self.lease_ms = lease_ms
        self.grace = grace
        self.name = name or f"py-{socket.gethostname()}-{os.getpid()}"
        self._factory = client_factory or (lambda: Client(host, port, token=token))
        self.client = self._factory()
        self._handlers: Dict[str, Callable[..., Any]] = {}
        self._stop = threading.Event()
        self._free = threading.Semaphore(self.concurrency)
        self._running = 0
        self._lock = threading.Lock()
        self.processed = 0

    def task(self, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[kind] = fn
            return fn
        return register

    def stop(self) -> None:
        self._stop.set()

    def run(self, install_signals: bool = True) -> None:
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="wharf-job")
        try:
            while not self._stop.is_set():
                free = self._acquire_slots()
                if free == 0:
                    continue
                try:
                    jobs = self.client.call("jobs.lease", {
                        "queues": self.queues, "max": free, "leaseMs": self.lease_ms, "waitMs": 1000,
                        "worker": self.name})["jobs"]
                except (WharfError, OSError, TimeoutError) as e:
                    log.warning("lease failed: %s", e)
                    jobs = []
                    self._stop.wait(0.5)
                for _ in range(free - len(jobs)):
                    self._free.release()
                for raw in jobs:
                    pool.submit(self._execute, Job(raw))
        finally:
            pool.shutdown(wait=False)
            deadline = threading.Event()
            waited = 0.0
            while waited < self.grace:
                with self._lock:
                    if self._running == 0:
                        break
                deadline.wait(0.05)
                waited += 0.05

    def _acquire_slots(self) -> int:
        if not self._free.acquire(timeout=0.5):
            return 0
        n = 1
        while n < self.concurrency and self._free.acquire(blocking=False):
            n += 1
        return n

    def _execute(self, job: Job) -> None:
        with self._lock:
            self._running += 1
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, stop_beat), daemon=True)
        beat.start()
        try:
            handler = self._handlers.get(job.kind)
            if handler is None:
                self._fail(job, f"no handler for kind {job.kind}", retryable=False)
                return
            try:
                result = handler(job) if _wants_job(handler) else handler(job.payload)
            except Retry as r:
                self._fail(job, str(r), retry_in_ms=int(r.after * 1000))
            except Discard as d:
                self._fail(job, str(d) or "discarded", retryable=False)
            except Exception as e:  # noqa: BLE001 - a failed attempt
                self._fail(job, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=20)}")
            else:
                try:
                    self.client.call("jobs.complete", {"id": job.id, "leaseToken": job.lease_token, "result": result})
                except Conflict as c:
                    log.warning("job %s: complete refused: %s", job.id, c.reason)
        finally:
            stop_beat.set()
            with self._lock:
                self._running -= 1
                self.processed += 1
            self._free.release()

    def _fail(self, job: Job, error: str, retryable: bool = True, retry_in_ms: Optional[int] = None) -> None:
        params: Dict[str, Any] = {"id": job.id, "leaseToken": job.lease_token, "error": error, "retryable": retryable}
        if retry_in_ms is not None:
            params["retryInMs"] = retry_in_ms
        try:
            self.client.call("jobs.fail", params)
        except Conflict as c:
            log.warning("job %s: fail refused: %s", job.id, c.reason)

    def _heartbeat(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(self.lease_ms / 3000.0):
            try:
                self.client.call(
                    "jobs.heartbeat", {"id": job.id, "leaseToken": job.lease_token, "extendMs": self.lease_ms})
            except JobCancelled:
                job.cancelled.set()
                return
            except Conflict:
                return
            except Exception:  # noqa: BLE001 - try again next round
                continue


def _wants_job(fn: Callable[..., Any]) -> bool:
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(params) and (params[0].annotation is Job or params[0].name == "job")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or ":" not in args[0]:
        print("usage: python -m wharf.worker module:worker", file=sys.stderr)
        return 2
    module_name, attr = args[0].split(":", 1)
    sys.path.insert(0, os.getcwd())
    worker = getattr(importlib.import_module(module_name), attr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("worker %s leasing from %s", worker.name, ", ".join(worker.queues))
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
