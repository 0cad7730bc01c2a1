"""A thread-safe synchronous client: requests are pipelined and replies matched by id."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from typing import Any, Callable, Dict, List, Optional

from .errors import ConnectionLost, LockHeld, from_error
from .methods import METHODS, Namespace


class _Waiter:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[dict] = None


class Client:
    """A connection to a Wharf server.

    Several threads may call at once: each request gets its own id, a reader thread hands each reply
    to the caller waiting for it. A dropped connection fails the calls in flight with `ConnectionLost`;
    the next call reconnects and presents the token again. Method helpers live in namespaces:
    `client.jobs.enqueue(queue="mail", kind="welcome", payload={...})`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7411,
        token: Optional[str] = None,
        timeout: float = 30.0,
        client_name: str = "wharf-python",
        on_notification: Optional[Callable[[str, Any], None]] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout
        self.client_name = client_name
        self.on_notification = on_notification
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._ids = itertools.count(1)
        self._waiting: Dict[int, _Waiter] = {}
        self._closed = False
        self.role: Optional[str] = None
        for family in METHODS:
            setattr(self, family, Namespace(self, family))

    # Connection management

    def _connect_locked(self) -> socket.socket:
        if self._closed:
            raise ConnectionLost("client closed")
        if self._sock is not None:
            return self._sock
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._sock = sock
        threading.Thread(target=self._read_loop, args=(sock,), daemon=True, name="wharf-reader").start()
        return sock

    def _hello(self) -> None:
        params: Dict[str, Any] = {"client": self.client_name}
        if self.token:
            params["token"] = self.token
        self.role = self._call_raw("session.hello", params)["role"]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_locked()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _drop_locked(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        waiting, self._waiting = self._waiting, {}
        for w in waiting.values():
            w.event.set()

    def _read_loop(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self._dispatch(json.loads(line))
        except (OSError, ValueError):
            pass
        with self._lock:
            if self._sock is sock:
                self._drop_locked()

    def _dispatch(self, message: Any) -> None:
        for m in message if isinstance(message, list) else [message]:
            if "id" not in m:
                if self.on_notification and "method" in m:
                    self.on_notification(m["method"], m.get("params"))
                continue
            with self._lock:
                w = self._waiting.pop(m.get("id"), None)
            if w is not None:
                w.reply = m
                w.event.set()

    # Calls

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Calls `method` with named `params`; returns its result or raises a `WharfError`."""
        with self._lock:
            fresh = self._sock is None
            self._connect_locked()
        if fresh:
            self._hello()
        return self._call_raw(method, params, timeout)

    def _call_raw(self, method: str, params: Optional[Dict[str, Any]], timeout: Optional[float] = None) -> Any:
        waiter = _Waiter()
        request: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params:
            request["params"] = params
        with self._lock:
            sock = self._connect_locked()
            request_id = next(self._ids)
            request["id"] = request_id
            self._waiting[request_id] = waiter
            try:
                sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            except OSError as e:
                self._drop_locked()
                raise ConnectionLost(str(e)) from e
        wait = timeout if timeout is not None else self.timeout
        # A long poll may legitimately take waitMs; give it that much extra time.
        if isinstance(params, dict) and isinstance(params.get("waitMs"), int):
            wait += params["waitMs"] / 1000.0
        if not waiter.event.wait(wait):
            with self._lock:
                self._waiting.pop(request_id, None)
            raise TimeoutError(f"{method}: no reply within {wait:.1f} s")
        if waiter.reply is None:
            raise ConnectionLost(f"{method}: connection closed before the reply")
        if "error" in waiter.reply:
            raise from_error(waiter.reply["error"])
        return waiter.reply.get("result")

    def batch(self, calls: List[tuple]) -> List[Any]:
        """Sends `[(method, params), ...]` pipelined and returns results (or exceptions) in order."""
        results: List[Any] = [None] * len(calls)
        threads = []

        def run(i: int, method: str, params: Optional[dict]) -> None:
            try:
                results[i] = self.call(method, params)
            except Exception as e:  # noqa: BLE001 - returned to the caller in place
                results[i] = e

        self.server.ping()
        for i, (method, params) in enumerate(calls):
            t = threading.Thread(target=run, args=(i, method, params))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        return results

    def lock(self, name: str, ttl: float = 30.0, wait: Optional[float] = None, holder: Optional[str] = None):
        """A `Lock` context manager on this client (see `wharf.lock`)."""
        from .lock import Lock

        return Lock(self, name, ttl=ttl, wait=wait, holder=holder)


__all__ = ["Client", "LockHeld"]
