"""The client's surface against Protocol/openrpc.json, and how helpers build the wire params (no server)."""

from __future__ import annotations

import datetime
import inspect
import json

import pytest
from _wharf_support import OPENRPC, described

import wharf
from wharf._wire import camel, dumps, snake
from wharf.api import NAMESPACES, JobsAPI
from wharf.errors import from_error


def _clients():
    return [wharf.Client(), wharf.AsyncClient(), wharf.Client().batch()]


def test_openrpc_document_exists():
    assert OPENRPC.exists(), f"{OPENRPC} is missing: the coverage tests below have nothing to compare with"
    assert described(), "openrpc.json describes no methods"


def test_every_described_method_has_a_helper():
    missing = []
    for name in described():
        family, _, method = name.partition(".")
        for c in _clients():
            ns = getattr(c, family, None)
            if ns is None or not callable(getattr(ns, snake(method), None)):
                missing.append(f"{type(c).__name__}.{family}.{snake(method)}")
    assert missing == [], f"methods described in Protocol/openrpc.json that the Python client lacks: {missing}"


def test_every_described_param_is_a_keyword_of_its_helper():
    missing = []
    for name, m in described().items():
        family, _, method = name.partition(".")
        helper = getattr(NAMESPACES[family], snake(method), None) if family in NAMESPACES else None
        if helper is None:
            continue  # reported by the test above
        accepted = set(inspect.signature(helper).parameters)
        for p in m.get("params", []):
            py = snake(p["name"])
            if py not in accepted and py + "_" not in accepted:
                missing.append(f"{name}: {p['name']} (as {py})")
    assert missing == [], f"params described in Protocol/openrpc.json without a helper keyword: {missing}"


# Required on the wire but built by the helper from shorthands (`job=...` stands for `target={"job": ...}`).
BUILT_FROM_SHORTHANDS = {("cron.upsert", "target")}


def test_required_params_are_positional_or_required_keywords():
    wrong = []
    for name, m in described().items():
        family, _, method = name.partition(".")
        helper = getattr(NAMESPACES.get(family), snake(method), None)
        if helper is None:
            continue
        sig = inspect.signature(helper).parameters
        for p in m.get("params", []):
            param = sig.get(snake(p["name"]))
            if (name, p["name"]) in BUILT_FROM_SHORTHANDS:
                continue
            if param is not None and p.get("required") and param.default is not inspect.Parameter.empty:
                wrong.append(f"{name}: {p['name']} is required but optional in the helper")
    assert wrong == []


def test_names_map_between_snake_and_camel():
    assert camel("delay_ms") == "delayMs"
    assert camel("rate_limit_per_s") == "rateLimitPerS"
    assert camel("leaseToken") == "leaseToken"
    assert camel("from_") == "from"
    assert snake("enqueueBatch") == "enqueue_batch"
    assert snake("rotateSecret") == "rotate_secret"


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, method, params):
        self.calls.append((method, params))
        return params


