"""`python -m wharf.bench`: how fast `wharf.Worker` processes drain no-op jobs from a running server.

    python -m wharf.bench --port 7411 --jobs 20000 --procs 2 --concurrency 200 --runs 3

Per run: enqueue `--jobs` no-op jobs on a fresh queue with `jobs.enqueueBatch` (1,000 a call, timed),
start `--procs` worker processes (`wharf.Worker`, `--concurrency` slots each, an `async def` handler
that does nothing, or a plain one with `--sync`), wait until each has connected, release them together
and time until the last one has drained the queue (`Worker.run(drain=True)` returns once a lease finds
nothing and no job runs; all outcomes are answered by then). The queue's counts are checked afterwards:
every job completed, none lost. The last line is a summary (median of the runs), e.g.

    wharf.Worker (2 procs x concurrency 200, async handler, N=20000, median of 3): 31000 jobs/s processed, ...

The method is that of the peer benchmarks in ../shared/bench (bench_pgqueuer.py): same N, same
release of the workers, same stop condition (the last worker process has finished the last job).
A worker without `drain` (an older `wharf.Worker`) is stopped by the parent once `queues.stats`
counts every job completed (polled every 50 ms).
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Dict, List, Optional, Tuple

from .client import Client


def _say(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# Worker side: READY, wait for GO, drain, DONE <count> <t_end_ns>


def worker_main(args: argparse.Namespace) -> None:
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    from .worker import Worker

    worker = Worker(
        [args.queue],
        concurrency=args.concurrency,
        host=args.host,
        port=args.port,
        token=args.token,
        poll_ms=200,
        name=f"bench:{os.getpid()}",
    )
    count = [0]
    if args.sync:

        @worker.task("noop")
        def noop_sync(payload: object) -> None:
            count[0] += 1

    else:

        @worker.task("noop")
        async def noop(payload: object) -> None:
            count[0] += 1

    with Client(args.host, args.port, token=args.token) as probe:
        probe.server.ping()  # the server answers: ready to go
    _say("READY")
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("expected GO")
    if "drain" in inspect.signature(worker.run).parameters:
        worker.run(install_signals=False, drain=True)
    else:
        thread = worker.run_in_thread()
        sys.stdin.readline()  # STOP from the parent
        worker.stop()
        thread.join()
    t_end = time.monotonic_ns()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _say(f"DONE {count[0]} {t_end} {usage.ru_utime + usage.ru_stime:.4f}")


# Parent side


class _Child:
    def __init__(self, argv: List[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wharf.bench", "worker", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}) while waiting for {prefix}")
            if line.startswith(prefix):
                return line.strip()
            _log(f"[{self.name}] {line.rstrip()}")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


def _counts(client: Client, queue: str) -> dict:
    return client.queues.stats(queue=queue)["counts"]


def one_run(args: argparse.Namespace, run: int) -> Tuple[float, float]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    client = Client(args.host, args.port, token=args.token, timeout=60)
    n, b = args.jobs, 1000
    t0 = time.perf_counter()
    for i in range(0, n, b):
        k = min(b, n - i)
        client.jobs.enqueue_batch(jobs=[{"queue": queue, "kind": "noop"} for _ in range(k)])
    enqueue_s = time.perf_counter() - t0
    assert _counts(client, queue).get("available") == n

    argv = ["--host", args.host, "--port", str(args.port), "--queue", queue, "--concurrency", str(args.concurrency)]
    argv += ["--token", args.token] if args.token else []
    argv += ["--sync"] if args.sync else []
    argv += ["--uvloop"] if args.uvloop else []
    kids = [_Child(argv, f"w{i}") for i in range(args.procs)]
    for c in kids:
        c.expect("READY")
    drains = _drains(kids[0])
    server_cpu, pg_cpu = _process_cpu(args.server_pid), _children_cpu(args.pg_pid)
    t_go = time.monotonic_ns()
    for c in kids:
        c.send("GO")
    if not drains:
        _poll_until_done(client, queue, n)
        t_seen = time.monotonic_ns()
        for c in kids:
            c.send("STOP")
    done, t_end, worker_cpu = 0, 0, 0.0
    for c in kids:
        _, count, t, cpu = c.expect("DONE").split()
        done += int(count)
        t_end = max(t_end, int(t))
        worker_cpu += float(cpu)
        c.proc.wait()
    server_cpu, pg_cpu = _process_cpu(args.server_pid) - server_cpu, _cpu_since(pg_cpu, _children_cpu(args.pg_pid))
    if not drains:
        t_end = t_seen
    seconds = (t_end - t_go) / 1e9
    counts = _counts(client, queue)
    client.close()
    cpu = f"CPU per job: workers {worker_cpu * 1e6 / n:.1f} us (with their start-up)"
    if args.server_pid:
        cpu += f", server {server_cpu * 1e6 / n:.1f} us"
    if args.pg_pid:
        cpu += f", PostgreSQL {pg_cpu * 1e6 / n:.1f} us"
    _log(
        f"  run {run}: enqueue {n} in {enqueue_s:.3f}s = {n / enqueue_s:.0f}/s; processed {done} in {seconds:.3f}s"
        f" = {n / seconds:.0f}/s; {cpu}; counts {counts}"
    )
    if done != n or counts.get("completed") != n:
        raise SystemExit(f"run {run}: handlers ran {done} times, {counts.get('completed')} completed, of {n}")
    return n / enqueue_s, n / seconds


def _drains(child: _Child) -> bool:
    """Whether the child's Worker has `run(drain=...)` (checked in this process: same package)."""
    from .worker import Worker

    return "drain" in inspect.signature(Worker.run).parameters


