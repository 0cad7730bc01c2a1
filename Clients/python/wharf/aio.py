"""The asyncio client: the same surface as `Client`, with coroutines, on asyncio streams.

    async with wharf.AsyncClient("127.0.0.1", 7411, token=...) as client:
        job = await client.jobs.enqueue(queue="mail", kind="welcome")

Any number of tasks may call at once over the one connection; replies are matched by id.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ._wire import UNSET, dumps
from .api import Namespaces
from .client import (
    DEFAULT_PORT,
    BatchItem,
    CallSpec,
    check_frame,
    encode_batch,
    long_poll_seconds,
    normalize_calls,
    outcome,
    request_params,
    tls_context,
)
from .errors import CallTimeout, ConnectionLost, JobNotCompleted, WharfError
from .retry import DEFAULT_RETRY, RetryPolicy, RetryRun

log = logging.getLogger("wharf.aio")

STREAM_LIMIT = 64 << 20
"""Longest reply line accepted (asyncio's default of 64 KiB is too small for leases of big payloads)."""


class _AsyncConnection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, notify: Callable[[str, Any], None]
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.notify = notify
        self.waiting: Dict[Any, "asyncio.Future[Dict[str, Any]]"] = {}
        self.batches: List[List[Any]] = []
        self.alive = True
        self.write_lock = asyncio.Lock()
        self.task = asyncio.ensure_future(self._read_loop())

    def register(self, request_id: Any) -> "asyncio.Future[Dict[str, Any]]":
        if not self.alive:
            raise ConnectionLost("connection closed", sent=False)
        fut: asyncio.Future[Dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = fut
        return fut

    async def send(self, data: bytes) -> None:
        async with self.write_lock:  # concurrent drain() is not safe before Python 3.10
            if not self.alive:
                raise ConnectionLost("connection closed", sent=False)
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (OSError, RuntimeError) as e:
                self.close(ConnectionLost(f"send failed: {e}"))
                raise ConnectionLost(f"connection lost while sending: {e}") from e

    async def _read_loop(self) -> None:
        reason = "connection closed by the server"
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("unparsable line from the server: %r", line[:200])
                    continue
                self._dispatch(message)
        except asyncio.CancelledError:
            reason = "client closed"
        except (OSError, ValueError) as e:  # ValueError: a line longer than STREAM_LIMIT
            reason = f"connection lost: {e}"
        self.close(ConnectionLost(reason))

    def _dispatch(self, message: Any) -> None:
        for m in message if isinstance(message, list) else [message]:
            if not isinstance(m, dict):
                continue
            if "id" not in m:
                if "method" in m:
                    self.notify(m["method"], m.get("params"))
                continue
            if m["id"] is None and "error" in m:
                batch = next((b for b in self.batches if any(i in self.waiting for i in b)), None)
                if batch is None:
                    log.info("server: %s", m.get("error"))
                for i in batch or []:
                    fut = self.waiting.pop(i, None)
                    if fut is not None and not fut.done():
                        fut.set_result(m)
                continue
            fut = self.waiting.pop(m["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(m)

    def close(self, error: BaseException) -> None:
        if not self.alive:
            return
        self.alive = False
        waiting, self.waiting = self.waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(error)
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


class _BatchReplies:
    """The replies to one batch, registered under each of its ids: one future for the whole batch
    instead of one per call. `done`, `set_result` and `set_exception` as the reader calls them on a
    call's future."""

    __slots__ = ("ids", "got", "future")

    def __init__(self, ids: List[Any]) -> None:
        self.ids = ids
        self.got: Dict[Any, Dict[str, Any]] = {}
        self.future: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, reply: Dict[str, Any]) -> None:
        if reply.get("id") is None:  # the whole batch was refused
            for i in self.ids:
                self.got.setdefault(i, reply)
        else:
            self.got[reply["id"]] = reply
        if len(self.got) >= len(self.ids) and not self.future.done():
            self.future.set_result(None)

    def set_exception(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class AsyncEnqueuedJob(dict):
    """The reply of `AsyncClient.enqueue` (`{id, state, duplicate}`), which can wait for its job."""

    def __init__(self, client: "AsyncClient", reply: Mapping[str, Any]) -> None:
        super().__init__(reply)
        self._client = client

    async def result(self, timeout: float = 30.0) -> Any:
        """Waits for the job to finish and returns its result (see `AsyncClient.result`)."""
        return await self._client.result(self["id"], timeout=timeout)


class AsyncClient(Namespaces):
    """An asyncio connection to a Wharf server; see `Client` for the behaviour (it is the same).

    Helpers return coroutines: `await client.jobs.enqueue(...)`. `on_notification(method, params)`
    may be a plain function (called on the loop; it must not block) or a coroutine function (run as
    a task).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: Optional[str] = None,
        timeout: float = 30.0,
        *,
        client_name: str = "wharf-python-async",
        connect_timeout: float = 10.0,
        on_notification: Optional[Callable[[str, Any], Any]] = None,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY,
        ssl: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.on_notification = on_notification
        self.retry = retry
        self.ssl = tls_context(ssl)
        self.retries = 0
        self.role: Optional[str] = None
        self.session_id: Optional[str] = None
        self.connects = 0
        self.limits: Dict[str, Any] = {}
        self._conn: Optional[_AsyncConnection] = None
        self._connecting: Optional[asyncio.Lock] = None
        self._ids = itertools.count(1)
        self._closed = False
        self._tasks: "set[asyncio.Task[Any]]" = set()
        self._install_namespaces(self._call_method)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed" if self._closed else "idle"
        return f"<wharf.AsyncClient {self.host}:{self.port} {state}>"

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._conn is not None and self._conn.alive

    async def connect(self) -> "AsyncClient":
        """Opens the connection and says hello now instead of at the first call."""
        await self._ready()
        return self

    async def enqueue(self, queue: Optional[str] = None, kind: Optional[str] = None, payload: Any = UNSET,
                      **options: Any) -> "AsyncEnqueuedJob":
        """`await client.jobs.enqueue(...)` (the same parameters), whose reply can also wait for the
        job: `await (await client.enqueue("mail", "send", {...})).result(timeout=10)`."""
        return AsyncEnqueuedJob(self, await self.jobs.enqueue(queue, kind, payload, **options))

    async def result(self, job_id: str, timeout: float = 30.0) -> Any:
        """Waits for job `job_id` to finish (`jobs.wait`) and returns its result; raises
        `JobNotCompleted` when it died or was cancelled, or was not final within `timeout` seconds."""
        reply = await self.jobs.wait([job_id], timeout_ms=max(0, int(timeout * 1000)))
        job = reply["jobs"][0]
        if job["state"] != "completed":
            raise JobNotCompleted(job, done=reply["done"])
        return job.get("result")

    async def close(self) -> None:
        """Closes the connection; calls in flight fail with `ConnectionLost`."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(ConnectionLost("client closed"))
            conn.task.cancel()
            try:
                await conn.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
            try:
                await conn.writer.wait_closed()
            except (OSError, RuntimeError):
                pass

    def move_to(self, host: str, port: int) -> None:
        """Points the next calls at another server (a replica that drains answers `draining: true`).

        Calls in flight on the current connection still get their replies there; it closes once they
        did (or after `timeout`)."""
        self.host, self.port = host, port
        old, self._conn = self._conn, None
        if old is not None and old.alive:
            task = asyncio.ensure_future(self._retire(old))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retire(self, conn: _AsyncConnection) -> None:
        deadline = time.monotonic() + self.timeout
        while conn.alive and conn.waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        conn.close(ConnectionLost("moved to another server"))

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _ready(self) -> _AsyncConnection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._closed:
                raise ConnectionLost("client is closed", sent=False)
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=STREAM_LIMIT, ssl=self.ssl), self.connect_timeout
            )
            self.connects += 1
            conn = _AsyncConnection(reader, writer, self._on_notification)
            params: Dict[str, Any] = {"client": self.client_name}
            if self.token is not None:
                params["token"] = self.token
            try:
                hello = await self._request(conn, "session.hello", params, self.timeout)
            except BaseException:
                conn.close(ConnectionLost("hello failed"))
                raise
            self.role = hello.get("role")
            self.session_id = hello.get("sessionId")
            try:
                info = await self._request(conn, "server.info", None, self.timeout)
                if isinstance(info, dict) and isinstance(info.get("limits"), dict):
                    self.limits = info["limits"]
            except (WharfError, CallTimeout):
                pass
            self._conn = conn
            return conn

    def _on_notification(self, method: str, params: Any) -> None:
        handler = self.on_notification
        if handler is None:
            return
        try:
            result = handler(method, params)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:  # noqa: BLE001 - a handler's bug must not stop the reader
            log.exception("notification handler failed for %s", method)

    async def call(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        /,
        *,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> Any:
        """Calls `method` and returns its result, or raises the `WharfError` the server replied with."""
        return await self._call(method, request_params(params, kwargs), timeout)

    def _call_method(self, method: str, params: Dict[str, Any]) -> Any:
        return self._call(method, params, None)

    async def _call(self, method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]) -> Any:
        run = RetryRun(self.retry, method, params)
        while True:
            try:
                result = await self._request(None, method, params, timeout)
                break
            except RetryRun.RETRIED as e:
                delay = run.after(e, closed=self._closed)
                log.info("%s failed (%s); repeating in %.2f s", method, e, delay)
                self.retries += 1
                await asyncio.sleep(delay)
        if method == "session.hello":
            p = params or {}
            if "token" in p:
                self.token = p["token"]
            if "client" in p:
                self.client_name = p["client"]
            self.role = result.get("role", self.role)
            self.session_id = result.get("sessionId", self.session_id)
        return result

    async def _request(
        self, conn: Optional[_AsyncConnection], method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]
    ) -> Any:
        request_id = next(self._ids)
        request: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        data = dumps(request) + b"\n"
        check_frame(data, self.limits, method)
        for attempt in range(3):
            c = conn or await self._ready()
            try:
                fut = c.register(request_id)
                await c.send(data)
                break
            except ConnectionLost as e:
                c.waiting.pop(request_id, None)
                if e.sent or conn is not None or attempt == 2:
                    raise
        wait = (self.timeout if timeout is None else timeout) + long_poll_seconds(params, method)
        try:
            reply = await asyncio.wait_for(fut, wait)
        except asyncio.TimeoutError:
            raise CallTimeout(method, wait) from None
        except ConnectionLost as e:
            raise ConnectionLost(f"{method}: {e}") from e
        finally:
            c.waiting.pop(request_id, None)
        result = outcome(reply)
        if isinstance(result, WharfError):
            raise result
        return result

    async def notify(self, method: str, params: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None:
        """Sends a notification (no reply, ever)."""
        p = request_params(params, kwargs)
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if p is not None:
            message["params"] = p
        conn = await self._ready()
        await conn.send(dumps(message) + b"\n")

    def batch(
        self,
        calls: Optional[Iterable[CallSpec]] = None,
        *,
        timeout: Optional[float] = None,
        return_exceptions: bool = True,
    ) -> Any:
        """`await client.batch([...])` -> outcomes in order; `async with client.batch() as b:` builds one."""
        if calls is None:
            return AsyncBatch(self, timeout=timeout)
        return self._batch_checked(normalize_calls(calls), timeout, return_exceptions)

    async def _batch_checked(
        self, calls: Sequence[Tuple[str, Optional[Dict[str, Any]]]], timeout: Optional[float], return_exceptions: bool
    ) -> List[Any]:
        results = await self._batch(calls, timeout)
        if not return_exceptions:
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return results

    async def _batch(
        self, calls: Sequence[Tuple[str, Optional[Any]]], timeout: Optional[float]
    ) -> List[Any]:
        """Sends `calls` as one batch and returns their outcomes (results or errors) in order.

        A call's params may be `Encoded` JSON text (the worker encodes its outcomes itself)."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        data = encode_batch(ids, calls)
        check_frame(data, self.limits, "batch")
        for attempt in range(3):
            conn = await self._ready()
            try:
                replies = _BatchReplies(ids)
                for i in ids:
                    conn.waiting[i] = replies  # type: ignore[assignment]
                conn.batches.append(ids)
                await conn.send(data)
                break
            except ConnectionLost as e:
                for i in ids:
                    conn.waiting.pop(i, None)
                if ids in conn.batches:
                    conn.batches.remove(ids)
                if e.sent or attempt == 2:
                    raise
        wait = (self.timeout if timeout is None else timeout) + max(long_poll_seconds(p, m) for m, p in calls)
        try:
            try:
                await asyncio.wait_for(replies.future, wait)
            except asyncio.TimeoutError:
                raise CallTimeout(f"batch ({calls[0][0]}...)", wait) from None
            except ConnectionLost:
                pass  # the calls answered before it keep their outcome, the others get the error
            lost = replies.future.exception() if replies.future.done() else None
            return [outcome(replies.got[i]) if i in replies.got else lost for i in ids]
        finally:
            for i in ids:
                conn.waiting.pop(i, None)
            if ids in conn.batches:
                conn.batches.remove(ids)

    def lock(
        self, name: str, ttl: float = 30.0, wait: Optional[float] = None, *, holder: Optional[str] = None, **kwargs: Any
    ) -> Any:
        """A `wharf.AsyncLock`: `async with client.lock("nightly", ttl=60) as held: ...`."""
        from .lock import AsyncLock

        return AsyncLock(self, name, ttl=ttl, wait=wait, holder=holder, **kwargs)


class AsyncBatch(Namespaces):
    """Collects calls and sends them as one JSON-RPC batch when its `async with` block ends."""

    def __init__(self, client: AsyncClient, timeout: Optional[float] = None) -> None:
        self._client = client
        self._timeout = timeout
        self.items: List[BatchItem] = []
        self._install_namespaces(self._add)

    def _add(self, method: str, params: Optional[Dict[str, Any]]) -> BatchItem:
        item = BatchItem(method, params)
        self.items.append(item)
        return item

    def call(self, method: str, params: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> BatchItem:
        """Adds a call (params as for `AsyncClient.call`)."""
        return self._add(method, request_params(params, kwargs))

    async def send(self) -> List[Any]:
        """Sends the calls and returns their outcomes (results or errors) in order."""
        results = await self._client._batch([(i.method, i.params) for i in self.items], self._timeout)
        for item, r in zip(self.items, results):
            item._set(r)
        return results

    async def __aenter__(self) -> "AsyncBatch":
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            await self.send()


__all__ = ["AsyncBatch", "AsyncClient"]
