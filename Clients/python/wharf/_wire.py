"""Conversions between Python values and the wire: names, times, durations and JSON lines."""

from __future__ import annotations

import datetime
import json
import re
from json.encoder import encode_basestring  # a JSON string literal (C)
from typing import Any, Dict, Iterable, Mapping, Optional

UNSET: Any = object()
"""Default of optional params: "not given", as opposed to an explicit None (JSON null)."""

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    """`enqueueBatch` -> `enqueue_batch`."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def camel(name: str) -> str:
    """`delay_ms` -> `delayMs`; already camelCase names are kept; a trailing `_` (`from_`) is dropped."""
    name = name.rstrip("_") if name.endswith("_") and name.strip("_") else name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def rfc3339(value: datetime.datetime) -> str:
    """A datetime as an RFC 3339 UTC string with milliseconds; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    text = value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(value: Optional[str]) -> Optional[datetime.datetime]:
    """An RFC 3339 string from the server as an aware datetime (None stays None)."""
    if value is None:
        return None
    text = value.replace("Z", "+00:00").replace("z", "+00:00")
    return datetime.datetime.fromisoformat(text)


def milliseconds(value: Any) -> Any:
    """A duration in milliseconds: `timedelta` values are converted, numbers are kept."""
    if isinstance(value, datetime.timedelta):
        return int(round(value.total_seconds() * 1000))
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return rfc3339(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_default)


def dumps_text(value: Any) -> str:
    """Compact JSON text; datetimes anywhere become RFC 3339 strings."""
    return _encoder.encode(value)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON for one line; datetimes anywhere become RFC 3339 strings."""
    return _encoder.encode(value).encode()


class Encoded(str):
    """JSON text that goes on the wire as it is (a request's params encoded beforehand)."""

    __slots__ = ()


def wire_value(key: str, value: Any) -> Any:
    """The wire form of one param value: durations (keys ending `Ms`) from timedeltas, times as strings."""
    if key.endswith("Ms"):
        return milliseconds(value)
    if isinstance(value, datetime.datetime):
        return rfc3339(value)
    return value


def camel_keys(obj: Mapping[str, Any], nested: Iterable[str] = ()) -> Dict[str, Any]:
    """Renames a mapping's keys to camelCase (values of `nested` keys recursively, never user data)."""
    nested = frozenset(nested)
    out: Dict[str, Any] = {}
    for k, v in obj.items():
        key = camel(k)
        if key in nested and isinstance(v, Mapping):
            v = camel_keys(v, nested)
        out[key] = wire_value(key, v)
    return out


def job_spec(spec: Mapping[str, Any]) -> Dict[str, Any]:
    """A job object (for `jobs.enqueueBatch`, cron targets) with snake_case keys accepted."""
    out = camel_keys(spec, nested=("retry",))
    if isinstance(out.get("queues"), str):
        out["queues"] = [out["queues"]]
    return out


def params(*, keep_none: Iterable[str] = (), **kwargs: Any) -> Dict[str, Any]:
    """Keyword arguments to wire params: camelCase names, `UNSET` and None dropped (except `keep_none`)."""
    keep = frozenset(keep_none)
    out: Dict[str, Any] = {}
    for k, v in kwargs.items():
        if v is UNSET or (v is None and k not in keep):
            continue
        key = camel(k)
        if key == "retry" and isinstance(v, Mapping):
            v = camel_keys(v)
        out[key] = wire_value(key, v)
    return out


def merge(base: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """Adds `**extra` keyword params (any name the server accepts, snake_case or camelCase)."""
    if extra:
        base.update(params(**extra))
    return base


__all__ = [
    "UNSET",
    "Encoded",
    "camel",
    "dumps",
    "dumps_text",
    "encode_basestring",
    "job_spec",
    "merge",
    "milliseconds",
    "params",
    "parse_time",
    "rfc3339",
    "snake",
]
