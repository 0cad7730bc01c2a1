"""README's Python snippets run against a real server, so the README never rots."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import wharf

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def python_blocks() -> list:
    text = README.read_text(encoding="utf-8")
    first_session = text[text.index("## A first session") :]
    first_session = first_session[: first_session.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", first_session, re.S)


def at(block: str, port: int) -> str:
    """The snippet pointed at the test server instead of the default address."""
    block = block.replace('wharf.Client("127.0.0.1", 7411)', f'wharf.Client("127.0.0.1", {port})')
    return block.replace('wharf.Worker(["mail"], concurrency=8)', f'wharf.Worker(["mail"], concurrency=8, port={port})')


def run_snippet(code: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(README.parent / "Clients" / "python"))
    return subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)


def test_readme_has_the_python_tour():
    blocks = python_blocks()
    assert len(blocks) >= 2
    assert any("wharf.Worker" in b for b in blocks)


def test_worker_snippet_runs_a_job_and_stops_on_sigterm(server, client):
    worker_block = next(b for b in python_blocks() if "wharf.Worker" in b)
    job = client.jobs.enqueue("mail", "welcome", {"to": "ada@example.com"})
    proc = run_snippet(at(worker_block, server.port))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = client.jobs.get(job["id"])
            if got["state"] == "completed":
                break
            time.sleep(0.1)
        assert got["state"] == "completed"
        assert got["result"] == {"sent_to": "ada@example.com"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0


def test_cron_and_lock_snippet(server, client):
    block = next(b for b in python_blocks() if "client.cron.upsert" in b)
    proc = run_snippet(at(block, server.port), stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "billing with fencing token" in out
    schedule = client.cron.get("cleanup")
    assert schedule["everyMs"] == 15 * 60_000
    assert len(schedule["nextFires"]) == 5
    released = client.locks.get("billing-run")
    assert released["held"] is False
    assert released["stats"]["releases"] >= 1
