"""The synchronous client: one TCP connection, shared by any number of threads.

Requests are pipelined: each gets its own id, and a reader thread hands every reply to the thread
waiting for that id, so replies may arrive in any order. A connection that drops fails the calls
in flight with `ConnectionLost`; the next call opens a new one and presents the token again
(`session.hello`) before anything else is sent on it.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import socket
import ssl as _ssl
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._wire import UNSET, Encoded, dumps, dumps_text, encode_basestring, merge
from .api import Namespaces
from .errors import CallTimeout, ConnectionLost, JobNotCompleted, LimitExceeded, WharfError, from_error
from .retry import DEFAULT_RETRY, RetryPolicy, RetryRun

log = logging.getLogger("wharf.client")

NotificationHandler = Callable[[str, Any], Any]
CallSpec = Union[Tuple[str, Optional[Mapping[str, Any]]], Tuple[str], Mapping[str, Any]]

DEFAULT_PORT = 7411


def request_params(params: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """`call(method, {...})` sends the dict as given; `call(method, name=value)` renames to camelCase.

    `call(method, params={...})` is taken as the dict form (no method has a param named `params`).
    """
    if params is None and set(kwargs) == {"params"} and isinstance(kwargs["params"], Mapping):
        params, kwargs = kwargs["params"], {}
    out: Optional[Dict[str, Any]] = dict(params) if params is not None else None
    if kwargs:
        out = merge(out or {}, kwargs)
    return out


def long_poll_seconds(params: Optional[Mapping[str, Any]], method: Optional[str] = None) -> float:
    """Extra time a call may legitimately take: its `waitMs` (long polls), or `jobs.wait`'s `timeoutMs`."""
    # JSON text (a worker's outcomes: one per job of a batch) waits for nothing; `str` first, since an
    # isinstance against typing's Mapping costs microseconds.
    if params is None or isinstance(params, str):
        return 0.0
    if isinstance(params, Mapping):
        wait = params.get("timeoutMs" if method == "jobs.wait" else "waitMs")
        if method == "jobs.wait" and wait is None:
            wait = 30_000  # the server's default
        if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 0:
            return wait / 1000.0
    return 0.0


def normalize_calls(calls: Iterable[CallSpec]) -> List[Tuple[str, Optional[Dict[str, Any]]]]:
    """`[("m", {...}), ("m",), {"method": "m", "params": {...}}]` -> `[(method, params), ...]`."""
    out: List[Tuple[str, Optional[Dict[str, Any]]]] = []
    for c in calls:
        if isinstance(c, Mapping):
            method, params = c["method"], c.get("params")
        elif len(c) == 1:
            method, params = c[0], None
        else:
            method, params = c[0], c[1]  # type: ignore[misc]
        out.append((str(method), dict(params) if params is not None else None))
    return out


def outcome(reply: Mapping[str, Any]) -> Any:
    """The result of a reply, or the `WharfError` it carries (returned, not raised)."""
    if "error" in reply:
        return from_error(reply["error"])
    return reply.get("result")


def encode_batch(ids: Sequence[int], calls: Sequence[Tuple[str, Optional[Any]]]) -> bytes:
    """One batch line. Params that are `Encoded` JSON text go in as they are; the rest is encoded here."""
    if not any(isinstance(p, Encoded) for _, p in calls):
        message = []
        for request_id, (method, params) in zip(ids, calls):
            request: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                request["params"] = params
            message.append(request)
        return dumps(message) + b"\n"
    parts = []
    for request_id, (method, params) in zip(ids, calls):
        text = params if isinstance(params, Encoded) else dumps_text(params) if params is not None else None
        head = f'{{"jsonrpc":"2.0","id":{request_id},"method":{encode_basestring(method)}'
        parts.append(f"{head},\"params\":{text}}}" if text is not None else head + "}")
    return ("[" + ",".join(parts) + "]\n").encode()


def check_frame(data: bytes, limits: Mapping[str, Any], what: str) -> None:
    """Refuses a line longer than the server's `maxFrameBytes` before it is sent."""
    limit = limits.get("maxFrameBytes")
    if isinstance(limit, int) and len(data) - 1 > limit:
        raise LimitExceeded(
            -32005,
            f"{what}: request of {len(data) - 1} bytes exceeds the server's frame limit",
            {"reason": "limit_exceeded", "retryable": False, "limit": "frameBytes", "max": limit, "client": True},
        )


