"""Python client for Wharf: `Client`, `AsyncClient`, `Worker`, `lock`, and webhook verification."""

from . import webhooks
from .aio import AsyncClient
from .client import Client
from .errors import (
    Conflict,
    ConnectionLost,
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    JobCancelled,
    LeaseLost,
    LimitExceeded,
    LockHeld,
    MethodNotFound,
    NotFound,
    ParseError,
    RetryableError,
    Unauthorized,
    Unavailable,
    WharfError,
)
from .lock import Lock, lock
from .worker import Discard, Job, Retry, Worker

__all__ = [
    "AsyncClient", "Client", "Conflict", "ConnectionLost", "Discard", "Forbidden", "InternalError", "InvalidParams",
    "InvalidRequest", "Job", "JobCancelled", "LeaseLost", "LimitExceeded", "Lock", "LockHeld", "MethodNotFound",
    "NotFound", "ParseError", "Retry", "RetryableError", "Unauthorized", "Unavailable", "WharfError", "Worker", "lock",
    "webhooks",
]
