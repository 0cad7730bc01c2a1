"""`wharf bench` commands run end to end against a real server, so that they keep working: each must
finish, account for every job and print the figures it promises."""

from __future__ import annotations

import json
import os
import subprocess

from wharf.testing import WharfServer, fresh_database


def bench(server: WharfServer, *args: str) -> dict:
    done = subprocess.run(
        [os.environ["WHARF_BIN"], "bench", *args, "--server", f"{server.host}:{server.port}", "--json"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_worker_drains_every_job_with_the_swift_worker():
    with WharfServer(database=fresh_database("wharf_ops_bench")) as server:
        r = bench(server, "worker", "--jobs", "600", "--workers", "2", "--concurrency", "20")
        assert r["completed"] == 600 and r["leased"] == 600 and r["left"] == 0
        assert r["jobsPerSec"] > 0
        # Outcomes travel in batches: fewer batches than jobs.
        assert r["jobsPerBatch"] > 1
        # One request per outcome, plus leases and each connection's hello.
        assert 1.0 <= r["costPerJob"]["clientCallsPerJob"] < 1.5
