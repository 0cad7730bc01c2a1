"""Python client for Wharf: `Client`, `AsyncClient`, `Worker`, `lock`, and webhook verification.

Standard library only. See README.md for examples.
"""

from . import webhooks
from .aio import AsyncBatch, AsyncClient
from .client import Batch, BatchItem, Client
from .errors import (
    CallTimeout,
    Conflict,
    ConnectionLost,
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    JobCancelled,
    JobNotCompleted,
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
from .lock import AsyncLock, Lock, lock
from .retry import RetryPolicy
from .webhooks import WebhookVerificationError
from .worker import Discard, Job, Next, Retry, Worker

__version__ = "0.2.0"

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncLock",
    "Batch",
    "BatchItem",
    "CallTimeout",
    "Client",
    "Conflict",
    "ConnectionLost",
    "Discard",
    "Forbidden",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobNotCompleted",
    "LeaseLost",
    "LimitExceeded",
    "Lock",
    "LockHeld",
    "MethodNotFound",
    "Next",
    "NotFound",
    "ParseError",
    "Retry",
    "RetryPolicy",
    "RetryableError",
    "Unauthorized",
    "Unavailable",
    "WebhookVerificationError",
    "WharfError",
    "Worker",
    "lock",
    "webhooks",
]
