"""Run jobs: `@worker.task("kind")` handlers, long-poll leasing, heartbeats, graceful stop.

    worker = wharf.Worker(queues=["mail"], concurrency=8, port=7411)

    @worker.task("welcome")
    def welcome(payload):
        return {"sent": True}          # stored as the job's result

    worker.run()                       # or: python -m wharf.worker myapp.jobs:worker

Plain functions run on a pool of `concurrency` threads. `async def` handlers run on one asyncio
event loop owned by the worker (in its own thread), still at most `concurrency` at a time. A handler
gets the payload, or the `Job` when its first parameter is named `job` or annotated `Job`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import inspect
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .._util import Flag
from .._wire import UNSET, dumps
from ..client import Client
from ..errors import CallTimeout, Conflict, ConnectionLost, JobCancelled, RetryableError, WharfError

log = logging.getLogger("wharf.worker")

Handler = Callable[..., Any]
ClientFactory = Callable[[], Client]
_TRANSIENT = (ConnectionLost, CallTimeout, RetryableError, OSError)


class Retry(Exception):
    """Raise from a handler to fail this attempt and run the job again after `after` seconds."""

    def __init__(self, after: Union[float, datetime.timedelta] = 0.0, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after = after.total_seconds() if isinstance(after, datetime.timedelta) else float(after)
        self.reason = reason


class Discard(Exception):
    """Raise from a handler to fail the job for good: it becomes `dead` without further attempts."""

    def __init__(self, reason: str = "discarded") -> None:
        super().__init__(reason)
        self.reason = reason


class Job:
    """A leased job, as a handler sees it.

    `cancelled` is set (and true) once a heartbeat learned that the job was cancelled: stop early,
    the outcome will be refused anyway. `lease_lost` is set when the lease went to someone else.
    `stopping` is set when the worker was asked to stop: a long handler may checkpoint and return.
    """

    def __init__(self, raw: Dict[str, Any], client: Client, stopping: Flag) -> None:
        self.raw = raw
        self.client = client
        self.id: str = raw["id"]
        self.queue: str = raw.get("queue", "")
        self.kind: str = raw.get("kind", "")
        self.payload: Any = raw.get("payload")
        self.attempt: int = raw.get("attempt", 1)
        self.max_attempts: Optional[int] = raw.get("maxAttempts")
        self.lease_token: str = raw["leaseToken"]
        self.lease_expires_at: Optional[str] = raw.get("leaseExpiresAt")
        #: The job's lockKey: it holds the lock of that name (a `locks.*` lock) while it runs.
        self.lock_key: Optional[str] = raw.get("lockKey")
        #: For a job with a lock_key, the fencing token of its grant: pass it to the resource the lock
        #: protects, which refuses tokens lower than the highest it has seen.
        self.fencing_token: Optional[int] = raw.get("fencingToken")
        self.tags: List[str] = raw.get("tags") or []
        self.meta: Dict[str, Any] = raw.get("meta") or {}
        self.cancelled = Flag()
        self.lease_lost = Flag()
        self.stopping = stopping
        self._progress: Any = UNSET
        self._last_beat = time.monotonic()

    def set_progress(self, progress: Any) -> None:
        """Reports `progress` (any JSON value) with the next heartbeat."""
        self._progress = progress

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.queue}/{self.kind} attempt {self.attempt}>"


def _wants_job(fn: Handler) -> bool:
    try:
        first = next(iter(inspect.signature(fn).parameters.values()), None)
    except (TypeError, ValueError):
        return False
    if first is None:
        return False
    return first.name == "job" or first.annotation in (Job, "Job", "wharf.Job", "wharf.worker.Job")


class Worker:
    """Leases jobs from `queues` and runs them, `concurrency` at a time.

    Connection: `client_factory` (a function returning a `Client`), or a `Client`, or `host`,
    `port`, `token` and `ssl` (as `Client`'s). The first argument may also be the list of queues: `Worker(["mail"])`.

    Leasing asks for as many jobs as there are free slots and long-polls for `poll_ms`. Each running
    job is heartbeated every third of `lease_ms` (all due heartbeats go in one batch). A handler's
    return value completes the job as its `result`; an exception fails the attempt (retried with the
    job's backoff) with its message and traceback; `Retry(after=s)` retries after `s` seconds;
    `Discard(reason)` makes the job dead. A job whose kind has no handler fails and is retried.

    `run()` blocks until `stop()` or SIGTERM/SIGINT: it stops leasing (within `poll_ms`), waits up to
    `grace` seconds for running jobs, and closes its connection, so the server gives back at once
    the jobs that did not finish. A second signal skips the wait.
    """

    def __init__(
        self,
        client_factory: Union[ClientFactory, Client, Sequence[str], None] = None,
        queues: Optional[Sequence[str]] = None,
        concurrency: int = 4,
        lease_ms: int = 30_000,
        *,
        host: str = "127.0.0.1",
        port: int = 7411,
        token: Optional[str] = None,
        ssl: Any = None,
        name: Optional[str] = None,
        grace: float = 30.0,
        poll_ms: int = 2_000,
    ) -> None:
        if isinstance(client_factory, str) or (
            isinstance(client_factory, Sequence) and all(isinstance(q, str) for q in client_factory)
        ):
            if queues is not None:
                raise TypeError("queues given twice")
            queues, client_factory = [client_factory] if isinstance(client_factory, str) else client_factory, None
        if not queues:
            raise ValueError("a worker needs at least one queue")
        if lease_ms < 1000:
            raise ValueError("lease_ms must be at least 1000")
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.concurrency = max(1, int(concurrency))
        self.lease_ms = int(lease_ms)
        self.grace = grace
        self.poll_ms = int(poll_ms)
        self.name = name or f"py:{socket.gethostname()}:{os.getpid()}"
        self._own_client = not isinstance(client_factory, Client)
        if isinstance(client_factory, Client):
            given = client_factory
            self._factory: ClientFactory = lambda: given
        elif callable(client_factory):
            self._factory = client_factory
        else:
            self._factory = lambda: Client(
                host, port, token=token, ssl=ssl, client_name=f"wharf-python-worker {self.name}"
            )
        self.client: Optional[Client] = None
        self.handlers: Dict[str, Handler] = {}
        self.stopping = Flag()
        self._hard_stop = threading.Event()
        self._cond = threading.Condition()
        self._running: Dict[str, Job] = {}
        self._queue: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_lock = threading.Lock()
        self._active = False
        self.stats = {"leased": 0, "completed": 0, "failed": 0, "abandoned": 0}
        """Counters since the worker started: jobs leased, completed, failed, and left unfinished at stop."""

    def __repr__(self) -> str:
        return f"<wharf.Worker {self.name} queues={self.queues} concurrency={self.concurrency}>"

    # Handlers

    def task(self, kind: Union[str, Handler, None] = None) -> Any:
        """Decorator registering a handler: `@worker.task("welcome")` (or `@worker.task` for the function's name)."""
        if callable(kind):
            self.register(kind.__name__, kind)
            return kind

        def register(fn: Handler) -> Handler:
            self.register(kind or fn.__name__, fn)
            return fn

        return register

    def register(self, kind: str, fn: Handler) -> None:
        """Registers `fn` for jobs of `kind`."""
        self.handlers[kind] = fn

    # Running

    @property
    def running_jobs(self) -> List[Job]:
        """The jobs being run right now."""
        with self._cond:
            return list(self._running.values())

    def stop(self, wait_for_jobs: bool = True) -> None:
        """Asks `run()` to stop leasing and return once running jobs finished (or `grace` passed).

        With `wait_for_jobs=False` it does not wait for them. Safe from signal handlers and other threads.
        """
        self.stopping.set()
        if not wait_for_jobs:
            self._hard_stop.set()

    def run_in_thread(self) -> threading.Thread:
        """Starts `run()` on a daemon thread (no signal handlers) and returns the thread."""
        t = threading.Thread(
            target=self.run, kwargs={"install_signals": False}, name=f"wharf-worker-{self.name}", daemon=True
        )
        t.start()
        return t

    def run(self, install_signals: bool = True) -> None:
        """Leases and runs jobs until stopped (see the class documentation)."""
        if self._active:
            raise RuntimeError("this worker is already running")
        self._active = True
        self.stopping.clear()
        self._hard_stop.clear()
        previous = self._install_signals() if install_signals else {}
        client = self.client = self._factory()
        threads = [
            threading.Thread(target=self._execute_loop, name=f"wharf-job-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        beat = threading.Thread(target=self._heartbeat_loop, name="wharf-heartbeat", daemon=True)
        for t in threads + [beat]:
            t.start()
        log.info("worker %s leasing from %s (concurrency %d)", self.name, ", ".join(self.queues), self.concurrency)
        try:
            self._lease_loop(client)
            self._drain()
        finally:
            for _ in threads:
                self._queue.put(None)
            self._stop_loop()
            if self._own_client:
                client.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._active = False
            log.info("worker %s stopped", self.name)

    def _install_signals(self) -> Dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: Any) -> None:
            if self.stopping:
                log.warning("second signal: not waiting for running jobs")
                self._hard_stop.set()
            else:
                log.info("signal %d: no more leasing; waiting up to %.0f s for running jobs", signum, self.grace)
                self.stopping.set()

        previous: Dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
        return previous

    def _lease_loop(self, client: Client) -> None:
        backoff = 0.5
        while not self.stopping:
            free = self._wait_for_free_slots()
            if free == 0:
                continue
            try:
                reply = client.call(
                    "jobs.lease",
                    {
                        "queues": self.queues,
                        "max": free,
                        "leaseMs": self.lease_ms,
                        "waitMs": self.poll_ms,
                        "worker": self.name,
                    },
                )
            except (WharfError, *_TRANSIENT) as e:
                log.warning("lease failed (retrying in %.1f s): %s", backoff, e)
                self._pause(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            for raw in reply.get("jobs", []):
                job = Job(raw, client, self.stopping)
                with self._cond:
                    self._running[job.id] = job
                    self.stats["leased"] += 1
                self._queue.put(job)

    def _pause(self, seconds: float) -> None:
        # Polls instead of waiting on `stopping`: the signal handler sets it on this same thread, and
        # an Event's internal lock must not be held here when that happens.
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _wait_for_free_slots(self) -> int:
        with self._cond:
            while not self.stopping:
                free = self.concurrency - len(self._running)
                if free > 0:
                    return free
                self._cond.wait(0.2)
        return 0

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace
        with self._cond:
            while self._running and not self._hard_stop.is_set() and time.monotonic() < deadline:
                self._cond.wait(0.1)
            left = list(self._running.values())
            self.stats["abandoned"] += len(left)
        if left:
            log.warning("leaving %d unfinished job(s) to the server: %s", len(left), ", ".join(j.id for j in left))

    # Executing

    def _execute_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._execute(job)
            except Exception:  # noqa: BLE001 - keep the thread serving
                log.exception("job %s: unexpected failure in the worker", job.id)
            finally:
                with self._cond:
                    self._running.pop(job.id, None)
                    self._cond.notify_all()

    def _execute(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            log.error("job %s: no handler for kind %r", job.id, job.kind)
            self._settle(
                job,
                "jobs.fail",
                {"error": {"message": f"no handler for kind {job.kind!r} in {self.name}", "type": "NoHandler"}},
            )
            return
        try:
            arg = job if _wants_job(handler) else job.payload
            if inspect.iscoroutinefunction(handler):
                result = self._run_async(handler(arg))
            else:
                result = handler(arg)
                if inspect.isawaitable(result):
                    result = self._run_async(result)
            dumps(result)  # refuse an unserializable result here, as a failed attempt
        except Retry as r:
            self._settle(
                job, "jobs.fail", {"error": {"message": r.reason, "type": "Retry"}, "retryInMs": int(r.after * 1000)}
            )
        except Discard as d:
            self._settle(job, "jobs.fail", {"error": {"message": d.reason, "type": "Discard"}, "retryable": False})
        except Exception as e:  # noqa: BLE001 - a failed attempt
            self._settle(
                job,
                "jobs.fail",
                {
                    "error": {
                        "message": f"{type(e).__name__}: {e}",
                        "type": f"{type(e).__module__}.{type(e).__qualname__}",
                        "traceback": traceback.format_exc(limit=30),
                    }
                },
            )
        else:
            self._settle(job, "jobs.complete", {"result": result})

    def _run_async(self, awaitable: Any) -> Any:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=_run_loop, args=(loop,), name="wharf-async-jobs", daemon=True).start()
                self._loop = loop
            loop = self._loop

        async def run() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def _stop_loop(self) -> None:
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)

    def _settle(self, job: Job, method: str, params: Dict[str, Any]) -> None:
        """Reports the outcome; idempotent retries on transport errors (same token)."""
        if job.cancelled:
            log.info("job %s was cancelled; its outcome is not reported", job.id)
            return
        if job.lease_lost:
            log.warning("job %s: lease lost; its outcome is not reported", job.id)
            return
        if not self._active:
            log.info("job %s finished after the worker stopped; the server has given it back", job.id)
            return
        assert self.client is not None
        params = {"id": job.id, "leaseToken": job.lease_token, **params}
        for attempt in range(5):
            try:
                self.client.call(method, params)
            except JobCancelled:
                job.cancelled.set()
                log.info("job %s was cancelled while running", job.id)
                return
            except Conflict as e:
                log.warning("job %s: %s refused: %s", job.id, method, e)
                return
            except _TRANSIENT as e:
                if attempt == 4 or self._hard_stop.is_set() or not self._active:
                    log.error("job %s: could not report (%s): %s", job.id, method, e)
                    return
                time.sleep(0.2 * 2**attempt)
                continue
            except WharfError as e:
                if e.retryable and attempt < 4 and self._active:
                    time.sleep(0.2 * 2**attempt)
                    continue
                if method == "jobs.complete" and not e.retryable:
                    log.error("job %s: complete refused (%s); failing it instead", job.id, e)
                    self._settle(job, "jobs.fail", {"error": {"message": f"could not complete: {e}", "type": "Result"}})
                    return
                log.error("job %s: %s refused: %s", job.id, method, e)
                return
            with self._cond:
                self.stats["completed" if method == "jobs.complete" else "failed"] += 1
            return

    # Heartbeats

    def _heartbeat_loop(self) -> None:
        interval = self.lease_ms / 3000.0
        tick = min(0.25, interval / 4)
        while self._active and not self._hard_stop.wait(tick):
            now = time.monotonic()
            with self._cond:
                due = [
                    j
                    for j in self._running.values()
                    if not j.cancelled and not j.lease_lost and now - j._last_beat >= interval
                ]
            for start in range(0, len(due), 500):
                self._beat(due[start : start + 500], now, interval)

    def _beat(self, jobs: List[Job], now: float, interval: float) -> None:
        client = self.client
        if client is None:
            return
        calls = []
        sent_progress = []
        for j in jobs:
            p: Dict[str, Any] = {"id": j.id, "leaseToken": j.lease_token, "extendMs": self.lease_ms}
            progress = j._progress
            if progress is not UNSET:
                p["progress"] = progress
            sent_progress.append(progress)
            calls.append(("jobs.heartbeat", p))
        retry_at = now - interval + min(1.0, interval / 2)
        try:
            results = client.batch(calls)
        except (WharfError, *_TRANSIENT) as e:
            log.warning("heartbeat failed: %s", e)
            for j in jobs:
                j._last_beat = retry_at
            return
        for j, r, progress in zip(jobs, results, sent_progress):
            if isinstance(r, JobCancelled):
                log.info("job %s was cancelled", j.id)
                j.cancelled.set()
            elif isinstance(r, Conflict) or (isinstance(r, WharfError) and r.reason == "not_found"):
                log.warning("job %s: lease lost (%s)", j.id, r)
                j.lease_lost.set()
            elif isinstance(r, BaseException):
                j._last_beat = retry_at
            else:
                j._last_beat = now
                j.lease_expires_at = r.get("leaseExpiresAt", j.lease_expires_at)
                if j._progress is progress:
                    j._progress = UNSET


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def _load(target: str) -> Worker:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"expected module:worker, got {target!r}")
    sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise SystemExit(f"{target} is not a wharf.Worker (or a function returning one)")
    return obj


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m wharf.worker module:worker`: runs the worker until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m wharf.worker", description="Run a wharf.Worker.")
    parser.add_argument("target", help="module:attribute naming a wharf.Worker, or a function returning one")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = _load(args.target)
    worker.run()
    return 0
