"""Run jobs: `@worker.task("kind")` handlers, long-poll leasing, heartbeats, graceful stop.

    worker = wharf.Worker(queues=["mail"], concurrency=8, port=7411)

    @worker.task("welcome")
    def welcome(payload):
        return {"sent": True}          # stored as the job's result

    @worker.task("fetch")
    def fetch(payload):
        return wharf.Next({"rows": 3}, kind="store")   # completes this step, enqueues the next

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
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .._util import Flag
from .._wire import UNSET, Encoded, dumps_text, encode_basestring
from ..aio import AsyncClient
from ..client import Client
from ..errors import CallTimeout, Conflict, ConnectionLost, JobCancelled, LimitExceeded, RetryableError, WharfError
from ._threads import HandlerThreads

log = logging.getLogger("wharf.worker")

Handler = Callable[..., Any]
ClientFactory = Callable[[], Client]
_TRANSIENT = (ConnectionLost, CallTimeout, RetryableError, OSError, asyncio.TimeoutError)
_EAGER_TASKS = sys.version_info >= (3, 12)


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


class Next:
    """Return from a handler to complete this step of a run and enqueue the next one, in one transaction
    (`jobs.complete {next}`, Protocol/workflows.md): the next step's job gets `payload` (by default also
    stored as this step's output; pass `result` to store something else), on this job's queue and kind
    unless `queue`/`kind` say otherwise, after `delay` seconds."""

    def __init__(
        self,
        payload: Any = None,
        *,
        kind: Optional[str] = None,
        queue: Optional[str] = None,
        delay: Union[float, datetime.timedelta, None] = None,
        result: Any = UNSET,
        priority: Optional[int] = None,
        max_attempts: Optional[int] = None,
    ) -> None:
        self.payload = payload
        self.kind = kind
        self.queue = queue
        self.delay = delay.total_seconds() if isinstance(delay, datetime.timedelta) else delay
        self.result = payload if result is UNSET else result
        self.priority = priority
        self.max_attempts = max_attempts

    def params(self) -> Dict[str, Any]:
        """The `result` and `next` params of `jobs.complete`."""
        nxt: Dict[str, Any] = {"payload": self.payload}
        if self.kind is not None:
            nxt["kind"] = self.kind
        if self.queue is not None:
            nxt["queue"] = self.queue
        if self.delay is not None:
            nxt["delayMs"] = int(self.delay * 1000)
        if self.priority is not None:
            nxt["priority"] = self.priority
        if self.max_attempts is not None:
            nxt["maxAttempts"] = self.max_attempts
        return {"result": self.result, "next": nxt}

    def __repr__(self) -> str:
        return f"Next(kind={self.kind!r}, queue={self.queue!r})"


class Job:
    """A leased job, as a handler sees it.

    `cancelled` is set (and true) once a heartbeat learned that the job was cancelled: stop early,
    the outcome will be refused anyway. `lease_lost` is set when the lease went to someone else.
    `stopping` is set when the worker was asked to stop: a long handler may checkpoint and return.
    """

    def __init__(self, raw: Dict[str, Any], client: Client, stopping: Flag) -> None:
        get = raw.get
        self.raw = raw
        self.client = client
        self.id: str = raw["id"]
        self.queue: str = get("queue", "")
        self.kind: str = get("kind", "")
        self.payload: Any = get("payload")
        self.attempt: int = get("attempt", 1)
        self.max_attempts: Optional[int] = get("maxAttempts")
        self.lease_token: str = raw["leaseToken"]
        self.lease_expires_at: Optional[str] = get("leaseExpiresAt")
        #: The job's lockKey: it holds the lock of that name (a `locks.*` lock) while it runs.
        self.lock_key: Optional[str] = get("lockKey")
        #: For a job with a lock_key, the fencing token of its grant: pass it to the resource the lock
        #: protects, which refuses tokens lower than the highest it has seen.
        self.fencing_token: Optional[int] = get("fencingToken")
        self.tags: List[str] = get("tags") or []
        self.meta: Dict[str, Any] = get("meta") or {}
        self.cancelled = Flag()
        self.lease_lost = Flag()
        self.stopping = stopping
        self._progress: Any = UNSET
        self._last_beat = time.monotonic()
        self._task: Optional["asyncio.Task[None]"] = None
        self._is_async = False
        self._cancelling = False

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
    `port`, `token` and `ssl` (as `Client`'s). The first argument may also be the list of queues:
    `Worker(["mail"])`. The worker talks to the server over its own asyncio connection, opened with that
    client's host, port, token, TLS context and name; the `Client` itself is what handlers get as
    `job.client`.

    One asyncio event loop does the worker's work: `async def` handlers run on it as tasks, plain
    functions on `concurrency` threads. Outcomes are not sent one by one: those that come in the same
    loop turn go out as one JSON-RPC batch, and while slots are free the next `jobs.lease` rides in that
    batch (`waitMs` 0). When there is nothing to report, free slots long-poll (`poll_ms`). Each running
    job is heartbeated every third of `lease_ms` (all due heartbeats in one batch).

    A handler's return value completes the job as its `result`; an exception fails the attempt
    (retried with the job's backoff) with its message and traceback; `Retry(after=s)` retries after `s`
    seconds; `Discard(reason)` makes the job dead. A job whose kind has no handler fails and is retried.
    When a heartbeat learns that the job was cancelled or its lease lost, the job's flag is set and an
    async handler is cancelled (`asyncio.CancelledError` at its next `await`); its outcome is not sent.

    `addresses` (`["host:port", ...]` or `(host, port)` pairs) lists replicas of one server: the worker
    connects to the first and moves to the next when its server drains (a lease answered with
    `draining: true`, a call refused with `shutting_down`) or its connection is lost. Jobs it runs keep
    their leases across the move: their heartbeats and outcomes go to the next replica.

    `run()` blocks until `stop()` or SIGTERM/SIGINT: it stops leasing (within `poll_ms`), waits up to
    `grace` seconds for running jobs, reports their outcomes, and closes its connection, so the server
    gives back at once the jobs that did not finish. A second signal skips the wait.
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
        addresses: Optional[Sequence[Union[str, Tuple[str, int]]]] = None,
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
        self.addresses = [_address(a) for a in addresses or []]
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
        self._plans: Dict[str, Tuple[Handler, bool, bool]] = {}
        self._running: Dict[str, Job] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._session: Optional[_Session] = None
        self._active = False
        self.stats = {"leased": 0, "completed": 0, "failed": 0, "abandoned": 0, "batches": 0, "moves": 0}
        """Counters since the worker started: jobs leased, completed, failed, and left unfinished at stop;
        `batches`: JSON-RPC batches that carried outcomes (each holds all those of one loop turn); `moves`:
        times it moved to the next of its `addresses`."""

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

    def _plan(self, kind: str) -> Optional[Tuple[Handler, bool, bool]]:
        """`(handler, is_async, wants_job)` for `kind`, worked out once per handler."""
        fn = self.handlers.get(kind)
        if fn is None:
            return None
        plan = self._plans.get(kind)
        if plan is None or plan[0] is not fn:
            plan = self._plans[kind] = (fn, inspect.iscoroutinefunction(fn), _wants_job(fn))
        return plan

    # Running

    @property
    def running_jobs(self) -> List[Job]:
        """The jobs being run right now."""
        for _ in range(10):
            try:
                return list(self._running.values())
            except RuntimeError:  # changed size on the loop's thread while copied; copy again
                continue
        return []

    def stop(self, wait_for_jobs: bool = True) -> None:
        """Asks `run()` to stop leasing and return once running jobs finished (or `grace` passed).

        With `wait_for_jobs=False` it does not wait for them. Safe from signal handlers and other threads.
        """
        self.stopping.set()
        if not wait_for_jobs:
            self._hard_stop.set()
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:
                pass  # the loop already closed

    def run_in_thread(self, *, drain: bool = False) -> threading.Thread:
        """Starts `run()` on a daemon thread (no signal handlers) and returns the thread."""
        t = threading.Thread(
            target=self.run,
            kwargs={"install_signals": False, "drain": drain},
            name=f"wharf-worker-{self.name}",
            daemon=True,
        )
        t.start()
        return t

    def run(self, install_signals: bool = True, *, drain: bool = False) -> None:
        """Leases and runs jobs until stopped (see the class documentation).

        With `drain=True` it also stops by itself once a lease finds no job and none is running (a
        batch run that empties the queues; leases then do not long-poll).
        """
        if self._active:
            raise RuntimeError("this worker is already running")
        self._active = True
        self.stopping.clear()
        self._hard_stop.clear()
        loop = asyncio.new_event_loop()
        self._loop = loop
        signals = self._install_signals(loop) if install_signals else {}
        client = self.client = self._factory()
        log.info("worker %s leasing from %s (concurrency %d)", self.name, ", ".join(self.queues), self.concurrency)
        try:
            loop.run_until_complete(_serve(self, client, drain))
        finally:
            self._active = False
            _close_loop(loop)
            self._loop = None
            for sig, previous in signals.items():
                signal.signal(sig, previous)
            if self._own_client:
                client.close()
            log.info("worker %s stopped", self.name)

    def _wake_up(self) -> None:
        session = self._session
        if session is not None:
            session.wake.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> Dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int) -> None:
            if self.stopping:
                log.warning("second signal: not waiting for running jobs")
                self.stop(wait_for_jobs=False)
            else:
                log.info("signal %d: no more leasing; waiting up to %.0f s for running jobs", signum, self.grace)
                self.stop()

        previous: Dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, on_signal, sig)
        return previous


class _Outcome:
    """A `jobs.complete` or `jobs.fail` waiting for a batch, or for its reply; `params` is JSON text."""

    __slots__ = ("job", "method", "params", "tries")

    def __init__(self, job: Job, method: str, params: Encoded) -> None:
        self.job = job
        self.method = method
        self.params = params
        self.tries = 0


class _Lease:
    """A `jobs.lease` in flight, for `max` jobs."""

    __slots__ = ("max", "wait_ms")

    def __init__(self, max_jobs: int, wait_ms: int) -> None:
        self.max = max_jobs
        self.wait_ms = wait_ms


Call = Union[_Outcome, _Lease]


class _Session:
    """One `Worker.run()`: the loop's state, its connection, the batches it sends."""

    def __init__(self, worker: Worker, client: Client, loop: asyncio.AbstractEventLoop, drain: bool) -> None:
        self.w = worker
        self.client = client
        self.loop = loop
        self.drain = drain
        self.addresses = worker.addresses or [(client.host, client.port)]
        self.at = 0  # which of `addresses` the connection goes to
        self.conn = AsyncClient(
            self.addresses[0][0],
            self.addresses[0][1],
            token=client.token,
            timeout=client.timeout,
            client_name=client.client_name,
            connect_timeout=client.connect_timeout,
            ssl=client.ssl,
        )
        self.threads = HandlerThreads(worker.concurrency, "wharf-job")
        self.wake = asyncio.Event()
        self.running = worker._running
        self.outbox: List[_Outcome] = []
        self.flush_scheduled = False
        self.requested = 0  # jobs asked for by the leases in flight
        self.leases = 0  # leases in flight
        self.parked = False  # a long poll is in flight
        self.paused = False  # leasing failed: waiting before the next try
        self.backoff = 0.5
        # The last lease came back without a job. At the start: long-poll (in drain mode: lease at once).
        self.found_empty = not drain
        self.lane = max(1, min(1000, (worker.concurrency + 1) // 2))  # most jobs one lease asks for
        self.unsettled = 0  # outcomes not yet answered (in the outbox, in flight, or waiting to be repeated)
        self.tasks: "set[asyncio.Task[Any]]" = set()
        self.lease_params = {
            "queues": worker.queues,
            "leaseMs": worker.lease_ms,
            "worker": worker.name,
        }

    # The run

    async def serve(self) -> None:
        w = self.w
        w._session = self
        beats = self.loop.create_task(self.heartbeats())
        try:
            try:
                await self.conn.connect()
            except (WharfError, *_TRANSIENT) as e:
                log.warning("cannot connect yet (the first lease retries): %s", e)
            self.kick()
            while not w.stopping:
                await self.wake.wait()
                self.wake.clear()
            await self.finish()
        finally:
            beats.cancel()
            w._active = False
            self.threads.close()
            await self.conn.close()
            w._session = None

    async def wait_until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Waits for `done()` (re-checked at each wake-up) until `deadline` or a hard stop."""
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or self.w._hard_stop.is_set():
                return False
            try:
                await asyncio.wait_for(self.wake.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
        return True

    async def finish(self) -> None:
        """Stopping: lets the leases in flight come back, the running jobs finish within `grace` and
        their outcomes be answered; then what is still running is left to the server."""
        w = self.w
        deadline = time.monotonic() + w.grace
        await self.wait_until(lambda: not self.running and not self.leases, deadline)
        left = list(self.running.values())
        if left:
            w.stats["abandoned"] += len(left)
            log.warning("leaving %d unfinished job(s) to the server: %s", len(left), ", ".join(j.id for j in left))
            for job in left:
                self.running.pop(job.id, None)
                self.cancel(job)
        await self.wait_until(lambda: not self.unsettled, max(deadline, time.monotonic() + 5.0))

    def wake_if_stopping(self) -> None:
        if self.w.stopping:
            self.wake.set()

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # Leasing

    def free(self) -> int:
        return min(self.w.concurrency - len(self.running) - self.requested, 1000)

    def lease_call(self, wait_ms: int) -> Optional[_Lease]:
        """A lease for free slots, when one may go out now (counted as in flight).

        One lease asks for at most half the slots, so that while the jobs of one lease run (or their
        outcomes travel), the next lease is already on its way: two batches in flight per worker."""
        if self.w.stopping or self.paused or self.parked:
            return None
        free = min(self.free(), self.lane)
        if free <= 0:
            return None
        self.leases += 1
        self.requested += free
        self.parked = wait_ms > 0
        return _Lease(free, wait_ms)

    def kick(self) -> None:
        """Leases for free slots, unless a batch about to go out carries the lease.

        While leases bring jobs, the next goes out at once without waiting (`waitMs` 0); once one came
        back empty, a single long poll (`poll_ms`) waits for work."""
        if self.flush_scheduled:
            return
        if self.found_empty:
            if self.leases:
                return
            if self.drain:
                if not self.running and not self.unsettled and not self.w.stopping:
                    log.info("worker %s: the queues are drained", self.w.name)
                    self.w.stopping.set()
                    self.wake.set()
                return
        lease = self.lease_call(0 if self.drain or not self.found_empty else self.w.poll_ms)
        if lease is not None:
            self.spawn(self.send([lease]))

    def leased(self, lease: _Lease, reply: Any) -> None:
        self.leases -= 1
        self.requested -= lease.max
        if lease.wait_ms > 0:
            self.parked = False
        if isinstance(reply, BaseException):
            log.warning("lease failed (retrying in %.1f s): %s", self.backoff, reply)
            self.paused = True
            self.loop.call_later(self.backoff, self.resume)
            self.backoff = min(self.backoff * 2, 10.0)
            self.wake_if_stopping()
            return
        self.backoff = 0.5
        jobs = reply.get("jobs") or []
        self.found_empty = not jobs
        if jobs:
            self.w.stats["leased"] += len(jobs)
            start, client, stopping = self.start, self.client, self.w.stopping
            for raw in jobs:
                start(Job(raw, client, stopping))
        self.kick()
        self.wake_if_stopping()

    def resume(self) -> None:
        self.paused = False
        self.kick()

    # Moving to another replica

    def check_connection(self) -> None:
        """Moves on before sending when the server closed the connection (a replica that drained)."""
        conn = self.conn._conn
        if conn is not None and not conn.alive:
            self.move_off((self.conn.host, self.conn.port), "connection closed")

    def move_off(self, where: Tuple[str, int], why: str) -> bool:
        """Points the connection at the next address, unless it already left `where` (the replica the
        telling reply came from: one drain moves the worker once, however many replies say so)."""
        if len(self.addresses) < 2 or (self.conn.host, self.conn.port) != where:
            return False
        self.at = (self.at + 1) % len(self.addresses)
        host, port = self.addresses[self.at]
        log.info("worker %s: %s:%d %s; moving to %s:%d", self.w.name, where[0], where[1], why, host, port)
        self.w.stats["moves"] += 1
        self.conn.move_to(host, port)
        return True

    # Running jobs

    def start(self, job: Job) -> None:
        w = self.w
        plan = w._plan(job.kind)
        if plan is None:
            log.error("job %s: no handler for kind %r", job.id, job.kind)
            message = f"no handler for kind {job.kind!r} in {w.name}"
            self.report(job, "jobs.fail", {"error": {"message": message, "type": "NoHandler"}})
            return
        self.running[job.id] = job
        job._is_async = plan[1]
        if _EAGER_TASKS:  # a handler that never waits runs to its end here, without a loop turn
            task = asyncio.Task(self.execute(job, *plan), loop=self.loop, eager_start=True)  # type: ignore[call-arg]
            job._task = None if task.done() else task
        else:
            job._task = self.loop.create_task(self.execute(job, *plan))

    async def execute(self, job: Job, fn: Handler, is_async: bool, wants_job: bool) -> None:
        arg = job if wants_job else job.payload
        try:
            if is_async:
                result = await fn(arg)
            else:
                result = await self.threads.run(self.loop, fn, arg)
                if inspect.isawaitable(result):
                    result = await result
            # Encoded here, once: an unserializable result is a failed attempt.
            if isinstance(result, Next):
                next_params = result.params()
                dumps_text(next_params)
            else:
                result_text = "null" if result is None else dumps_text(result)
        except asyncio.CancelledError:
            if job._cancelling:
                self.finished(job)  # cancelled by the worker: the outcome is not reported
                return
            self.finished(job, "jobs.fail", _failure(sys.exc_info()[1]))
        except Retry as r:
            self.finished(
                job, "jobs.fail", {"error": {"message": r.reason, "type": "Retry"}, "retryInMs": int(r.after * 1000)}
            )
        except Discard as d:
            self.finished(job, "jobs.fail", {"error": {"message": d.reason, "type": "Discard"}, "retryable": False})
        except Exception as e:  # noqa: BLE001 - a failed attempt
            self.finished(job, "jobs.fail", _failure(e))
        else:
            if isinstance(result, Next):
                self.finished(job, "jobs.complete", next_params)
            else:
                self.finished(job, "jobs.complete", result_text)

    def finished(self, job: Job, method: Optional[str] = None, params: Union[str, Dict[str, Any], None] = None) -> None:
        if self.running.pop(job.id, None) is None:
            return  # abandoned at stop: the server has it back
        job._task = None
        if method is not None:
            self.report(job, method, params if params is not None else {})
        else:
            self.kick()
        if self.w.stopping.is_set():
            self.wake.set()

    def cancel(self, job: Job) -> None:
        """Cancels an async handler (a plain one only sees its flags)."""
        task = job._task
        if task is not None and job._is_async and not task.done():
            job._cancelling = True
            task.cancel()

    # Outcomes

    def report(self, job: Job, method: str, params: Union[str, Dict[str, Any]]) -> None:
        """Queues the outcome: `params` without id and token, or for a completion the result's JSON text."""
        if job.cancelled:
            log.info("job %s was cancelled; its outcome is not reported", job.id)
            self.kick()
            return
        if job.lease_lost:
            log.warning("job %s: lease lost; its outcome is not reported", job.id)
            self.kick()
            return
        self.unsettled += 1
        self.queue(_Outcome(job, method, _outcome_params(job, params)))

    def queue(self, outcome: _Outcome) -> None:
        self.outbox.append(outcome)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Sends this turn's outcomes as one batch, with a lease for the free slots riding along."""
        self.flush_scheduled = False
        calls: List[Call] = list(self.outbox)
        self.outbox.clear()
        lease = self.lease_call(0)
        if lease is not None:
            calls.append(lease)
        if not calls:
            self.kick()
            return
        size = max(1, int(self.conn.limits.get("maxBatch") or 1000))
        for i in range(0, len(calls), size):
            self.spawn(self.send(calls[i : i + size]))

    async def send(self, calls: List[Call]) -> None:
        requests = [(c.method, c.params) if c.__class__ is _Outcome else self.request(c) for c in calls]
        if not isinstance(calls[0], _Lease):
            self.w.stats["batches"] += 1
        self.check_connection()
        where = (self.conn.host, self.conn.port)
        try:
            replies: List[Any] = await self.conn._batch(requests, None)
        except LimitExceeded as e:
            if len(calls) > 1 and e.data.get("client"):  # too long a line for the server: halve it
                half = len(calls) // 2
                await asyncio.gather(self.send(calls[:half]), self.send(calls[half:]))
                return
            replies = [e] * len(calls)
        except (WharfError, *_TRANSIENT) as e:
            replies = [e] * len(calls)
        left = next((why for why in map(_left_server, replies) if why), None)
        moved = left is not None and self.move_off(where, left)
        for call, reply in zip(calls, replies):
            if moved and isinstance(call, _Lease) and isinstance(reply, BaseException) and self.backoff == 0.5:
                # The first failure after the move is not the next replica's: lease there at once.
                self.backoff = 1.0
                self.leases -= 1
                self.requested -= call.max
                if call.wait_ms > 0:
                    self.parked = False
                self.kick()
                continue
            if isinstance(call, _Lease):
                self.leased(call, reply)
            else:
                self.answered(call, reply)

    def request(self, call: Call) -> Tuple[str, Any]:
        if isinstance(call, _Lease):
            return "jobs.lease", {**self.lease_params, "max": call.max, "waitMs": call.wait_ms}
        return call.method, call.params

    def answered(self, outcome: _Outcome, reply: Any) -> None:
        """Counts an answered outcome, or repeats it (same token: idempotent) after a transient failure."""
        job, method, w = outcome.job, outcome.method, self.w
        if not isinstance(reply, BaseException):
            w.stats["completed" if method == "jobs.complete" else "failed"] += 1
        elif isinstance(reply, JobCancelled):
            job.cancelled.set()
            log.info("job %s was cancelled while running", job.id)
        elif isinstance(reply, Conflict):
            log.warning("job %s: %s refused: %s", job.id, method, reply)
        elif isinstance(reply, _TRANSIENT) or (isinstance(reply, WharfError) and reply.retryable):
            if outcome.tries < 4 and not w._hard_stop.is_set() and w._active:
                self.loop.call_later(0.2 * 2**outcome.tries, self.queue, outcome)
                outcome.tries += 1
                return
            log.error("job %s: could not report (%s): %s", job.id, method, reply)
        elif method == "jobs.complete":
            log.error("job %s: complete refused (%s); failing it instead", job.id, reply)
            params = {"error": {"message": f"could not complete: {reply}", "type": "Result"}}
            self.queue(_Outcome(job, "jobs.fail", _outcome_params(job, params)))
            return
        else:
            log.error("job %s: %s refused: %s", job.id, method, reply)
        self.unsettled -= 1
        if not self.unsettled:
            self.kick()
            self.wake_if_stopping()

    # Heartbeats

    async def heartbeats(self) -> None:
        interval = self.w.lease_ms / 3000.0
        tick = min(0.25, interval / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            due = [
                j
                for j in self.running.values()
                if not j.cancelled and not j.lease_lost and now - j._last_beat >= interval
            ]
            size = max(1, int(self.conn.limits.get("maxBatch") or 1000))
            for start in range(0, len(due), size):
                await self.beat(due[start : start + size], now, interval)

    async def beat(self, jobs: List[Job], now: float, interval: float) -> None:
        calls = []
        sent_progress = []
        for j in jobs:
            p: Dict[str, Any] = {"id": j.id, "leaseToken": j.lease_token, "extendMs": self.w.lease_ms}
            progress = j._progress
            if progress is not UNSET:
                p["progress"] = progress
            sent_progress.append(progress)
            calls.append(("jobs.heartbeat", p))
        retry_at = now - interval + min(1.0, interval / 2)
        self.check_connection()
        where = (self.conn.host, self.conn.port)
        try:
            results = await self.conn._batch(calls, None)
        except (WharfError, *_TRANSIENT) as e:
            log.warning("heartbeat failed: %s", e)
            self.move_off(where, _left_server(e) or "failed")
            for j in jobs:
                j._last_beat = retry_at
            return
        left = next((why for why in map(_left_server, results) if why), None)
        if left:
            self.move_off(where, left)
        for j, r, progress in zip(jobs, results, sent_progress):
            if isinstance(r, JobCancelled):
                log.info("job %s was cancelled", j.id)
                j.cancelled.set()
                self.cancel(j)
            elif isinstance(r, Conflict) or (isinstance(r, WharfError) and r.reason == "not_found"):
                log.warning("job %s: lease lost (%s)", j.id, r)
                j.lease_lost.set()
                self.cancel(j)
            elif isinstance(r, BaseException):
                j._last_beat = retry_at
            else:
                j._last_beat = now
                j.lease_expires_at = r.get("leaseExpiresAt", j.lease_expires_at)
                if j._progress is progress:
                    j._progress = UNSET


def _address(a: Union[str, Tuple[str, int]]) -> Tuple[str, int]:
    """`"host:port"` or `(host, port)` as `(host, port)`."""
    if isinstance(a, str):
        host, _, port = a.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)
    return a[0], int(a[1])


def _left_server(reply: Any) -> Optional[str]:
    """Why a reply says that its server is going away (it drains, or the connection is gone), or None."""
    if isinstance(reply, dict):
        return "is draining" if reply.get("draining") is True else None
    if isinstance(reply, WharfError):
        return "is shutting down" if reply.reason == "shutting_down" else None
    if isinstance(reply, (ConnectionLost, OSError)):
        return f"cannot be reached ({reply})"
    return None


async def _serve(worker: Worker, client: Client, drain: bool) -> None:
    # Made on the loop: before Python 3.10 an asyncio.Event binds to the loop current when it is made.
    await _Session(worker, client, asyncio.get_running_loop(), drain).serve()


def _outcome_params(job: Job, params: Union[str, Dict[str, Any]]) -> Encoded:
    """The params of `jobs.complete` (given the result's JSON text) or `jobs.fail` (given a dict)."""
    if isinstance(params, str):
        id_, token = encode_basestring(job.id), encode_basestring(job.lease_token)
        return Encoded(f'{{"id":{id_},"leaseToken":{token},"result":{params}}}')
    return Encoded(dumps_text({"id": job.id, "leaseToken": job.lease_token, **params}))


def _failure(e: BaseException) -> Dict[str, Any]:
    return {
        "error": {
            "message": f"{type(e).__name__}: {e}",
            "type": f"{type(e).__module__}.{type(e).__qualname__}",
            "traceback": "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=30)),
        }
    }


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Gives cancelled handlers a moment to unwind, then closes the loop."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
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
