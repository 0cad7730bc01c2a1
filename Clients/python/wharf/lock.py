"""Distributed locks held for a `with` block and renewed in the background.

    with wharf.lock(client, "nightly-report", ttl=60) as held:
        write_report(fencing_token=held.fencing_token)

`fencing_token` grows on every grant of a name, forever: hand it to the resource you protect so it
can refuse a holder older than the newest it has seen (a paused process may come back after its
lease ran out; the lock alone cannot stop it, the fencing token can).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Dict, Optional, Union

from ._util import Flag
from .errors import CallTimeout, Conflict, ConnectionLost, LeaseLost, LockHeld, RetryableError, WharfError

log = logging.getLogger("wharf.lock")

Seconds = Union[int, float, datetime.timedelta]
MAX_WAIT_MS = 300_000
"""The longest `waitMs` one `locks.acquire` may ask for; longer waits are several acquires."""

_TRANSIENT = (ConnectionLost, CallTimeout, RetryableError, OSError)


def _seconds(value: Optional[Seconds]) -> Optional[float]:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


def default_holder() -> str:
    """`host/pid/thread`: how a holder names itself unless told otherwise."""
    return f"{socket.gethostname()}/{os.getpid()}/{threading.current_thread().name}"


class _LockBase:
    def __init__(
        self,
        client: Any,
        name: str,
        ttl: Seconds = 30.0,
        wait: Optional[Seconds] = None,
        *,
        holder: Optional[str] = None,
        bind_to_session: bool = False,
        lock_delay: Optional[Seconds] = None,
        on_lost: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        ttl_s = _seconds(ttl) or 0.0
        if ttl_s < 0.1:
            raise ValueError("ttl must be at least 0.1 s")
        self.client = client
        self.name = name
        self.ttl = ttl_s
        self.wait = _seconds(wait)
        self.holder = holder or default_holder()
        self.bind_to_session = bind_to_session
        self.lock_delay = _seconds(lock_delay)
        self.on_lost = on_lost
        self.token: Optional[str] = None
        """The grant's token (needed to renew and release); None while not held."""
        self.fencing_token: Optional[int] = None
        """Grows by one on every grant of this name: pass it to the resource you protect."""
        self.expires_at: Optional[str] = None
        """When the lease runs out unless renewed (RFC 3339, the server's clock)."""
        self.lost = Flag()
        """Set (and true) when a renewal was refused or the lease ran out: the lock is no longer held."""
        self._valid_until = 0.0

    @property
    def held(self) -> bool:
        """True between a grant and its release, unless the lock was lost."""
        return self.token is not None and not self.lost

    @property
    def renew_interval(self) -> float:
        """Seconds between renewals: a third of the TTL."""
        return self.ttl / 3.0

    def check(self) -> None:
        """Raises `LeaseLost` if the lock was lost: call it between steps of a long critical section."""
        if self.lost:
            raise LeaseLost(-32009, f"lock {self.name} was lost", {"reason": "lease_lost", "name": self.name})

    def _acquire_params(self, wait_ms: int, request_id: str) -> Dict[str, Any]:
        p: Dict[str, Any] = {
            "name": self.name,
            "holder": self.holder,
            "ttlMs": int(self.ttl * 1000),
            "waitMs": wait_ms,
            "requestId": request_id,
        }
        if self.bind_to_session:
            p["bindToSession"] = True
        if self.lock_delay:
            p["lockDelayMs"] = int(self.lock_delay * 1000)
        return p

    def _granted(self, r: Dict[str, Any]) -> None:
        self.token = r["token"]
        self.fencing_token = r.get("fencingToken")
        self.expires_at = r.get("expiresAt")
        self._valid_until = time.monotonic() + self.ttl
        self.lost.clear()

    def _mark_lost(self, why: str) -> None:
        if self.lost:
            return
        log.warning("lock %s lost: %s", self.name, why)
        self.lost.set()
        if self.on_lost is not None:
            try:
                self.on_lost(self)
            except Exception:  # noqa: BLE001 - a callback's bug must not hide the loss
                log.exception("on_lost callback failed for lock %s", self.name)

    def __repr__(self) -> str:
        state = "lost" if self.lost else "held" if self.token else "not held"
        return f"<{type(self).__name__} {self.name} {state} fencing={self.fencing_token}>"


