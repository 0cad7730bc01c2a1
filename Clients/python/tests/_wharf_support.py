"""Helpers shared by the tests: what Protocol/openrpc.json describes, and waiting for a condition."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import time
from typing import Any, Callable, Dict

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
OPENRPC = REPO / "Protocol" / "openrpc.json"
VECTORS = REPO / "Protocol" / "vectors"


def in_ci() -> bool:
    """True under CI=true (missing pieces fail there instead of skipping)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@functools.lru_cache(maxsize=None)
def described() -> Dict[str, Dict[str, Any]]:
    """Method name -> its OpenRPC description; empty when openrpc.json does not exist yet."""
    if not OPENRPC.exists():
        return {}
    return {m["name"]: m for m in json.loads(OPENRPC.read_text())["methods"]}


def requires(*methods: str) -> pytest.MarkDecorator:
    """Skips a test until every one of `methods` is described in Protocol/openrpc.json."""
    missing = [m for m in methods if m not in described()]
    return pytest.mark.skipif(bool(missing), reason=f"not in Protocol/openrpc.json yet: {', '.join(missing)}")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Polls `predicate` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
