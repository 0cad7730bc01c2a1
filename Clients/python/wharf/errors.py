"""Typed errors for the server's JSON-RPC error codes (see Protocol/README.md)."""

from __future__ import annotations

from typing import Any, Optional


class WharfError(Exception):
    """An error reply from the server: `code`, `message`, `data`, with `reason` and `retryable`."""

    def __init__(self, code: int, message: str, data: Optional[dict] = None) -> None:
        super().__init__(f"{code} {message}" + (f" {data}" if data else ""))
        self.code = code
        self.message = message
        self.data = data or {}

    @property
    def reason(self) -> Optional[str]:
        return self.data.get("reason")

    @property
    def retryable(self) -> bool:
        return bool(self.data.get("retryable", False))


class ConnectionLost(Exception):
    """The connection closed before the reply arrived; the call may or may not have happened."""


class ParseError(WharfError):
    pass


class InvalidRequest(WharfError):
    pass


class MethodNotFound(WharfError):
    pass


class InvalidParams(WharfError):
    @property
    def field(self) -> Optional[str]:
        return self.data.get("field")


class InternalError(WharfError):
    pass


class Unauthorized(WharfError):
    pass


class Forbidden(WharfError):
    pass


class RetryableError(WharfError):
    """The server could not do it now (database unavailable or busy, shutting down); retry later."""


Unavailable = RetryableError


class NotFound(WharfError):
    pass


class LimitExceeded(WharfError):
    pass


class Conflict(WharfError):
    pass


class LeaseLost(Conflict):
    """The lease token is no longer the one holding the job or lock."""


class JobCancelled(Conflict):
    """The job was cancelled while this worker held it."""


class LockHeld(Conflict):
    """The lock was not granted: someone else holds it."""

    def __init__(self, name: str, held_by: Optional[str], expires_at: Optional[str]) -> None:
        super().__init__(-32009, f"lock {name} is held by {held_by}", {"reason": "held", "heldBy": held_by})
        self.held_by = held_by
        self.expires_at = expires_at


_BY_CODE = {
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


def from_error(error: Any) -> WharfError:
    """Builds the most specific exception for a JSON-RPC error object."""
    code = int(error.get("code", -32603))
    message = str(error.get("message", ""))
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    cls = _BY_CODE.get(code, WharfError)
    if cls is Conflict:
        if data.get("reason") == "lease_lost":
            cls = LeaseLost
        elif data.get("reason") == "cancelled":
            cls = JobCancelled
    return cls(code, message, data)
