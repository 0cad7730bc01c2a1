"""Namespaced helpers, one per server method: `client.jobs.enqueue(...)` calls `jobs.enqueue`.

The same classes serve `Client` (each helper returns the result) and `AsyncClient` (each helper
returns an awaitable) and batches (each helper returns a `BatchItem`): a namespace only builds the
params and hands `(method, params)` to the function it was given.

Keyword arguments are snake_case and become the wire's lowerCamelCase names (`delay_ms` ->
`delayMs`). Optional params left out (or None) are not sent. `datetime` values become RFC 3339 UTC
strings and `timedelta` values given for a `*_ms` param become milliseconds. Every helper also takes
`**extra` keyword params, sent as given (renamed the same way), for params added to the server
after this client was written.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from ._wire import UNSET, camel_keys, job_spec, merge, params

Caller = Callable[[str, Dict[str, Any]], Any]
Millis = Union[int, float, datetime.timedelta]
Time = Union[str, datetime.datetime]
JSONValue = Any

AUTO: Any = object()
"""Default of `idempotency_key`: a fresh random key for this call (and the client's repeats of it)."""


def new_idempotency_key() -> str:
    """A fresh random idempotency key (a UUID4 in hex)."""
    return uuid.uuid4().hex


def _with_keys(jobs: Sequence[Mapping[str, Any]], auto: bool) -> list:
    out = []
    for j in jobs:
        spec = job_spec(j)
        if auto and "idempotencyKey" not in spec:
            spec["idempotencyKey"] = new_idempotency_key()
        out.append(spec)
    return out

__all__ = [
    "BatchesAPI",
    "CronAPI",
    "EventsAPI",
    "JobsAPI",
    "LocksAPI",
    "NAMESPACES",
    "QueuesAPI",
    "RunsAPI",
    "ServerAPI",
    "SessionAPI",
    "WebhooksAPI",
]


class _Namespace:
    """Base of the method families; `_call(method, params)` does the actual call."""

    __slots__ = ("_call",)
    family = ""

    def __init__(self, call: Caller) -> None:
        self._call = call

    def __repr__(self) -> str:
        return f"<wharf {self.family} methods>"


def _queues(queues: Union[str, Sequence[str]]) -> Sequence[str]:
    return [queues] if isinstance(queues, str) else list(queues)


class ServerAPI(_Namespace):
    """`server.*`: liveness, identity, health."""

    __slots__ = ()
    family = "server"

    def ping(self, **extra: Any) -> Any:
        """`server.ping` -> `"pong"`. Needs no session."""
        return self._call("server.ping", merge({}, extra))

    def info(self, **extra: Any) -> Any:
        """`server.info` -> `{name, version, protocolVersion, replicaId, startedAt, uptimeMs, limits, ...}`."""
        return self._call("server.info", merge({}, extra))

    def health(self, **extra: Any) -> Any:
        """`server.health` -> `{status: "ok"|"unavailable", database: {reachable, roundTripMs, ...}, ...}`."""
        return self._call("server.health", merge({}, extra))

    def replicas(self, **extra: Any) -> Any:
        """`server.replicas` -> `{replicas: [{replicaId, hostname, alive, draining, listen, httpListen, ...}]}`:
        the replicas serving this database, alive (seen in the last 15 s), draining or lately gone."""
        return self._call("server.replicas", merge({}, extra))


class SessionAPI(_Namespace):
    """`session.*`: authentication."""

    __slots__ = ()
    family = "session"

    def hello(self, token: Optional[str] = None, client: Optional[str] = None, **extra: Any) -> Any:
        """`session.hello {token?, client?}` -> `{role, sessionId, replicaId, protocolVersion, authenticated}`.

        Clients send it on every (re)connect with the token they were given; calling it yourself
        changes the token that later reconnects present.
        """
        return self._call("session.hello", merge(params(token=token, client=client), extra))


class JobsAPI(_Namespace):
    """`jobs.*`: enqueue, lease, heartbeat, complete, fail, cancel, retry, get, list."""

    __slots__ = ()
    family = "jobs"

    def enqueue(
        self,
        queue: Optional[str] = None,
        kind: Optional[str] = None,
        payload: JSONValue = UNSET,
        *,
        webhook: Optional[Mapping[str, Any]] = None,
        priority: Optional[int] = None,
        run_at: Optional[Time] = None,
        delay_ms: Optional[Millis] = None,
        max_attempts: Optional[int] = None,
        retry: Optional[Mapping[str, Any]] = None,
        timeout_ms: Optional[Millis] = None,
        unique_key: Optional[str] = None,
        lock_key: Optional[str] = None,
        tags: Optional[Sequence[str]] = None,
        meta: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = AUTO,
        depends_on: Optional[Sequence[str]] = None,
        on_dependency_failure: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        """`jobs.enqueue` -> `{id, state, duplicate}` (and `replayed: true` for a repeated key).

        `run_at` (a datetime) or `delay_ms` schedule it later; `retry` is
        `{initial_ms, max_ms, coefficient, jitter}`; `unique_key` dedups unfinished jobs
        (`duplicate: true` returns the existing id); `lock_key` names a lock (the same locks as
        `client.locks`) that the job holds while it runs, so one such job runs at a time.
        `webhook={"endpoint_id": ..., "event": ..., "payload": ...}` instead of a queue and kind makes a
        job whose work is one signed delivery -> `{deliveryId, state, duplicate}`.

        `idempotency_key`: by default a fresh random key, so that the client's own repeats of this
        call (after a lost reply or an `outcome_unknown` error) return the job the first attempt
        made instead of making another. Pass a key of your own (derived from your data, e.g.
        `f"welcome:{user_id}"`) to make repeats by other calls or processes safe too (the server
        keeps keys 24 hours), or None to send none. Not sent with `webhook` (its `unique_key` plays
        that part).

        `depends_on=[job ids]` keeps the job `waiting` until they all completed;
        `on_dependency_failure` ("cancel" or "run") says what a dead or cancelled one does
        (Protocol/workflows.md).
        """
        if idempotency_key is AUTO:
            idempotency_key = new_idempotency_key() if webhook is None else None
        p = params(
            webhook=camel_keys(webhook) if webhook is not None else None,
            queue=queue,
            kind=kind,
            payload=payload,
            priority=priority,
            run_at=run_at,
            delay_ms=delay_ms,
            max_attempts=max_attempts,
            retry=retry,
            timeout_ms=timeout_ms,
            unique_key=unique_key,
            lock_key=lock_key,
            tags=tags,
            meta=meta,
            idempotency_key=idempotency_key,
            depends_on=list(depends_on) if depends_on is not None else None,
            on_dependency_failure=on_dependency_failure,
            keep_none=("payload",),
        )
        return self._call("jobs.enqueue", merge(p, extra))

    def enqueue_batch(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        idempotency_keys: bool = True,
        batch: Optional[Mapping[str, Any]] = None,
        **extra: Any,
    ) -> Any:
        """`jobs.enqueueBatch` -> `{jobs: [{id, state, duplicate}]}`, all or nothing.

        Each job is a dict of `enqueue`'s params (snake_case or camelCase keys). A job without an
        `idempotency_key` gets a fresh one unless `idempotency_keys=False`, so that the client's
        repeats of the call are safe (see `enqueue`).

        `batch={"on_success"|"on_failure"|"on_finish": {"queue", "kind", "payload"?}}` makes the jobs a
        batch whose callbacks are made once when its last job is final (-> also `batchId`); a callback
        may instead be a webhook, `{"webhook": {"endpoint_id", "event"?, "payload"?}}`. The batch holds
        the jobs the call made (not those its `unique_key`s found); a repeat of the call (same keys)
        answers the same `batchId`. See Protocol/workflows.md.
        """
        p: Dict[str, Any] = {"jobs": _with_keys(jobs, idempotency_keys)}
        if batch is not None:
            p["batch"] = camel_keys(batch, nested=("onSuccess", "onFailure", "onFinish", "webhook"))
        return self._call("jobs.enqueueBatch", merge(p, extra))

    def lease(
        self,
        queues: Union[str, Sequence[str]],
        worker: str,
        *,
        max: Optional[int] = None,  # noqa: A002 - the wire name
        lease_ms: Optional[Millis] = None,
        wait_ms: Optional[Millis] = None,
        **extra: Any,
    ) -> Any:
        """`jobs.lease` -> `{jobs: [job, ...]}`; each job has `leaseToken` and `leaseExpiresAt` (and a
        job with a `lockKey`, the `fencingToken` of its grant of that lock).

        With `wait_ms` it long-polls: the reply comes as soon as a job is there, or empty after
        `wait_ms`. The client's timeout for this call is extended by `wait_ms`.
        """
        p = params(queues=_queues(queues), worker=worker, max=max, lease_ms=lease_ms, wait_ms=wait_ms)
        return self._call("jobs.lease", merge(p, extra))

    def heartbeat(
        self,
        id: str,  # noqa: A002 - the wire name
        lease_token: str,
        *,
        extend_ms: Optional[Millis] = None,
        progress: JSONValue = UNSET,
        **extra: Any,
    ) -> Any:
        """`jobs.heartbeat` -> `{id, leaseExpiresAt}`.

        Raises `LeaseLost` when the token no longer holds the job and `JobCancelled` when the job
        was cancelled.
        """
        p = params(id=id, lease_token=lease_token, extend_ms=extend_ms, progress=progress)
        return self._call("jobs.heartbeat", merge(p, extra))

    def complete(
        self,
        id: str,  # noqa: A002 - the wire name
        lease_token: str,
        result: JSONValue = UNSET,
        *,
        schedule_patch: Optional[Mapping[str, Any]] = None,
        next: Optional[Mapping[str, Any]] = None,  # noqa: A002 - the wire name
        **extra: Any,
    ) -> Any:
        """`jobs.complete` -> `{id, state: "completed"}`; idempotent with the same token.

        `schedule_patch={"name": ..., "payload": {...}}` merges `payload` into that schedule's
        template payload in the same transaction as the completion, so its next run sees it.
        `next={"payload": ..., "kind"?, "queue"?, "delay_ms"?, ...}` completes this step of a run and
        enqueues the next step in the same transaction (-> also `runId`, `step`, `nextJobId`).
        """
        p = params(
            id=id,
            lease_token=lease_token,
            result=result,
            schedule_patch=schedule_patch,
            next=camel_keys(next) if next is not None else None,
            keep_none=("result",),
        )
        return self._call("jobs.complete", merge(p, extra))

    def fail(
        self,
        id: str,  # noqa: A002 - the wire name
        lease_token: str,
        error: JSONValue,
        *,
        retryable: Optional[bool] = None,
        retry_in_ms: Optional[Millis] = None,
        **extra: Any,
    ) -> Any:
        """`jobs.fail` -> `{id, state: "retryable"|"dead", nextRunAt?}`.

        `error` is a string or an object (kept as the job's `lastError`); `retryable=False` makes
        the job dead at once; `retry_in_ms` sets the next delay exactly.
        """
        p = params(id=id, lease_token=lease_token, error=error, retryable=retryable, retry_in_ms=retry_in_ms)
        return self._call("jobs.fail", merge(p, extra))

    def cancel(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`jobs.cancel` -> `{id, state, cancelled}`; a running job's worker learns it at its next heartbeat."""
        return self._call("jobs.cancel", merge(params(id=id), extra))

    def retry(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`jobs.retry` -> `{id, state: "available"}` for a dead or cancelled job."""
        return self._call("jobs.retry", merge(params(id=id), extra))

    def get(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`jobs.get` -> the job, with its attempt history."""
        return self._call("jobs.get", merge(params(id=id), extra))

    def wait(self, ids: Union[str, Sequence[str]], *, timeout_ms: Optional[Millis] = None, **extra: Any) -> Any:
        """`jobs.wait` -> `{jobs: [job, ...], done}` once every job is completed, dead or cancelled
        (`done: true`), or after `timeout_ms` (default 30 s) with their states then (`done: false`).

        Each job is as `jobs.get` shows it (without the attempt history): `result` of a completed
        one, `lastError` of a dead one. The client's timeout for this call is extended by
        `timeout_ms`.
        """
        ids = [ids] if isinstance(ids, str) else list(ids)
        return self._call("jobs.wait", merge(params(ids=ids, timeout_ms=timeout_ms), extra))

    def list(
        self,
        *,
        queue: Optional[str] = None,
        state: Optional[str] = None,
        kind: Optional[str] = None,
        tag: Optional[str] = None,
        created_from: Optional[Time] = None,
        created_before: Optional[Time] = None,
        unique_key: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        """`jobs.list` -> `{jobs, nextCursor}`, newest first; pass `nextCursor` back as `cursor`.

        `created_from`/`created_before` bound the creation time; `unique_key` (alone) finds the
        unfinished job holding that key."""
        p = params(queue=queue, state=state, kind=kind, tag=tag, created_from=created_from,
                   created_before=created_before, unique_key=unique_key, limit=limit, cursor=cursor)
        return self._call("jobs.list", merge(p, extra))


class QueuesAPI(_Namespace):
    """`queues.*`: list, stats, configure, pause, resume."""

    __slots__ = ()
    family = "queues"

    def list(self, limit: Optional[int] = None, cursor: Optional[str] = None, **extra: Any) -> Any:
        """`queues.list` -> `{queues: [{name, paused, available, scheduled, running, retryable}], nextCursor}`,
        by name; pass `nextCursor` back as `cursor` for the next page."""
        return self._call("queues.list", merge(params(limit=limit, cursor=cursor), extra))

    def stats(self, queue: str, **extra: Any) -> Any:
        """`queues.stats` -> `{queue, paused, counts: {state: n}, oldestAvailableAgeMs, ...}`."""
        return self._call("queues.stats", merge(params(queue=queue), extra))

    def configure(
        self,
        queue: str,
        retry: Optional[Mapping[str, Any]] = UNSET,
        retention: Optional[Mapping[str, Any]] = UNSET,
        **extra: Any,
    ) -> Any:
        """`queues.configure` sets the queue's retry policy and/or its retention of finished jobs
        (`{completedMs, deadMs}`); a setting not given is left as it is, `None` clears it."""
        p = params(queue=queue, retry=retry, retention=retention, keep_none=("retry", "retention"))
        return self._call("queues.configure", merge(p, extra))

    def pause(self, queue: str, **extra: Any) -> Any:
        """`queues.pause` -> `{queue, paused: true}`: leasing skips the queue."""
        return self._call("queues.pause", merge(params(queue=queue), extra))

    def resume(self, queue: str, **extra: Any) -> Any:
        """`queues.resume` -> `{queue, paused: false}`."""
        return self._call("queues.resume", merge(params(queue=queue), extra))


class LocksAPI(_Namespace):
    """`locks.*`: fenced leases on names. `wharf.lock(client, name)` wraps them in a context manager."""

    __slots__ = ()
    family = "locks"

    def acquire(
        self,
        name: str,
        holder: str,
        ttl_ms: Millis,
        *,
        wait_ms: Optional[Millis] = None,
        request_id: Optional[str] = None,
        bind_to_session: Optional[bool] = None,
        lock_delay_ms: Optional[Millis] = None,
        **extra: Any,
    ) -> Any:
        """`locks.acquire` -> `{granted: true, token, fencingToken, expiresAt}` or `{granted: false, heldBy, ...}`.

        Not being granted is a result, not an error (the context manager raises `LockHeld`).
        """
        p = params(
            name=name,
            holder=holder,
            ttl_ms=ttl_ms,
            wait_ms=wait_ms,
            request_id=request_id,
            bind_to_session=bind_to_session,
            lock_delay_ms=lock_delay_ms,
        )
        return self._call("locks.acquire", merge(p, extra))

    def renew(self, name: str, token: str, ttl_ms: Millis, **extra: Any) -> Any:
        """`locks.renew` -> `{name, expiresAt, fencingToken}`; `LeaseLost` if the lock was lost."""
        return self._call("locks.renew", merge(params(name=name, token=token, ttl_ms=ttl_ms), extra))

    def release(self, name: str, token: str, **extra: Any) -> Any:
        """`locks.release` -> `{name, released}`; `LeaseLost` for someone else's token."""
        return self._call("locks.release", merge(params(name=name, token=token), extra))

    def get(self, name: str, **extra: Any) -> Any:
        """`locks.get` -> `{name, held, holder, expiresAt, fencingToken, stats, ...}`."""
        return self._call("locks.get", merge(params(name=name), extra))

    def list(
        self, *, prefix: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None, **extra: Any
    ) -> Any:
        """`locks.list` -> `{locks, nextCursor}`."""
        return self._call("locks.list", merge(params(prefix=prefix, limit=limit, cursor=cursor), extra))


def _target(
    target: Optional[Mapping[str, Any]], job: Optional[Mapping[str, Any]], webhook: Optional[Mapping[str, Any]]
) -> Optional[Dict[str, Any]]:
    if target is None and job is None and webhook is None:
        return None
    out: Dict[str, Any] = {}
    if target is not None:
        out.update(target)
    if job is not None:
        out["job"] = job
    if webhook is not None:
        out["webhook"] = webhook
    if isinstance(out.get("job"), Mapping):
        out["job"] = job_spec(out["job"])
    if isinstance(out.get("webhook"), Mapping):
        out["webhook"] = camel_keys(out["webhook"])
    return out


class CronAPI(_Namespace):
    """`cron.*`: schedules that produce jobs or webhook calls."""

    __slots__ = ()
    family = "cron"

    def upsert(
        self,
        name: str,
        *,
        expression: Optional[str] = None,
        every_ms: Optional[Millis] = None,
        timezone: Optional[str] = None,
        target: Optional[Mapping[str, Any]] = None,
        job: Optional[Mapping[str, Any]] = None,
        webhook: Optional[Mapping[str, Any]] = None,
        day_match: Optional[str] = None,
        dst_gap: Optional[str] = None,
        dst_fold: Optional[str] = None,
        overlap: Optional[str] = None,
        missed: Optional[str] = None,
        missed_window_ms: Optional[Millis] = None,
        jitter_ms: Optional[Millis] = None,
        start_at: Optional[Time] = None,
        end_at: Optional[Time] = None,
        limit: Optional[int] = None,
        paused: Optional[bool] = None,
        paused_note: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        """`cron.upsert`: create or replace the schedule `name`.

        Give `expression` (5 or 6 fields, a macro such as `@hourly`, or `@every 90s`) or `every_ms`.
        The target is `target={"job": {...}}`, or the shorthand `job=...`. `overlap` is "allow",
        "skip" or "bufferOne"; `missed` is "skip", "runOnce" or "runAll" (see Protocol/cron.md).
        """
        p = params(
            name=name,
            expression=expression,
            every_ms=every_ms,
            timezone=timezone,
            target=_target(target, job, webhook),
            day_match=day_match,
            dst_gap=dst_gap,
            dst_fold=dst_fold,
            overlap=overlap,
            missed=missed,
            missed_window_ms=missed_window_ms,
            jitter_ms=jitter_ms,
            start_at=start_at,
            end_at=end_at,
            limit=limit,
            paused=paused,
            paused_note=paused_note,
        )
        return self._call("cron.upsert", merge(p, extra))

    def get(self, name: str, **extra: Any) -> Any:
        """`cron.get`: one schedule with its next fire times."""
        return self._call("cron.get", merge(params(name=name), extra))

    def list(
        self, *, prefix: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None, **extra: Any
    ) -> Any:
        """`cron.list` -> `{schedules, cursor}`: schedules by name, a page at a time."""
        return self._call("cron.list", merge(params(prefix=prefix, limit=limit, cursor=cursor), extra))

    def remove(self, name: str, **extra: Any) -> Any:
        """`cron.remove`: delete a schedule."""
        return self._call("cron.remove", merge(params(name=name), extra))

    def pause(self, name: str, note: Optional[str] = None, **extra: Any) -> Any:
        """`cron.pause`: stop firing (with an optional note saying why)."""
        return self._call("cron.pause", merge(params(name=name, note=note), extra))

    def resume(self, name: str, **extra: Any) -> Any:
        """`cron.resume`: fire again."""
        return self._call("cron.resume", merge(params(name=name), extra))

    def trigger(self, name: str, **extra: Any) -> Any:
        """`cron.trigger`: fire once now."""
        return self._call("cron.trigger", merge(params(name=name), extra))

    def preview(
        self,
        expression: Optional[str] = None,
        *,
        every_ms: Optional[Millis] = None,
        timezone: Optional[str] = None,
        day_match: Optional[str] = None,
        dst_gap: Optional[str] = None,
        dst_fold: Optional[str] = None,
        count: Optional[int] = None,
        from_: Optional[Time] = None,
        **extra: Any,
    ) -> Any:
        """`cron.preview`: the next `count` fire times of `expression` from `from_` (the wire's `from`)."""
        p = params(
            expression=expression,
            every_ms=every_ms,
            timezone=timezone,
            day_match=day_match,
            dst_gap=dst_gap,
            dst_fold=dst_fold,
            count=count,
            from_=from_,
        )
        return self._call("cron.preview", merge(p, extra))


class WebhooksAPI(_Namespace):
    """`webhooks.*`: endpoints, signed deliveries, health, redelivery, secrets."""

    __slots__ = ()
    family = "webhooks"

    def register(
        self,
        url: str,
        *,
        description: Optional[str] = None,
        events: Optional[Sequence[str]] = None,
        rate_limit_per_s: Optional[int] = None,
        disable_after_ms: Optional[Millis] = None,
        dormant_after_ms: Optional[Millis] = None,
        retention_ms: Optional[Millis] = None,
        **extra: Any,
    ) -> Any:
        """`webhooks.register` -> the endpoint with its `secret` (shown once) and the outcome of a ping."""
        p = params(
            url=url,
            description=description,
            events=events,
            rate_limit_per_s=rate_limit_per_s,
            disable_after_ms=disable_after_ms,
            dormant_after_ms=dormant_after_ms,
            retention_ms=retention_ms,
        )
        return self._call("webhooks.register", merge(p, extra))

    def update(
        self,
        id: str,  # noqa: A002 - the wire name
        *,
        url: Optional[str] = None,
        description: Optional[str] = None,
        events: Optional[Sequence[str]] = None,
        rate_limit_per_s: Optional[int] = None,
        disable_after_ms: Optional[Millis] = None,
        dormant_after_ms: Optional[Millis] = None,
        retention_ms: Optional[Millis] = None,
        **extra: Any,
    ) -> Any:
        """`webhooks.update`: change the fields given."""
        p = params(
            id=id,
            url=url,
            description=description,
            events=events,
            rate_limit_per_s=rate_limit_per_s,
            disable_after_ms=disable_after_ms,
            dormant_after_ms=dormant_after_ms,
            retention_ms=retention_ms,
        )
        return self._call("webhooks.update", merge(p, extra))

    def get(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`webhooks.get`: one endpoint."""
        return self._call("webhooks.get", merge(params(id=id), extra))

    def list(self, *, limit: Optional[int] = None, cursor: Optional[str] = None, **extra: Any) -> Any:
        """`webhooks.list` -> `{endpoints, cursor}`: endpoints with their health, a page at a time."""
        return self._call("webhooks.list", merge(params(limit=limit, cursor=cursor), extra))

    def remove(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`webhooks.remove`: delete an endpoint."""
        return self._call("webhooks.remove", merge(params(id=id), extra))

    def test(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`webhooks.test`: send a test ping to the endpoint."""
        return self._call("webhooks.test", merge(params(id=id), extra))

    def health(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`webhooks.health`: `lastSuccessAt`, `lastFailureAt`, consecutive failures, success rate."""
        return self._call("webhooks.health", merge(params(id=id), extra))

    def deliveries(
        self,
        endpoint_id: str,
        *,
        state: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        """`webhooks.deliveries`: the endpoint's delivery log, with cursor pagination."""
        p = params(endpoint_id=endpoint_id, state=state, limit=limit, cursor=cursor)
        return self._call("webhooks.deliveries", merge(p, extra))

    def redeliver(self, delivery_id: str, **extra: Any) -> Any:
        """`webhooks.redeliver`: send a delivery again."""
        return self._call("webhooks.redeliver", merge(params(delivery_id=delivery_id), extra))

    def rotate_secret(self, id: str, *, grace_ms: Optional[Millis] = None, **extra: Any) -> Any:  # noqa: A002
        """`webhooks.rotateSecret`: a new secret; the old one also signs for `grace_ms`."""
        return self._call("webhooks.rotateSecret", merge(params(id=id, grace_ms=grace_ms), extra))

    def enable(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`webhooks.enable`: re-enable an endpoint that was disabled."""
        return self._call("webhooks.enable", merge(params(id=id), extra))

    def send(
        self,
        payload: JSONValue,
        *,
        endpoint_id: Optional[str] = None,
        event: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        **extra: Any,
    ) -> Any:
        """`webhooks.send`: deliver `payload` to one endpoint (`endpoint_id`) or to those subscribed to `event`."""
        p = params(
            payload=payload,
            endpoint_id=endpoint_id,
            event=event,
            idempotency_key=idempotency_key,
            keep_none=("payload",),
        )
        return self._call("webhooks.send", merge(p, extra))

    def recover(self, endpoint_id: str, since: Time, **extra: Any) -> Any:
        """`webhooks.recover`: redeliver the endpoint's failed deliveries since a time."""
        return self._call("webhooks.recover", merge(params(endpoint_id=endpoint_id, since=since), extra))


class EventsAPI(_Namespace):
    """`events.*`: server -> client `event` notifications, delivered to the client's `on_notification`.

    Subscriptions belong to a connection: after a reconnect, subscribe again.
    """

    __slots__ = ()
    family = "events"

    def subscribe(
        self,
        events: Sequence[str],
        *,
        queues: Optional[Sequence[str]] = None,
        schedules: Optional[Sequence[str]] = None,
        locks: Optional[Sequence[str]] = None,
        endpoints: Optional[Sequence[str]] = None,
        **extra: Any,
    ) -> Any:
        """`events.subscribe`: receive events of these types (`"job.dead"`, `"job.*"`, `"*"`) ->
        `{events, ...}`. `queues`, `schedules`, `locks` and `endpoints` each limit the events of their
        kind to those subjects (Protocol/events.md)."""
        lists = {k: list(v) if v is not None else None
                 for k, v in (("queues", queues), ("schedules", schedules), ("locks", locks), ("endpoints", endpoints))}
        return self._call("events.subscribe", merge(params(events=list(events), **lists), extra))

    def unsubscribe(self, events: Optional[Sequence[str]] = None, **extra: Any) -> Any:
        """`events.unsubscribe`: stop receiving these types (all when omitted) -> `{events}`."""
        return self._call("events.unsubscribe", merge(params(events=list(events) if events else None), extra))


class RunsAPI(_Namespace):
    """`runs.*`: multi-step runs (Protocol/workflows.md)."""

    __slots__ = ()
    family = "runs"

    def get(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`runs.get` -> the run with its `outputs` and `steps`."""
        return self._call("runs.get", merge(params(id=id), extra))

    def list(
        self, *, state: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None, **extra: Any
    ) -> Any:
        """`runs.list` -> `{runs, nextCursor}`, newest first."""
        return self._call("runs.list", merge(params(state=state, limit=limit, cursor=cursor), extra))

    def cancel(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`runs.cancel` -> `{id, state, cancelled, cancelledJobId}`."""
        return self._call("runs.cancel", merge(params(id=id), extra))


class BatchesAPI(_Namespace):
    """`batches.*`: the progress of a `jobs.enqueueBatch {batch}`."""

    __slots__ = ()
    family = "batches"

    def get(self, id: str, **extra: Any) -> Any:  # noqa: A002 - the wire name
        """`batches.get` -> `{id, state, total, completed, dead, cancelled, pending, failedIds, ...}`."""
        return self._call("batches.get", merge(params(id=id), extra))


class RpcAPI(_Namespace):
    """`rpc.*`: the OpenRPC convention's self-description."""

    __slots__ = ()
    family = "rpc"

    def discover(self, **extra: Any) -> Any:
        """`rpc.discover` -> the server's OpenRPC document (Protocol/openrpc.json). Needs no session."""
        return self._call("rpc.discover", merge({}, extra))


NAMESPACES = {
    cls.family: cls
    for cls in (
        ServerAPI, SessionAPI, JobsAPI, QueuesAPI, LocksAPI, CronAPI, WebhooksAPI, EventsAPI, RpcAPI, RunsAPI, BatchesAPI
    )
}
"""Family name -> namespace class; a client has one attribute per family."""


class Namespaces:
    """Mixin: one attribute per method family, each calling `self._call_method(method, params)`."""

    server: ServerAPI
    session: SessionAPI
    jobs: JobsAPI
    queues: QueuesAPI
    locks: LocksAPI
    cron: CronAPI
    webhooks: WebhooksAPI
    events: EventsAPI
    rpc: RpcAPI
    runs: RunsAPI
    batches: BatchesAPI

    def _install_namespaces(self, call: Caller) -> None:
        for family, cls in NAMESPACES.items():
            setattr(self, family, cls(call))
