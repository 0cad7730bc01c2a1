"""A lock held for the duration of a `with` block, renewed in the background."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any, Optional

from .errors import LockHeld, WharfError


class Lock:
    """Acquires `name` on enter, renews it every third of `ttl` seconds, releases it on exit.

    `fencing_token` grows on every grant of the name: pass it to the resource you protect so it can
    refuse a stale holder. `lost` turns true if a renewal was refused (the lease ran out).
    """

    def __init__(self, client: Any, name: str, ttl: float = 30.0, wait: Optional[float] = None,
                 holder: Optional[str] = None) -> None:
        self.client = client
        self.name = name
        self.ttl_ms = int(ttl * 1000)
        self.wait_ms = int(wait * 1000) if wait else 0
        self.holder = holder or f"{socket.gethostname()}/{os.getpid()}/{threading.get_ident()}"
        self.token: Optional[str] = None
        self.fencing_token: Optional[int] = None
        self.expires_at: Optional[str] = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None

    def acquire(self) -> "Lock":
        r = self.client.call("locks.acquire", {
            "name": self.name, "holder": self.holder, "ttlMs": self.ttl_ms, "waitMs": self.wait_ms,
            "requestId": uuid.uuid4().hex,
        })
        if not r.get("granted"):
            raise LockHeld(self.name, r.get("heldBy"), r.get("expiresAt"))
        self.token, self.fencing_token, self.expires_at = r["token"], r["fencingToken"], r["expiresAt"]
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name=f"wharf-lock-{self.name}")
        self._renewer.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000.0):
            try:
                self.expires_at = self.client.call(
                    "locks.renew", {"name": self.name, "token": self.token, "ttlMs": self.ttl_ms})["expiresAt"]
            except WharfError:
                self.lost = True
                return
            except Exception:  # noqa: BLE001 - a transport hiccup; the next round retries
                continue

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.token is not None and not self.lost:
            try:
                self.client.call("locks.release", {"name": self.name, "token": self.token})
            except WharfError:
                pass
        self.token = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock(client: Any, name: str, ttl: float = 30.0, wait: Optional[float] = None, holder: Optional[str] = None) -> Lock:
    """`with wharf.lock(client, "nightly-report", ttl=60) as l: ... l.fencing_token ...`"""
    return Lock(client, name, ttl=ttl, wait=wait, holder=holder)
