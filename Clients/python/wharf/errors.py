"""Typed errors for the server's JSON-RPC error codes (Protocol/README.md lists them).

Every error reply becomes a `WharfError` subclass chosen by its `code` and, for conflicts, by
`data.reason`. Transport problems are not server replies and have their own classes:
`ConnectionLost` (a `ConnectionError`) and `CallTimeout` (a `TimeoutError`).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type


class WharfError(Exception):
    """An error reply from the server.

    `code`, `message` and `data` are the JSON-RPC error object's members; `reason` is `data.reason`
    (a stable snake_case word to branch on) and `retryable` is `data.retryable` (False when absent).
    """

    default_code = -32603

    def __init__(self, code: Optional[int] = None, message: str = "", data: Optional[Mapping[str, Any]] = None) -> None:
        self.code: int = self.default_code if code is None else int(code)
        self.message: str = message
        self.data: Dict[str, Any] = dict(data or {})
        super().__init__(self.code, self.message, self.data)

    def __str__(self) -> str:
        reason = f", {self.reason}" if self.reason else ""
        field = self.data.get("field")
        detail = f", field {field}" if field and field not in self.message else ""
        return f"{self.message} ({self.code}{reason}{detail})"

    @property
    def reason(self) -> Optional[str]:
        """`data.reason`, e.g. `"lease_lost"`, `"not_found"`, `"store_unavailable"`."""
        value = self.data.get("reason")
        return value if isinstance(value, str) else None

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later unchanged (`data.retryable`)."""
        return self.data.get("retryable") is True


class ParseError(WharfError):
    """-32700: the server could not parse the line as JSON."""

    default_code = -32700


class InvalidRequest(WharfError):
    """-32600: the JSON was not a valid request object."""

    default_code = -32600


class MethodNotFound(WharfError):
    """-32601: the server does not serve this method."""

    default_code = -32601


class InvalidParams(WharfError):
    """-32602: a param is missing, unknown or of the wrong type; `field` names it (dotted path)."""

    default_code = -32602

    @property
    def field(self) -> Optional[str]:
        """The offending param as a dotted path, e.g. `"kind"` or `"jobs[1].kind"`."""
        value = self.data.get("field")
        return value if isinstance(value, str) else None

    @property
    def detail(self) -> Optional[str]:
        """What was wrong with `field`."""
        value = self.data.get("detail")
        return value if isinstance(value, str) else None


class InternalError(WharfError):
    """-32603: an unexpected failure on the server (nothing about its cause is disclosed)."""

    default_code = -32603


class Unauthorized(WharfError):
    """-32001: no token, or an unknown one."""

    default_code = -32001


class Forbidden(WharfError):
    """-32002: the session's role may not call this method (`data.role`, `data.method`)."""

    default_code = -32002


class RetryableError(WharfError):
    """-32003: the server cannot do it now (database unreachable or busy, shutting down); retry later."""

    default_code = -32003


Unavailable = RetryableError
"""The name of -32003 in Protocol/README.md; the same class as `RetryableError`."""


class NotFound(WharfError):
    """-32004: no such job, lock, schedule or endpoint (`data.id`)."""

    default_code = -32004


class LimitExceeded(WharfError):
    """-32005: a limit was hit (`data.limit` names it, `data.max` is its value)."""

    default_code = -32005


class Conflict(WharfError):
    """-32009: the call conflicts with the current state; `reason` says how."""

    default_code = -32009


class LeaseLost(Conflict):
    """Conflict `lease_lost`: the token no longer holds the job or lock (expired or taken over)."""


class JobCancelled(Conflict):
    """Conflict `cancelled`: the job was cancelled while this worker held it."""


class LockHeld(Conflict):
    """The lock was not granted because someone else holds it (`held_by`, `expires_at`)."""

    def __init__(self, code: Optional[int] = None, message: str = "", data: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(code, message or "lock is held", data)

    @classmethod
    def from_result(cls, name: str, result: Mapping[str, Any]) -> "LockHeld":
        """Builds the error from a `locks.acquire` result with `granted: false`."""
        held_by = result.get("heldBy")
        data = {
            "reason": "held",
            "retryable": True,
            "name": name,
            "heldBy": held_by,
            "expiresAt": result.get("expiresAt"),
        }
        return cls(-32009, f"lock {name} is held by {held_by}", data)

    @property
    def name(self) -> Optional[str]:
        """The lock's name."""
        return self.data.get("name")

    @property
    def held_by(self) -> Optional[str]:
        """The current holder, as it named itself in `locks.acquire`."""
        return self.data.get("heldBy")

    @property
    def expires_at(self) -> Optional[str]:
        """When the current holder's lease runs out unless renewed (RFC 3339)."""
        return self.data.get("expiresAt")


class ConnectionLost(ConnectionError):
    """The connection closed before the reply arrived.

    The call may or may not have taken effect on the server; `sent` is False only when the request
    certainly never left this process. The next call reconnects (and presents the token again).
    """

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class JobNotCompleted(Exception):
    """`Client.result`: the job ended dead or cancelled, or was not final when the wait ended.

    `job` is the job as `jobs.wait` returned it (`lastError` of a dead one), `state` its state, and
    `done` False when the wait timed out before the job was final.
    """

    def __init__(self, job: Mapping[str, Any], done: bool) -> None:
        self.job: Dict[str, Any] = dict(job)
        self.state: Optional[str] = self.job.get("state")
        self.done = done
        what = f"ended {self.state}" if done else f"is still {self.state}"
        super().__init__(f"job {self.job.get('id')} {what}")


class CallTimeout(TimeoutError):
    """No reply within the timeout. The call may still take effect; a late reply is dropped."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(f"{method}: no reply within {seconds:.1f} s")
        self.method = method
        self.seconds = seconds


_BY_CODE: Dict[int, Type[WharfError]] = {
    -32700: ParseError,
    -32600: InvalidRequest,
    -32601: MethodNotFound,
    -32602: InvalidParams,
    -32603: InternalError,
    -32001: Unauthorized,
    -32002: Forbidden,
    -32003: RetryableError,
    -32004: NotFound,
    -32005: LimitExceeded,
    -32009: Conflict,
}

_CONFLICTS: Dict[str, Type[WharfError]] = {
    "lease_lost": LeaseLost,
    "cancelled": JobCancelled,
    "held": LockHeld,
}


def error_class(code: int, reason: Optional[str] = None) -> Type[WharfError]:
    """The exception class for an error `code` (and, for conflicts, its `data.reason`)."""
    cls = _BY_CODE.get(code, WharfError)
    if cls is Conflict and reason in _CONFLICTS:
        return _CONFLICTS[reason]  # type: ignore[index]
    return cls


def from_error(error: Any) -> WharfError:
    """Builds the most specific exception for a JSON-RPC error object."""
    if not isinstance(error, Mapping):
        return InternalError(-32603, f"malformed error object: {error!r}")
    try:
        code = int(error.get("code", -32603))
    except (TypeError, ValueError):
        code = -32603
    message = str(error.get("message", ""))
    data = error.get("data")
    data = dict(data) if isinstance(data, Mapping) else ({} if data is None else {"value": data})
    return error_class(code, data.get("reason"))(code, message, data)