class _Waiter:
    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[Dict[str, Any]] = None
        self.error: Optional[BaseException] = None


class _Connection:
    """One socket, its reader thread and the waiters for replies on it."""

    def __init__(self, sock: socket.socket, notify: Callable[[str, Any], None], label: str) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        self.notify = notify
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.waiting: Dict[Any, _Waiter] = {}
        self.batches: List[List[Any]] = []
        self.alive = True
        self.last_error: Optional[str] = None
        """The message of the last connection-level error (null id) the server sent, told at the close."""
        self.reader = threading.Thread(target=self._read_loop, name=f"wharf-reader-{label}", daemon=True)
        self.reader.start()

    def register(self, request_id: Any) -> _Waiter:
        waiter = _Waiter()
        with self.lock:
            if not self.alive:
                raise ConnectionLost("connection closed", sent=False)
            self.waiting[request_id] = waiter
        return waiter

    def forget(self, request_id: Any) -> None:
        with self.lock:
            self.waiting.pop(request_id, None)

    def send(self, data: bytes) -> None:
        with self.write_lock:
            if not self.alive:
                raise ConnectionLost("connection closed", sent=False)
            try:
                self.sock.sendall(data)
            except OSError as e:
                self.close(ConnectionLost(f"send failed: {e}"))
                raise ConnectionLost(f"connection lost while sending: {e}") from e

    def _read_loop(self) -> None:
        reason = "connection closed by the server"
        try:
            for line in self.file:
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("unparsable line from the server: %r", line[:200])
                    continue
                self._dispatch(message)
        except OSError as e:
            reason = f"connection lost: {e}"
        except Exception:  # noqa: BLE001 - the reader must fail the waiters, whatever happened
            log.exception("reader failed")
            reason = "reader failed"
        if reason == "connection closed by the server" and self.last_error:
            reason = f"{reason}: {self.last_error}"
        self.close(ConnectionLost(reason))
        self.file.close()  # the socket's descriptor is released once this is closed too

    def _dispatch(self, message: Any) -> None:
        for m in message if isinstance(message, list) else [message]:
            if not isinstance(m, dict):
                continue
            if "id" not in m:
                if "method" in m:
                    self.notify(m["method"], m.get("params"))
                continue
            if m["id"] is None and "error" in m:
                self._orphan_error(m)
                continue
            with self.lock:
                waiter = self.waiting.pop(m["id"], None)
            if waiter is not None:
                waiter.reply = m
                waiter.event.set()

    def _orphan_error(self, m: Dict[str, Any]) -> None:
        """An error with a null id: a whole batch was refused (too long), or the server is closing."""
        with self.lock:
            batch = next((b for b in self.batches if any(i in self.waiting for i in b)), None)
            waiters = [self.waiting.pop(i) for i in batch or [] if i in self.waiting]
        if not waiters:
            log.info("server: %s", m.get("error"))
            self.last_error = str((m.get("error") or {}).get("message"))
        for w in waiters:
            w.reply = m
            w.event.set()

    def close(self, error: BaseException) -> None:
        with self.lock:
            if not self.alive:
                return
            self.alive = False
            waiting, self.waiting = self.waiting, {}
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for w in waiting.values():
            w.error = error
            w.event.set()


def tls_context(ssl: Union["_ssl.SSLContext", bool, None]) -> Optional["_ssl.SSLContext"]:
    """The context for a client's `ssl=` argument: True is the default context (system trust store)."""
    if ssl is None or ssl is False:
        return None
    if ssl is True:
        return _ssl.create_default_context()
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    raise TypeError("ssl must be an ssl.SSLContext, True or None")


