import threading
import time

import wharf


def run_worker(worker):
    t = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    t.start()
    return t


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_worker_completes_fails_retries_and_discards(server, client):
    worker = wharf.Worker(["work"], concurrency=4, lease_ms=3000, port=server.port)
    seen = []
    attempts = {}

    @worker.task("add")
    def add(payload):
        seen.append(payload)
        return {"sum": payload["a"] + payload["b"]}

    @worker.task("flaky")
    def flaky(job: wharf.Job):
        attempts[job.id] = job.attempt
        if job.attempt < 2:
            raise wharf.Retry(after=0.2)
        return "ok"

    @worker.task("bad")
    def bad(payload):
        raise wharf.Discard("invalid input")

    @worker.task("boom")
    def boom(payload):
        raise ValueError("kaput")

    ids = {
        "add": client.jobs.enqueue(queue="work", kind="add", payload={"a": 2, "b": 3})["id"],
        "flaky": client.jobs.enqueue(queue="work", kind="flaky")["id"],
        "bad": client.jobs.enqueue(queue="work", kind="bad")["id"],
        "boom": client.jobs.enqueue(queue="work", kind="boom", max_attempts=1)["id"],
    }
    t = run_worker(worker)
    try:
        assert wait_for(lambda: client.jobs.get(id=ids["flaky"])["state"] == "completed")
        assert wait_for(lambda: client.jobs.get(id=ids["boom"])["state"] == "dead")
        add_job = client.jobs.get(id=ids["add"])
        assert add_job["state"] == "completed" and add_job["result"] == {"sum": 5}
        assert client.jobs.get(id=ids["bad"])["state"] == "dead"
        assert client.jobs.get(id=ids["bad"])["lastError"]["message"] == "invalid input"
        assert "kaput" in client.jobs.get(id=ids["boom"])["lastError"]["message"]
        assert attempts[ids["flaky"]] == 2
    finally:
        worker.stop()
        t.join(10)


def test_heartbeats_keep_a_long_job_and_cancel_reaches_it(server, client):
    worker = wharf.Worker(["slow"], concurrency=1, lease_ms=1000, port=server.port)
    started = threading.Event()
    saw_cancel = threading.Event()

    @worker.task("long")
    def long(job: wharf.Job):
        started.set()
        # Longer than the lease: only heartbeats keep it.
        if job.cancelled.wait(4.0):
            saw_cancel.set()
        return "done"

    job_id = client.jobs.enqueue(queue="slow", kind="long")["id"]
    t = run_worker(worker)
    try:
        assert started.wait(5)
        time.sleep(2.5)
        assert client.jobs.get(id=job_id)["state"] == "running"
        assert client.jobs.get(id=job_id)["attempt"] == 1
        client.jobs.cancel(id=job_id)
        assert saw_cancel.wait(5)
        assert client.jobs.get(id=job_id)["state"] == "cancelled"
    finally:
        worker.stop()
        t.join(10)


def test_python_m_worker_runs_a_module(server, client, tmp_path):
    import subprocess
    import sys

    (tmp_path / "myjobs.py").write_text(
        "import wharf\n"
        f"worker = wharf.Worker(['mod'], port={server.port})\n"
        "@worker.task('hello')\n"
        "def hello(payload):\n"
        "    return 'hi ' + payload['name']\n"
    )
    job_id = client.jobs.enqueue(queue="mod", kind="hello", payload={"name": "ada"})["id"]
    env = dict(__import__("os").environ)
    package_root = __import__("os").path.dirname(__import__("os").path.dirname(wharf.__file__))
    env["PYTHONPATH"] = str(tmp_path) + ":" + package_root
    proc = subprocess.Popen([sys.executable, "-m", "wharf.worker", "myjobs:worker"], cwd=tmp_path, env=env)
    try:
        assert wait_for(lambda: client.jobs.get(id=job_id)["state"] == "completed", 15)
        assert client.jobs.get(id=job_id)["result"] == "hi ada"
    finally:
        proc.terminate()
        code = proc.wait(15)
    assert code == 0
