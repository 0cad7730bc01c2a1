"""The Jepsen-style lock workload (locks_jepsen.py) in its short mode, about 20 seconds in all.

Reads WHARF_BIN (the built `wharf`) and WHARF_TEST_DATABASE_URL (a PostgreSQL whose user may create
databases; each run creates its own). Skipped when either is missing.
"""

import os
import tempfile

import pytest

import locks_jepsen

BINARY = os.environ.get("WHARF_BIN", "")
DATABASE = os.environ.get("WHARF_TEST_DATABASE_URL", "")

pytestmark = pytest.mark.skipif(
    not (BINARY and os.access(BINARY, os.X_OK) and DATABASE),
    reason="needs WHARF_BIN and WHARF_TEST_DATABASE_URL (bash scripts/test.sh sets both)",
)

DURATION = 8.0
CLIENTS = 6
TTL_MS = 300


def short_run(fenced):
    with tempfile.TemporaryDirectory(prefix="wharf-jepsen-") as workdir:
        return locks_jepsen.run(BINARY, DATABASE, fenced, DURATION, CLIENTS, TTL_MS, workdir, log=print)


def test_fenced_locks_never_overlap_and_lose_no_update():
    r = short_run(fenced=True)
    assert r["problems"] == []
    assert r["grants"] >= 10, "too few grants to say anything"
    assert r["lostUpdates"] == 0, "an update was lost despite fencing"
    assert r["rejected"] > 0, "no holder ever went stale: the workload did not exercise fencing"


def test_control_without_fencing_loses_updates():
    r = short_run(fenced=False)
    # The lock service behaves the same; only the register stops checking tokens.
    assert r["problems"] == []
    assert r["grants"] >= 10
    assert r["lostUpdates"] > 0, "the unfenced workload lost no update: the test cannot see the bug"
