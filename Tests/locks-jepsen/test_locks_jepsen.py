"""The Jepsen-style lock workloads (locks_jepsen.py) in their short mode, about 30 seconds in all.

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


def test_lock_clients_and_keyed_jobs_share_one_lock():
    with tempfile.TemporaryDirectory(prefix="wharf-jepsen-") as workdir:
        r = locks_jepsen.run_mixed(BINARY, DATABASE, DURATION, CLIENTS, 2000, workdir, log=print)
    assert r["problems"] == []
    assert r["lockHolds"] >= 10 and r["jobHolds"] >= 10, "both kinds of holder must take the lock often"
    assert r["acceptedWrites"] >= 20
    assert r["lostUpdates"] == 0, "two holders at once: an update was lost without any stale holder"