def _process_cpu(pid: Optional[int]) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc), 0 without one."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu(pid: Optional[int]) -> Dict[int, float]:
    """CPU seconds of each child of `pid` (a postmaster: its backends and helpers); empty without one."""
    if not pid:
        return {}
    found: Dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def _cpu_since(before: Dict[int, float], after: Dict[int, float]) -> float:
    """CPU the processes used between two `_children_cpu` snapshots (one that exited meanwhile is missed)."""
    return sum(cpu - before.get(p, 0.0) for p, cpu in after.items())


def _poll_until_done(client: Client, queue: str, n: int) -> None:
    while _counts(client, queue).get("completed", 0) < n:
        time.sleep(0.05)


def bench_main(args: argparse.Namespace) -> None:
    procs, enqueues = [], []
    for r in range(1, args.runs + 1):
        e, p = one_run(args, r)
        enqueues.append(e)
        procs.append(p)
    handler = "sync handler" if args.sync else "async handler"
    loop = ", uvloop" if args.uvloop else ""
    _log(f"processing runs: {[round(x) for x in procs]}; enqueue runs: {[round(x) for x in enqueues]}")
    print(
        f"wharf.Worker ({args.procs} procs x concurrency {args.concurrency}, {handler}{loop}, N={args.jobs}, "
        f"median of {args.runs}): {statistics.median(procs):.0f} jobs/s processed, "
        f"{statistics.median(enqueues):.0f} jobs/s enqueued (enqueueBatch 1000)",
        flush=True,
    )


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wharf.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "worker"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7411)
    ap.add_argument("--token", default=os.environ.get("WHARF_TOKEN"))
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sync", action="store_true", help="a plain handler (runs on the worker's threads)")
    ap.add_argument("--uvloop", action="store_true", help="run the workers' loops on uvloop (if installed)")
    ap.add_argument("--server-pid", type=int, help="the server's pid (same host): report its CPU per job")
    ap.add_argument(
        "--pg-pid", type=int, help="the postmaster's pid (same host): report its backends' CPU per job"
    )
    ap.add_argument("--queue", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode == "worker":
        worker_main(args)
    else:
        bench_main(args)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
