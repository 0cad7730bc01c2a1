"""`wharf runs ...`, `wharf batches get` and `wharf jobs wait` against a live server."""

from __future__ import annotations

import json
import subprocess

from wharf.testing import WharfServer, wharf_bin


def cli(server, *args):
    out = subprocess.run([wharf_bin(), *args, "--server", server.address, "--json"], capture_output=True, text=True,
                         timeout=60)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


def test_runs_batches_and_waiting_from_the_command_line():
    with WharfServer() as server, server.client() as c:
        first = c.jobs.enqueue("cli-runs", "step", {"n": 1})
        job = c.jobs.lease(["cli-runs"], "w", max=1, lease_ms=30_000)["jobs"][0]
        nxt = c.call("jobs.complete", {"id": job["id"], "leaseToken": job["leaseToken"], "result": {"n": 1},
                                       "next": {"payload": {"n": 2}}})["nextJobId"]
        code, run, _ = cli(server, "runs", "get", first["id"])
        assert code == 0 and run["state"] == "running" and run["currentJobId"] == nxt
        code, page, _ = cli(server, "runs", "list")
        assert code == 0 and [r["id"] for r in page["runs"]] == [first["id"]]
        # The first step is final: wait answers at once, exit 0.
        code, waited, _ = cli(server, "jobs", "wait", first["id"], "--timeout", "5s")
        assert code == 0 and waited["done"] is True and waited["jobs"][0]["result"] == {"n": 1}
        # The second step never runs once the run is cancelled; waiting on it then exits 1 (cancelled).
        code, cancelled, _ = cli(server, "runs", "cancel", first["id"])
        assert code == 0 and cancelled["state"] == "cancelled"
        code, waited, _ = cli(server, "jobs", "wait", nxt, "--timeout", "5s")
        assert code == 1 and waited["jobs"][0]["state"] == "cancelled"
        # A job still available: the wait times out, exit 3.
        other = c.jobs.enqueue("cli-other", "k", {})
        code, waited, _ = cli(server, "jobs", "wait", other["id"], "--timeout", "300ms")
        assert code == 3 and waited["done"] is False
        made = c.call("jobs.enqueueBatch", {"jobs": [{"queue": "cli-batch", "kind": "k"}] * 2,
                                            "batch": {"onFinish": {"queue": "cli-done", "kind": "report"}}})
        batch_id = made["batchId"]
        code, batch, _ = cli(server, "batches", "get", batch_id)
        assert code == 0 and batch["total"] == 2 and batch["pending"] == 2
        code, _, err = cli(server, "runs", "get", "999999")
        assert code == 2 and "not found" in err
