"""When a client repeats a failed call by itself: `RetryPolicy`.

A call is repeated only when repeating it cannot do its work twice:

- the server said so: `-32003` with `retryable: true` (`store_unavailable`, `store_busy`,
  `store_read_only`, `shutting_down`, and `outcome_unknown` for a call that is safe to repeat, such
  as an enqueue with an `idempotencyKey`; Protocol/README.md, Errors);
- the request never left this process (`ConnectionLost` with `sent=False`);
- the reply was lost (`ConnectionLost`, `CallTimeout`) and the request carries idempotency keys
  (`jobs.enqueue` with `idempotencyKey`, `jobs.enqueueBatch` with one on every job): the server
  then answers a repeat with the job the first attempt made.

Attempts are spaced by exponential backoff with jitter. When every attempt fails and one of them
may have taken effect, that attempt's error is raised (an `outcome_unknown` error, `ConnectionLost`
or `CallTimeout`), not the last one's: the call may have been done.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Mapping, Optional, FrozenSet

from .errors import CallTimeout, ConnectionLost, WharfError

ENQUEUE_METHODS: FrozenSet[str] = frozenset({"jobs.enqueue", "jobs.enqueueBatch"})


def carries_idempotency_key(method: str, params: Optional[Mapping[str, Any]]) -> bool:
    """True when the server will answer a repeat of this request with the first attempt's job."""
    if not isinstance(params, Mapping):
        return False
    if method == "jobs.enqueue":
        return isinstance(params.get("idempotencyKey"), str) and "webhook" not in params
    if method == "jobs.enqueueBatch":
        jobs = params.get("jobs")
        return (
            isinstance(jobs, list)
            and len(jobs) > 0
            and all(isinstance(j, Mapping) and isinstance(j.get("idempotencyKey"), str) for j in jobs)
        )
    return False


class RetryPolicy:
    """How often and for which methods a client repeats a call that failed retryably.

    `RetryPolicy(attempts=8, initial_delay=0.05, max_delay=2.0, methods=ENQUEUE_METHODS)`: up to
    `attempts` tries in all, the n-th repeat after a random delay between half and all of
    `min(max_delay, initial_delay * 2**n)` seconds (about 4 s over all eight: long enough to ride out
    a PostgreSQL restart). `methods=None` applies it to every method (a
    `Worker` has its own retries for the calls it makes, so the default covers enqueues only).
    """

    def __init__(
        self,
        attempts: int = 8,
        initial_delay: float = 0.05,
        max_delay: float = 2.0,
        methods: Optional[FrozenSet[str]] = ENQUEUE_METHODS,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.methods = methods

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(attempts={self.attempts}, initial_delay={self.initial_delay}, "
            f"max_delay={self.max_delay}, methods={None if self.methods is None else sorted(self.methods)})"
        )

    def covers(self, method: str) -> bool:
        """Whether calls of `method` are repeated at all."""
        return self.attempts > 1 and (self.methods is None or method in self.methods)

    def delays(self) -> Iterator[float]:
        """The waits before each repeat (`attempts - 1` of them)."""
        for n in range(self.attempts - 1):
            d = min(self.max_delay, self.initial_delay * (2**n))
            yield random.uniform(d / 2, d)

    @staticmethod
    def leaves_outcome_unknown(error: BaseException) -> bool:
        """Whether the failed attempt may have taken effect (when every attempt of a call fails, the
        client raises such an error of an earlier attempt rather than a later, certain failure)."""
        if isinstance(error, WharfError):
            return error.reason == "outcome_unknown"
        if isinstance(error, ConnectionLost):
            return error.sent
        return isinstance(error, CallTimeout)

    @staticmethod
    def is_safe_to_repeat(method: str, params: Optional[Mapping[str, Any]], error: BaseException) -> bool:
        """Whether `error` allows sending the same request again (module docstring)."""
        if isinstance(error, WharfError):
            return error.code == -32003 and error.retryable
        if isinstance(error, ConnectionLost) and not error.sent:
            return True
        if isinstance(error, (ConnectionLost, CallTimeout)):
            return carries_idempotency_key(method, params)
        return False


class RetryRun:
    """The retry decisions of one call, shared by `Client` (which sleeps) and `AsyncClient` (which
    awaits): after each failed attempt, `after(error)` returns how long to wait before the next one,
    or raises what the caller should see (module docstring)."""

    RETRIED = (WharfError, ConnectionLost, CallTimeout)
    """The failures a call may be repeated after; anything else propagates at once."""

    def __init__(self, policy: Optional[RetryPolicy], method: str, params: Optional[Mapping[str, Any]]) -> None:
        self.method, self.params = method, params
        self._delays = policy.delays() if policy is not None and policy.covers(method) else iter(())
        self._uncertain: Optional[BaseException] = None

    def after(self, error: BaseException, closed: bool = False) -> float:
        """The wait before repeating after `error`; raises when the call should not be repeated."""
        delay = next(self._delays, None) if RetryPolicy.is_safe_to_repeat(self.method, self.params, error) else None
        if delay is None or closed:
            # An earlier attempt may have taken effect: say so rather than that this one failed.
            if self._uncertain is not None and not RetryPolicy.leaves_outcome_unknown(error):
                raise self._uncertain from error
            raise error
        if RetryPolicy.leaves_outcome_unknown(error):
            self._uncertain = error
        return delay


DEFAULT_RETRY = RetryPolicy()
"""What `Client` and `AsyncClient` use unless told otherwise: enqueues, up to 8 attempts."""

__all__ = ["DEFAULT_RETRY", "ENQUEUE_METHODS", "RetryPolicy", "RetryRun", "carries_idempotency_key"]