class Client(Namespaces):
    """A connection to a Wharf server, safe to share between threads.

    `Client(host="127.0.0.1", port=7411, token=None, timeout=30)`. It connects on the first call (or
    `connect()`), sends `session.hello` with `token`, and reconnects the same way after the connection
    drops. `timeout` is the default wait for a reply in seconds (long polls get their `waitMs` on top).

    Calls: `client.call("jobs.get", id="7")` or `client.call("jobs.get", {"id": "7"})`, the
    namespaced helpers (`client.jobs.enqueue(queue="mail", kind="welcome", delay_ms=5000)`),
    `client.batch([...])` for one JSON-RPC batch, `client.notify(...)` for a notification.
    Server notifications go to `on_notification(method, params)`, called on a dedicated thread in the
    order they arrived (so it may call the client).

    `retry` (a `wharf.RetryPolicy`, None for none) repeats calls that failed in a way that makes a
    repeat safe; by default enqueues, which carry an idempotency key unless told not to
    (`client.jobs.enqueue(..., idempotency_key=None)`), so a repeat after a lost reply or an
    `outcome_unknown` error returns the job the first attempt made instead of making another.
    `retries` counts the repeats.

    `ssl`: `True` for TLS verified with the system's trust store, or an `ssl.SSLContext` (a private
    CA: `ssl.create_default_context(cafile=...)`; a client certificate: `load_cert_chain(...)`). The
    server's certificate must match `host`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: Optional[str] = None,
        timeout: float = 30.0,
        *,
        client_name: str = "wharf-python",
        connect_timeout: float = 10.0,
        on_notification: Optional[NotificationHandler] = None,
        retry: Optional[RetryPolicy] = DEFAULT_RETRY,
        ssl: Union["_ssl.SSLContext", bool, None] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.on_notification = on_notification
        self.retry = retry
        """Which failed calls are repeated, and how often (`wharf.RetryPolicy`; None: none)."""
        self.ssl = tls_context(ssl)
        """The TLS context connections use (None: plaintext)."""
        self.retries = 0
        """How many times a call was repeated after a retryable failure."""
        self.role: Optional[str] = None
        """The role granted by the last `session.hello`."""
        self.session_id: Optional[str] = None
        """The server's id of the current connection's session."""
        self.connects = 0
        """How many connections this client has opened (1 + reconnects)."""
        self.limits: Dict[str, Any] = {}
        """The server's limits (`server.info`), learnt at connect: `maxFrameBytes`, `maxBatch`, ..."""
        self._conn: Optional[_Connection] = None
        self._connect_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        self._closed = False
        self._notifications: Optional["queue.Queue[Optional[Tuple[str, Any]]]"] = None
        self._install_namespaces(self._call_method)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed" if self._closed else "idle"
        return f"<wharf.Client {self.host}:{self.port} {state}>"

    # Connection

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        conn = self._conn
        return conn is not None and conn.alive

    def connect(self) -> "Client":
        """Opens the connection and says hello now instead of at the first call."""
        self._ready()
        return self

    def enqueue(self, queue: Optional[str] = None, kind: Optional[str] = None, payload: Any = UNSET,
                **options: Any) -> "EnqueuedJob":
        """`client.jobs.enqueue(...)` (the same parameters), whose reply can also wait for the job:
        `client.enqueue("mail", "send", {...}).result(timeout=10)`."""
        return EnqueuedJob(self, self.jobs.enqueue(queue, kind, payload, **options))

    def result(self, job_id: str, timeout: float = 30.0) -> Any:
        """Waits for job `job_id` to finish (`jobs.wait`) and returns its result:
        `client.result(client.jobs.enqueue("mail", "send", {...})["id"], timeout=10)`.

        Raises `JobNotCompleted` when the job died or was cancelled, or was not final within
        `timeout` seconds (`done` tells which).
        """
        reply = self.jobs.wait([job_id], timeout_ms=max(0, int(timeout * 1000)))
        job = reply["jobs"][0]
        if job["state"] != "completed":
            raise JobNotCompleted(job, done=reply["done"])
        return job.get("result")

    def close(self) -> None:
        """Closes the connection; calls in flight fail with `ConnectionLost`, later calls too."""
        with self._connect_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(ConnectionLost("client closed"))
        if self._notifications is not None:
            self._notifications.put(None)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    def _ready(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        with self._connect_lock:
            if self._closed:
                raise ConnectionLost("client is closed", sent=False)
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl is not None:
                try:
                    sock = self.ssl.wrap_socket(sock, server_hostname=self.host)
                except BaseException:
                    sock.close()
                    raise
            sock.settimeout(None)
            self.connects += 1
            conn = _Connection(sock, self._on_notification, f"{self.host}:{self.port}#{self.connects}")
            try:
                hello = self._request(conn, "session.hello", self._hello_params(), self.timeout)
            except BaseException:
                conn.close(ConnectionLost("hello failed"))
                raise
            self.role = hello.get("role")
            self.session_id = hello.get("sessionId")
            self._learn_limits(conn)
            self._conn = conn
            return conn

    def _learn_limits(self, conn: _Connection) -> None:
        """Asks the server for its limits, so that an oversized request fails here instead of costing
        the connection (the server closes it, and with it gives back the jobs leased through it)."""
        try:
            info = self._request(conn, "server.info", None, self.timeout)
        except (WharfError, CallTimeout):
            return
        limits = info.get("limits") if isinstance(info, dict) else None
        if isinstance(limits, dict):
            self.limits = limits

    def _hello_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {"client": self.client_name}
        if self.token is not None:
            params["token"] = self.token
        return params

    def _on_notification(self, method: str, params: Any) -> None:
        if self.on_notification is None:
            return
        with self._id_lock:
            if self._notifications is None:
                self._notifications = queue.Queue()
                threading.Thread(target=self._notification_loop, name="wharf-notifications", daemon=True).start()
        self._notifications.put((method, params))

    def _notification_loop(self) -> None:
        q = self._notifications
        assert q is not None
        while True:
            item = q.get()
            if item is None:
                return
            handler = self.on_notification
            if handler is None:
                continue
            try:
                handler(*item)
            except Exception:  # noqa: BLE001 - a handler's bug must not stop later notifications
                log.exception("notification handler failed for %s", item[0])

    # Calls

    def call(
        self,
        method: str,
        params: Optional[Mapping[str, Any]] = None,
        /,
        *,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> Any:
        """Calls `method` and returns its result, or raises the `WharfError` the server replied with.

        Params come as a dict (sent as given) or as keyword arguments (snake_case renamed to
        camelCase). `timeout` (seconds) overrides the client's; `CallTimeout` when it passes.
        """
        return self._call(method, request_params(params, kwargs), timeout)

    def _call_method(self, method: str, params: Dict[str, Any]) -> Any:
        return self._call(method, params, None)

    def _call(self, method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]) -> Any:
        run = RetryRun(self.retry, method, params)
        while True:
            try:
                result = self._request(None, method, params, timeout)
                break
            except RetryRun.RETRIED as e:
                delay = run.after(e, closed=self._closed)
                log.info("%s failed (%s); repeating in %.2f s", method, e, delay)
                self.retries += 1
                time.sleep(delay)
        if method == "session.hello":
            self._remember_hello(params or {}, result)
        return result

    def _remember_hello(self, params: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """An explicit hello changes what reconnects present."""
        if "token" in params:
            self.token = params["token"]
        if "client" in params:
            self.client_name = params["client"]
        self.role = result.get("role", self.role)
        self.session_id = result.get("sessionId", self.session_id)

    def _request(
        self, conn: Optional[_Connection], method: str, params: Optional[Dict[str, Any]], timeout: Optional[float]
    ) -> Any:
        request_id = self._next_id()
        request: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        data = dumps(request) + b"\n"
        check_frame(data, self.limits, method)
        for attempt in range(3):
            c = conn or self._ready()
            try:
                waiter = c.register(request_id)
                c.send(data)
                break
            except ConnectionLost as e:
                c.forget(request_id)
                # Never sent: safe to send on a new connection (only when not bound to this one).
                if e.sent or conn is not None or attempt == 2:
                    raise
        wait = (self.timeout if timeout is None else timeout) + long_poll_seconds(params, method)
        if not waiter.event.wait(wait):
            c.forget(request_id)
            raise CallTimeout(method, wait)
        if waiter.error is not None:
            raise ConnectionLost(f"{method}: {waiter.error}") from waiter.error
        assert waiter.reply is not None
        result = outcome(waiter.reply)
        if isinstance(result, WharfError):
            raise result
        return result

    def notify(self, method: str, params: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None:
        """Sends a notification: no id, and the server never replies (not even with an error)."""
        p = request_params(params, kwargs)
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if p is not None:
            message["params"] = p
        self._ready().send(dumps(message) + b"\n")

    def batch(
        self,
        calls: Optional[Iterable[CallSpec]] = None,
        *,
        timeout: Optional[float] = None,
        return_exceptions: bool = True,
    ) -> Any:
        """Sends several calls as one JSON-RPC batch (one line) and returns their results in order.

        `client.batch([("server.ping", None), ("jobs.get", {"id": "7"})])` -> `["pong", {...}]`;
        a call that failed has its `WharfError` in its place (or raised, with
        `return_exceptions=False`). Without `calls` it returns a `Batch` builder with the namespaced
        helpers, sent when its `with` block ends:

            with client.batch() as b:
                first = b.jobs.enqueue(queue="q", kind="k")
            first.result()
        """
        if calls is None:
            return Batch(self, timeout=timeout)
        results = self._batch(normalize_calls(calls), timeout)
        if not return_exceptions:
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return results

    def _batch(self, calls: Sequence[Tuple[str, Optional[Dict[str, Any]]]], timeout: Optional[float]) -> List[Any]:
        if not calls:
            return []
        ids = [self._next_id() for _ in calls]
        data = encode_batch(ids, calls)
        check_frame(data, self.limits, "batch")
        for attempt in range(3):
            conn = self._ready()
            try:
                waiters = [conn.register(i) for i in ids]
                with conn.lock:
                    conn.batches.append(ids)
                conn.send(data)
                break
            except ConnectionLost as e:
                for i in ids:
                    conn.forget(i)
                if e.sent or attempt == 2:
                    raise
        try:
            wait = (self.timeout if timeout is None else timeout) + max(long_poll_seconds(p, m) for m, p in calls)
            results: List[Any] = []
            for waiter, (method, _) in zip(waiters, calls):
                if not waiter.event.wait(wait):
                    for i in ids:
                        conn.forget(i)
                    raise CallTimeout(f"batch ({method})", wait)
                if waiter.error is not None:
                    results.append(ConnectionLost(f"{method}: {waiter.error}"))
                else:
                    assert waiter.reply is not None
                    results.append(outcome(waiter.reply))
            return results
        finally:
            with conn.lock:
                if ids in conn.batches:
                    conn.batches.remove(ids)

    def lock(
        self, name: str, ttl: float = 30.0, wait: Optional[float] = None, *, holder: Optional[str] = None, **kwargs: Any
    ) -> Any:
        """A `wharf.Lock` on this client: `with client.lock("nightly", ttl=60) as held: ...`."""
        from .lock import Lock

        return Lock(self, name, ttl=ttl, wait=wait, holder=holder, **kwargs)


class EnqueuedJob(dict):
    """The reply of `client.enqueue` (`{id, state, duplicate}`), which can wait for its job."""

    def __init__(self, client: "Client", reply: Mapping[str, Any]) -> None:
        super().__init__(reply)
        self._client = client

    def result(self, timeout: float = 30.0) -> Any:
        """Waits for the job to finish and returns its result (see `Client.result`)."""
        return self._client.result(self["id"], timeout=timeout)


class BatchItem:
    """One call in a `Batch`: its outcome once the batch was sent."""

    __slots__ = ("method", "params", "_outcome", "_done")

    def __init__(self, method: str, params: Optional[Dict[str, Any]]) -> None:
        self.method = method
        self.params = params
        self._outcome: Any = None
        self._done = False

    def _set(self, value: Any) -> None:
        self._outcome = value
        self._done = True

    @property
    def done(self) -> bool:
        """True once the batch was sent and this call's reply arrived."""
        return self._done

    def result(self) -> Any:
        """The call's result; raises its error, or `RuntimeError` before the batch was sent."""
        if not self._done:
            raise RuntimeError(f"{self.method}: the batch has not been sent")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def exception(self) -> Optional[BaseException]:
        """The call's error, or None when it succeeded."""
        if not self._done:
            raise RuntimeError(f"{self.method}: the batch has not been sent")
        return self._outcome if isinstance(self._outcome, BaseException) else None

    def __repr__(self) -> str:
        state = "pending" if not self._done else "error" if isinstance(self._outcome, BaseException) else "ok"
        return f"<BatchItem {self.method} {state}>"


class Batch(Namespaces):
    """Collects calls (`b.jobs.enqueue(...)`, `b.call(...)`) and sends them as one JSON-RPC batch."""

    def __init__(self, client: Any, timeout: Optional[float] = None) -> None:
        self._client = client
        self._timeout = timeout
        self.items: List[BatchItem] = []
        self._install_namespaces(self._add)

    def _add(self, method: str, params: Optional[Dict[str, Any]]) -> BatchItem:
        item = BatchItem(method, params)
        self.items.append(item)
        return item

    def call(self, method: str, params: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> BatchItem:
        """Adds a call (params as for `Client.call`)."""
        return self._add(method, request_params(params, kwargs))

    def send(self) -> List[Any]:
        """Sends the calls and returns their outcomes (results or errors) in order."""
        results = self._client._batch([(i.method, i.params) for i in self.items], self._timeout)
        for item, r in zip(self.items, results):
            item._set(r)
        return results

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.send()


__all__ = ["Batch", "BatchItem", "CallSpec", "Client", "NotificationHandler"]