class Lock(_LockBase):
    """A lock on `name` for `ttl` seconds, renewed every `ttl / 3` by a background thread.

    `wait` (seconds) waits for the lock when it is held (first come, first served); without it, a
    held lock raises `LockHeld` at once. If a renewal is refused, `lost` is set and `on_lost(lock)`
    is called; the `with` block is not interrupted (check `held.lost` or call `held.check()`).
    `bind_to_session=True` releases the lock when the connection closes; `lock_delay` keeps it
    unavailable that long after it expired without release.
    """

    def __init__(
        self, client: Any, name: str, ttl: Seconds = 30.0, wait: Optional[Seconds] = None, **kwargs: Any
    ) -> None:
        super().__init__(client, name, ttl, wait, **kwargs)
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None

    def acquire(self) -> "Lock":
        """Takes the lock (waiting up to `wait`); raises `LockHeld` when it was not granted."""
        request_id = uuid.uuid4().hex
        deadline = time.monotonic() + (self.wait or 0.0)
        failures = 0
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                r = self.client.call("locks.acquire", self._acquire_params(min(remaining_ms, MAX_WAIT_MS), request_id))
            except _TRANSIENT:
                # The same requestId returns the same grant if the lost reply was one.
                failures += 1
                if failures >= 3:
                    raise
                time.sleep(0.1 * failures)
                continue
            if r.get("granted"):
                break
            if remaining_ms <= MAX_WAIT_MS:
                raise LockHeld.from_result(self.name, r)
        self._granted(r)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"wharf-lock-{self.name}", daemon=True)
        self._renewer.start()
        return self

    def _renew_loop(self) -> None:
        delay = self.renew_interval
        while not self._stop.wait(delay):
            delay = self.renew_interval
            try:
                r = self.client.call(
                    "locks.renew", {"name": self.name, "token": self.token, "ttlMs": int(self.ttl * 1000)}
                )
            except Conflict as e:
                self._mark_lost(e.message)
                return
            except (WharfError, *_TRANSIENT) as e:
                if time.monotonic() >= self._valid_until:
                    self._mark_lost(f"could not renew before the lease ran out ({e})")
                    return
                delay = min(1.0, self.renew_interval / 2)
                continue
            self.expires_at = r.get("expiresAt", self.expires_at)
            self._valid_until = time.monotonic() + self.ttl

    def release(self) -> None:
        """Stops renewing and releases the lock (unless it was lost); errors are logged, not raised."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._renewer = None
        token, self.token = self.token, None
        if token is None or self.lost:
            return
        try:
            self.client.call("locks.release", {"name": self.name, "token": token})
        except (WharfError, *_TRANSIENT) as e:
            # Not released: it expires at its TTL.
            log.warning("lock %s: release failed: %s", self.name, e)

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class AsyncLock(_LockBase):
    """The asyncio variant of `Lock` (`async with`), renewed by a task."""

    def __init__(
        self, client: Any, name: str, ttl: Seconds = 30.0, wait: Optional[Seconds] = None, **kwargs: Any
    ) -> None:
        super().__init__(client, name, ttl, wait, **kwargs)
        self._renewer: Optional[asyncio.Task[None]] = None
        # Set by `release`. Cancelling the renewer is not enough: before Python 3.12, a call whose reply
        # arrives as it is cancelled returns the reply instead (asyncio.wait_for), and the loop went on.
        self._stopping = False

    async def acquire(self) -> "AsyncLock":
        """Takes the lock (waiting up to `wait`); raises `LockHeld` when it was not granted."""
        request_id = uuid.uuid4().hex
        deadline = time.monotonic() + (self.wait or 0.0)
        failures = 0
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                r = await self.client.call(
                    "locks.acquire", self._acquire_params(min(remaining_ms, MAX_WAIT_MS), request_id)
                )
            except _TRANSIENT:
                failures += 1
                if failures >= 3:
                    raise
                await asyncio.sleep(0.1 * failures)
                continue
            if r.get("granted"):
                break
            if remaining_ms <= MAX_WAIT_MS:
                raise LockHeld.from_result(self.name, r)
        self._granted(r)
        self._stopping = False
        self._renewer = asyncio.ensure_future(self._renew_loop())
        return self

    async def _renew_loop(self) -> None:
        delay = self.renew_interval
        while not self._stopping:
            await asyncio.sleep(delay)
            delay = self.renew_interval
            try:
                r = await self.client.call(
                    "locks.renew", {"name": self.name, "token": self.token, "ttlMs": int(self.ttl * 1000)}
                )
                if self._stopping:
                    return
            except Conflict as e:
                self._mark_lost(e.message)
                return
            except (WharfError, *_TRANSIENT) as e:
                if time.monotonic() >= self._valid_until:
                    self._mark_lost(f"could not renew before the lease ran out ({e})")
                    return
                delay = min(1.0, self.renew_interval / 2)
                continue
            self.expires_at = r.get("expiresAt", self.expires_at)
            self._valid_until = time.monotonic() + self.ttl

    async def release(self) -> None:
        """Stops renewing and releases the lock (unless it was lost); errors are logged, not raised."""
        if self._renewer is not None:
            self._stopping = True
            self._renewer.cancel()
            try:
                await self._renewer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping it either way
                pass
            self._renewer = None
        token, self.token = self.token, None
        if token is None or self.lost:
            return
        try:
            await self.client.call("locks.release", {"name": self.name, "token": token})
        except (WharfError, *_TRANSIENT) as e:
            log.warning("lock %s: release failed: %s", self.name, e)

    async def __aenter__(self) -> "AsyncLock":
        return await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()


def lock(client: Any, name: str, ttl: Seconds = 30.0, wait: Optional[Seconds] = None, **kwargs: Any) -> Any:
    """A `Lock` (or an `AsyncLock` for an `AsyncClient`) on `name`; use it with `with` / `async with`.

    Raises `LockHeld` on entry when the lock is held by someone else (after waiting `wait` seconds,
    if given). Keyword options: `holder`, `bind_to_session`, `lock_delay`, `on_lost`.
    """
    from .aio import AsyncClient

    if isinstance(client, AsyncClient):
        return AsyncLock(client, name, ttl, wait, **kwargs)
    return Lock(client, name, ttl, wait, **kwargs)


__all__ = ["AsyncLock", "Lock", "default_holder", "lock"]
