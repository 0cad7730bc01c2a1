"""Small shared helpers."""

from __future__ import annotations

import threading
from typing import Optional

_flags = threading.Lock()


class Flag:
    """A `threading.Event` that is also a bool: `if job.cancelled:` and `job.cancelled.wait(5)` both work.

    `is_set`, `set`, `clear` and `wait` as on an Event. The Event itself is made only when someone
    waits: a worker makes two flags per job, and most are never waited on.
    """

    __slots__ = ("_value", "_event")

    def __init__(self) -> None:
        self._value = False
        self._event: Optional[threading.Event] = None

    def is_set(self) -> bool:
        return self._value

    isSet = is_set

    def set(self) -> None:
        with _flags:
            self._value = True
            if self._event is not None:
                self._event.set()

    def clear(self) -> None:
        with _flags:
            self._value = False
            if self._event is not None:
                self._event.clear()

    def wait(self, timeout: Optional[float] = None) -> bool:
        with _flags:
            if self._value:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def __bool__(self) -> bool:
        return self._value

    def __repr__(self) -> str:
        return f"<Flag {'set' if self._value else 'clear'}>"