def test_helpers_build_wire_params():
    rec = Recorder()
    jobs = JobsAPI(rec)
    at = datetime.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)
    p = jobs.enqueue(
        "mail",
        "welcome",
        {"to_address": "a"},
        run_at=at,
        max_attempts=3,
        retry={"initial_ms": datetime.timedelta(seconds=2), "coefficient": 2},
        unique_key="u",
        timeout_ms=datetime.timedelta(minutes=1),
        custom_flag=True,
    )
    # Every enqueue carries a fresh idempotency key unless given one or told not to.
    key = p.pop("idempotencyKey")
    assert isinstance(key, str) and len(key) == 32 and jobs.enqueue("q", "k")["idempotencyKey"] != key
    assert p == {
        "queue": "mail",
        "kind": "welcome",
        "payload": {"to_address": "a"},
        "runAt": "2030-01-02T03:04:05.678Z",
        "maxAttempts": 3,
        "retry": {"initialMs": 2000, "coefficient": 2},
        "uniqueKey": "u",
        "timeoutMs": 60000,
        "customFlag": True,
    }
    assert jobs.enqueue("q", "k", idempotency_key=None) == {"queue": "q", "kind": "k"}
    assert jobs.enqueue("q", "k", None, idempotency_key="mine") == {
        "queue": "q",
        "kind": "k",
        "payload": None,
        "idempotencyKey": "mine",
    }
    assert "idempotencyKey" not in jobs.enqueue(webhook={"endpoint_id": "1", "payload": {}})
    assert jobs.lease("q", "w", wait_ms=datetime.timedelta(seconds=1)) == {
        "queues": ["q"],
        "worker": "w",
        "waitMs": 1000,
    }
    assert jobs.complete("1", "t") == {"id": "1", "leaseToken": "t"}
    assert jobs.complete("1", "t", {"ok": 1}) == {"id": "1", "leaseToken": "t", "result": {"ok": 1}}
    batch = jobs.enqueue_batch(
        [{"queue": "q", "kind": "k", "delay_ms": 5, "payload": {"snake_key": 1}}], idempotency_keys=False
    )
    assert batch == {"jobs": [{"queue": "q", "kind": "k", "delayMs": 5, "payload": {"snake_key": 1}}]}
    keyed = jobs.enqueue_batch([{"queue": "q", "kind": "k"}, {"queue": "q", "kind": "k", "idempotency_key": "own"}])
    assert len(keyed["jobs"][0]["idempotencyKey"]) == 32 and keyed["jobs"][1]["idempotencyKey"] == "own"
    assert rec.calls[0][0] == "jobs.enqueue" and rec.calls[-1][0] == "jobs.enqueueBatch"

    c = wharf.Client()
    c._call = lambda method, params, timeout: (method, params)  # type: ignore[method-assign]
    assert c.queues.configure("q", None) == ("queues.configure", {"queue": "q", "retry": None})
    assert c.cron.preview("0 * * * *", from_=at, count=3) == (
        "cron.preview",
        {"expression": "0 * * * *", "from": "2030-01-02T03:04:05.678Z", "count": 3},
    )
    assert c.cron.upsert("nightly", expression="@daily", job={"queue": "q", "kind": "k", "max_attempts": 2}) == (
        "cron.upsert",
        {"name": "nightly", "expression": "@daily", "target": {"job": {"queue": "q", "kind": "k", "maxAttempts": 2}}},
    )
    assert c.webhooks.rotate_secret("e1", grace_ms=1000) == ("webhooks.rotateSecret", {"id": "e1", "graceMs": 1000})
    assert c.call("jobs.get", id="7") == ("jobs.get", {"id": "7"})
    assert c.call("jobs.get", {"id": "7"}) == ("jobs.get", {"id": "7"})
    assert c.call("jobs.get", params={"id": "7"}) == ("jobs.get", {"id": "7"})
    assert c.call("jobs.list", queue="q", limit=5) == ("jobs.list", {"queue": "q", "limit": 5})


def test_datetimes_anywhere_become_rfc3339():
    naive = datetime.datetime(2030, 1, 1, 12, 0, 0)
    plus_one = datetime.datetime(2030, 1, 1, 13, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert json.loads(dumps({"a": [naive, plus_one]})) == {"a": ["2030-01-01T12:00:00.000Z"] * 2}


@pytest.mark.parametrize(
    "code, cls",
    [
        (-32700, wharf.ParseError),
        (-32600, wharf.InvalidRequest),
        (-32601, wharf.MethodNotFound),
        (-32602, wharf.InvalidParams),
        (-32603, wharf.InternalError),
        (-32001, wharf.Unauthorized),
        (-32002, wharf.Forbidden),
        (-32003, wharf.Unavailable),
        (-32004, wharf.NotFound),
        (-32005, wharf.LimitExceeded),
        (-32009, wharf.Conflict),
        (-32099, wharf.WharfError),
    ],
)
def test_error_codes_map_to_classes(code, cls):
    e = from_error({"code": code, "message": "m", "data": {"reason": "r", "retryable": code == -32003}})
    assert type(e) is cls
    assert isinstance(e, wharf.WharfError)
    assert (e.code, e.message, e.reason, e.retryable) == (code, "m", "r", code == -32003)


def test_conflict_reasons_map_to_subclasses():
    def conflict(reason):
        return from_error({"code": -32009, "message": "m", "data": {"reason": reason, "retryable": False}})

    assert type(conflict("lease_lost")) is wharf.LeaseLost
    assert type(conflict("cancelled")) is wharf.JobCancelled
    assert type(conflict("held")) is wharf.LockHeld
    assert type(conflict("invalid_state")) is wharf.Conflict
    assert all(isinstance(conflict(r), wharf.Conflict) for r in ("lease_lost", "cancelled", "held"))
    assert wharf.RetryableError is wharf.Unavailable
    field = from_error(
        {
            "code": -32602,
            "message": "Invalid params: kind is required",
            "data": {"reason": "invalid_params", "field": "kind", "detail": "is required"},
        }
    )
    assert field.field == "kind" and field.detail == "is required"
    held = wharf.LockHeld.from_result("n", {"granted": False, "heldBy": "me", "expiresAt": "2030-01-01T00:00:00Z"})
    assert (held.name, held.held_by, held.expires_at, held.reason) == ("n", "me", "2030-01-01T00:00:00Z", "held")
    assert issubclass(wharf.ConnectionLost, ConnectionError) and issubclass(wharf.CallTimeout, TimeoutError)
