"""Small shared helpers."""

from __future__ import annotations

import threading


class Flag(threading.Event):
    """A `threading.Event` that is also a bool: `if job.cancelled:` and `job.cancelled.wait(5)` both work."""

    def __bool__(self) -> bool:
        return self.is_set()

    def __repr__(self) -> str:
        return f"<Flag {'set' if self.is_set() else 'clear'}>"
