"""The methods the server serves, grouped by family, for the namespaced helpers."""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict

METHODS = {
    "server": ["ping", "info", "health"],
    "session": ["hello"],
    "jobs": [
        "enqueue", "enqueueBatch", "lease", "heartbeat", "complete", "fail", "cancel", "retry", "get", "list",
    ],
    "queues": ["list", "stats", "configure", "pause", "resume"],
    "locks": ["acquire", "renew", "release", "get", "list"],
    "cron": ["upsert", "get", "list", "remove", "pause", "resume", "trigger", "preview"],
    "webhooks": [
        "register", "update", "get", "list", "remove", "test", "health", "deliveries", "redeliver", "rotateSecret",
        "enable", "send", "recover",
    ],
    "events": ["subscribe", "unsubscribe"],
}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def wire_value(value: Any) -> Any:
    """Datetimes become RFC 3339 UTC strings; containers are converted recursively."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: wire_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_value(v) for v in value]
    return value


def wire_params(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """snake_case keyword arguments to the wire's lowerCamelCase params (None values are dropped)."""
    return {camel(k): wire_value(v) for k, v in kwargs.items() if v is not None}


class Namespace:
    """`client.jobs.enqueue(queue=..., kind=...)` → `client.call("jobs.enqueue", {...})`."""

    def __init__(self, client: Any, family: str) -> None:
        self._client = client
        self._family = family
        for method in METHODS[family]:
            setattr(self, snake(method), self._make(method))

    def _make(self, method: str):
        full = f"{self._family}.{method}"

        def call(**kwargs: Any) -> Any:
            return self._client.call(full, wire_params(kwargs))

        call.__name__ = snake(method)
        call.__doc__ = f"Calls `{full}`; keyword arguments are its params in snake_case."
        return call
