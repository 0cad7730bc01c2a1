"""The threads that run plain (synchronous) handlers for the worker's event loop."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, List, Optional, Tuple

_Item = Optional[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[Any], Any], Any]]


class HandlerThreads:
    """`size` daemon threads, started at the first plain handler; each result goes back to the loop.

    Daemon threads, not a `ThreadPoolExecutor`: a handler still running after the worker gave up on it
    (past `grace`) must not keep the process from exiting.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._queue: "queue.SimpleQueue[_Item]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []

    def run(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Any], Any], arg: Any) -> "asyncio.Future[Any]":
        """Runs `fn(arg)` on a thread; the returned future (of `loop`) gets its result or exception."""
        if not self._threads:
            for i in range(self.size):
                t = threading.Thread(target=self._serve, name=f"{self.name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        fut: "asyncio.Future[Any]" = loop.create_future()
        self._queue.put((loop, fut, fn, arg))
        return fut

    def close(self) -> None:
        """Idle threads exit; busy ones exit when their handler returns."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, fut, fn, arg = item
            try:
                value, error = fn(arg), None
            except BaseException as e:  # noqa: BLE001 - handed to the loop, which reports it
                value, error = None, e
            try:
                loop.call_soon_threadsafe(_settle, fut, value, error)
            except RuntimeError:
                pass  # the loop is closed: the worker stopped and left this job to the server
            del item, fut, arg, value, error


def _settle(fut: "asyncio.Future[Any]", value: Any, error: Optional[BaseException]) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
