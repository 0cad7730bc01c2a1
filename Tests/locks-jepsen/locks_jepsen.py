#!/usr/bin/env python3
"""A lock workload in the spirit of Jepsen's lock tests, against real `wharf serve` replicas.

Client processes loop: acquire a lock -> read a register -> pause (sometimes past the TTL, and the
nemesis also freezes whole client processes with SIGSTOP) -> write the register with the value read
plus one, presenting the fencing token -> release. Meanwhile one server replica is killed with SIGKILL
and restarted on the same port. The register is the resource the lock protects; in fenced mode it
refuses any read or write whose fencing token is lower than the highest it has seen.

Checked afterwards:
- from the servers' grant log (debug lines with PostgreSQL's timestamps): at no instant were two
  unexpired, unreleased grants of the lock outstanding, and every grant a client saw is in the log;
- fencing tokens are unique and strictly increase in grant order;
- fenced: the register lost no update (its value equals the number of writes it accepted);
- control (no fencing check in the register): the same workload loses updates, which shows that the
  test can see the bug the fencing token prevents.

A second workload, `mixed`, checks that jobs' lockKey and `locks.acquire` are one lock: half the
clients take the lock with `locks.acquire`, the other half by leasing jobs whose lockKey is the lock's
name (a producer keeps such jobs queued); every holder reads the register, increments it and writes it
back well within its lease, with no fencing check, while a replica is killed and restarted. Any
moment with two holders shows up as a lost update; fencing tokens from both kinds of grant must be
unique.

Standard library only. Needs a built `wharf` (WHARF_BIN) and a PostgreSQL conninfo whose user may
create databases (WHARF_TEST_DATABASE_URL); each run gets a fresh database.

    python3 locks_jepsen.py --duration 60 --clients 10            # fenced, control and mixed runs
    python3 locks_jepsen.py client ...                            # (internal) one client process
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


# --- JSON-RPC over TCP, one JSON text per line ------------------------------------------------------


class RPCError(Exception):
    def __init__(self, error):
        super().__init__(error.get("message"))
        self.code = error.get("code")
        self.data = error.get("data") or {}


class Connection:
    """A blocking JSON-RPC connection: one call at a time."""

    def __init__(self, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.reader = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        self.sock.sendall(line.encode() + b"\n")
        while True:
            raw = self.reader.readline()
            if not raw:
                raise ConnectionError("server closed the connection")
            msg = json.loads(raw)
            if msg.get("id") != self.next_id:
                continue
            if "error" in msg:
                raise RPCError(msg["error"])
            return msg["result"]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- The protected resource ------------------------------------------------------------------------


class Register:
    """A number behind a line-JSON TCP service; with fencing it refuses tokens below the highest seen."""

    def __init__(self, fenced):
        self.fenced = fenced
        self.value = 0
        self.max_token = 0
        self.accepted = 0
        self.rejected = 0
        self.lock = threading.Lock()

    def handle(self, req):
        token = req["token"]
        with self.lock:
            if self.fenced and token < self.max_token:
                self.rejected += 1
                return {"ok": False}
            self.max_token = max(self.max_token, token)
            if req["op"] == "read":
                return {"ok": True, "value": self.value}
            self.value = req["value"]
            self.accepted += 1
            return {"ok": True}

    def serve(self):
        register = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    self.wfile.write(json.dumps(register.handle(json.loads(line))).encode() + b"\n")

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


# --- One client process ----------------------------------------------------------------------------


class ClientSetup:
    """What every client process starts with: its arguments, a stop flag set by SIGTERM, a random
    source, its output file and its connection to the register."""

    def __init__(self, argv, extra_options=(), seed=7919):
        p = argparse.ArgumentParser()
        p.add_argument("--id", type=int, required=True)
        p.add_argument("--ports", required=True)
        p.add_argument("--register", type=int, required=True)
        p.add_argument("--name", required=True)
        p.add_argument("--ttl-ms", type=int, required=True)
        p.add_argument("--out", required=True)
        for flag, kwargs in extra_options:
            p.add_argument(flag, **kwargs)
        self.args = a = p.parse_args(argv)
        self.stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        self.rng = random.Random(a.id * seed + os.getpid())
        self.ports = [int(x) for x in a.ports.split(",")]
        self.out = open(a.out, "w", buffering=1)
        self.reg = socket.create_connection(("127.0.0.1", a.register))
        self.reg_reader = self.reg.makefile("rb")

    def register(self, op, token, value=None):
        self.reg.sendall(json.dumps({"op": op, "token": token, "value": value}).encode() + b"\n")
        return json.loads(self.reg_reader.readline())


def client_main(argv):
    c = ClientSetup(argv)
    a, stop, rng, ports, out, register = c.args, c.stop, c.rng, c.ports, c.out, c.register
    ttl = a.ttl_ms / 1000
    holder = f"c{a.id}"

    conn, k = None, a.id
    while not stop.is_set():
        request_id = str(uuid.uuid4())
        grant = None
        # Acquire, retrying with the same requestId on either replica after a lost reply.
        for _ in range(20):
            if stop.is_set():
                break
            try:
                if conn is None:
                    conn = Connection(ports[k % len(ports)], timeout=5)
                grant = conn.call(
                    "locks.acquire",
                    {"name": a.name, "holder": holder, "ttlMs": a.ttl_ms, "waitMs": 1000, "requestId": request_id},
                )
                break
            except (OSError, ConnectionError, ValueError, RPCError):
                if conn is not None:
                    conn.close()
                conn, k = None, k + 1
                time.sleep(0.05)
        if not grant or not grant.get("granted"):
            continue
        fencing = grant["fencingToken"]
        out.write(json.dumps({"grant": fencing, "holder": holder, "expiresAt": grant["expiresAt"]}) + "\n")
        seen = register("read", fencing)
        # A process pause: usually short, sometimes past the lease (the nemesis adds SIGSTOPs).
        time.sleep(ttl * rng.uniform(1.2, 2.0) if rng.random() < 0.2 else rng.uniform(0, ttl / 5))
        if seen["ok"]:
            wrote = register("write", fencing, seen["value"] + 1)
            out.write(json.dumps({"write": fencing, "ok": wrote["ok"]}) + "\n")
        try:
            if conn is not None:
                conn.call("locks.release", {"name": a.name, "token": grant["token"]})
        except RPCError:
            pass  # lease_lost: it expired while we were paused
        except (OSError, ConnectionError, ValueError):
            if conn is not None:
                conn.close()
            conn, k = None, k + 1
    out.close()


def mixed_client_main(argv):
    """Holds the lock through `locks.acquire` (mode lock) or by leasing keyed jobs (mode job), and
    increments the register while it holds it."""
    c = ClientSetup(argv, [("--mode", {"choices": ["lock", "job"], "required": True})], seed=104729)
    a, stop, rng, ports, out, register = c.args, c.stop, c.rng, c.ports, c.out, c.register
    holder = f"{a.mode}{a.id}"

    conn, k = None, a.id
    while not stop.is_set():
        try:
            if conn is None:
                conn = Connection(ports[k % len(ports)], timeout=5)
            if a.mode == "lock":
                grant = conn.call("locks.acquire", {"name": a.name, "holder": holder, "ttlMs": a.ttl_ms, "waitMs": 1000})
                if not grant.get("granted"):
                    continue
                fencing, job = grant["fencingToken"], None
            else:
                # Polls: a long poll is woken by new jobs, not by the lock coming free.
                jobs = conn.call("jobs.lease", {"queues": [a.name], "max": 1, "leaseMs": a.ttl_ms, "worker": holder})[
                    "jobs"]
                if not jobs:
                    time.sleep(0.005)
                    continue
                job = jobs[0]
                fencing = job["fencingToken"]
            started = time.monotonic()
            seen = register("read", fencing)
            time.sleep(rng.uniform(0, a.ttl_ms / 1000 / 40))
            # Write only well within the lease, so a holder never goes stale: two holders at once can
            # only be the lock service's fault.
            if time.monotonic() - started < a.ttl_ms / 1000 / 4:
                register("write", fencing, seen["value"] + 1)
                out.write(json.dumps({"mode": a.mode, "grant": fencing, "write": True}) + "\n")
            else:
                out.write(json.dumps({"mode": a.mode, "grant": fencing, "write": False}) + "\n")
            if job is None:
                conn.call("locks.release", {"name": a.name, "token": grant["token"]})
                # Think time, so that the line of waiting lock clients empties now and then: a lease
                # is a try-lock and never jumps the line.
                time.sleep(rng.uniform(0, 0.1))
            else:
                conn.call("jobs.complete", {"id": job["id"], "leaseToken": job["leaseToken"]})
        except RPCError:
            pass
        except (OSError, ConnectionError, ValueError):
            if conn is not None:
                conn.close()
            conn, k = None, k + 1
            time.sleep(0.05)
    out.close()


# --- The harness -----------------------------------------------------------------------------------


def conninfo_for(base, dbname):
    """The same connection settings with another database: libpq key=value pairs or a URL."""
    if base.startswith(("postgres://", "postgresql://")):
        head, _, query = base.partition("?")
        scheme, _, rest = head.partition("://")
        hostpart = rest.split("/", 1)[0]
        return f"{scheme}://{hostpart}/{dbname}" + (f"?{query}" if query else "")
    parts = [p for p in base.split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={dbname}"])


def psql(conninfo, sql):
    return subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """`wharf serve` on a fixed port, its stderr (the grant log) in a file per incarnation."""

    def __init__(self, binary, database, port, logdir, label):
        self.binary, self.database, self.port, self.logdir, self.label = binary, database, port, logdir, label
        self.incarnation = 0
        self.logs = []
        self.proc = None

    def start(self):
        self.incarnation += 1
        log = os.path.join(self.logdir, f"{self.label}-{self.incarnation}.log")
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--database", self.database, "--listen", f"127.0.0.1:{self.port}",
             "--log-level", "debug"],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"),
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                c = Connection(self.port, timeout=2)
                c.call("server.ping", {})
                c.close()
                return
            except (OSError, ConnectionError, ValueError, RPCError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.label} exited: {open(log).read()[-2000:]}")
                time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


LOG_LINE = re.compile(r"(?P<meta>(?: \w+=\S+)+) \[WharfServer\] lock (?P<event>granted|renewed|released)$")


def read_grant_log(paths, name):
    """Per fencing token: holder, start (acquired), end of lease, release time (epoch milliseconds of the PG
    clock, rounded down: rounding keeps the order of two instants, though not an overlap shorter than 1 ms)."""
    grants = {}
    problems = []
    for path in paths:
        for line in open(path, errors="replace"):
            m = LOG_LINE.search(line.rstrip("\n"))
            if not m:
                continue
            meta = dict(kv.split("=", 1) for kv in m.group("meta").split())
            if meta.get("lock") != name:
                continue
            f = int(meta["fencing"])
            g = grants.setdefault(f, {"fencing": f, "holder": None, "start": None, "end": None, "released": None})
            if m.group("event") == "granted":
                start, end = int(meta["acquired_ms"]), int(meta["expires_ms"])
                if g["start"] is not None and (g["start"], g["holder"]) != (start, meta["holder"]):
                    problems.append(f"fencing token {f} granted twice: {g} and {meta}")
                g["holder"], g["start"] = meta["holder"], start
                g["end"] = max(g["end"] or 0, end)
            elif m.group("event") == "renewed":
                g["end"] = max(g["end"] or 0, int(meta["expires_ms"]))
            else:
                g["released"] = int(meta["released_ms"])
    return grants, problems


def check(grants, log_problems, client_grants):
    """Returns a list of violations (empty when the history is fine)."""
    problems = list(log_problems)
    unknown = [f for f in client_grants if f not in grants or grants[f]["start"] is None]
    if unknown:
        problems.append(f"clients saw grants missing from the server log: {sorted(unknown)[:10]}")
    history = sorted((g for g in grants.values() if g["start"] is not None), key=lambda g: g["start"])
    for prev, cur in zip(history, history[1:]):
        if cur["fencing"] <= prev["fencing"]:
            problems.append(f"fencing token {cur['fencing']} granted after {prev['fencing']}")
    # No instant with two unexpired, unreleased grants: each grant starts after every earlier one ended.
    held_until, by = 0, None
    for g in history:
        if g["start"] < held_until:
            problems.append(
                f"grant {g['fencing']} ({g['holder']}) at {g['start']} overlaps grant {by} held until {held_until}")
        end = min(g["end"], g["released"]) if g["released"] is not None else g["end"]
        if end > held_until:
            held_until, by = end, g["fencing"]
    return problems, history


class Cluster:
    """A fresh database with two replicas on it, the register, and the client processes; `close` stops
    them all and drops the database."""

    def __init__(self, binary, base_conninfo, workdir, fenced):
        self.base_conninfo = base_conninfo
        self.db = "wharf_jepsen_" + uuid.uuid4().hex[:10]
        psql(base_conninfo, f"create database {self.db}")
        database = conninfo_for(base_conninfo, self.db)
        self.register = Register(fenced)
        self.reg_server = self.register.serve()
        self.replicas = [Replica(binary, database, free_port(), workdir, label) for label in ("a", "b")]
        self.procs = []
        self.workdir = workdir

    def start(self):
        for r in self.replicas:
            r.start()

    def spawn(self, name, clients, ttl_ms, role, extra=lambda i: []):
        """Starts `clients` client processes (`role`: client or mixed-client); returns their output files."""
        ports = ",".join(str(r.port) for r in self.replicas)
        outs = [os.path.join(self.workdir, f"{name}-client-{i}.jsonl") for i in range(clients)]
        for i in range(clients):
            self.procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), role, "--id", str(i), "--ports", ports,
                 "--register", str(self.reg_server.server_address[1]), "--name", name, "--ttl-ms", str(ttl_ms),
                 "--out", outs[i]] + extra(i)))
        return outs

    def kill_and_restart(self, name, log):
        log(f"{name}: kill -9 replica a (port {self.replicas[0].port})")
        self.replicas[0].kill()
        time.sleep(0.3)
        self.replicas[0].start()

    def stop_clients(self):
        for p in self.procs:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
        for r in self.replicas:
            r.stop()
        self.reg_server.shutdown()
        try:
            psql(self.base_conninfo, f"drop database if exists {self.db} with (force)")
        except subprocess.CalledProcessError:
            pass


def read_outputs(outs):
    for path in outs:
        if os.path.exists(path):
            for line in open(path):
                yield json.loads(line)


def run(binary, base_conninfo, fenced, duration, clients, ttl_ms, workdir, kill_replica=True, log=print):
    """One run: fresh database, two replicas, the clients, the nemesis. Returns a result dict."""
    name = "jepsen-" + ("fenced" if fenced else "control")
    cluster = Cluster(binary, base_conninfo, workdir, fenced)
    try:
        cluster.start()
        outs = cluster.spawn(name, clients, ttl_ms, "client")
        procs = cluster.procs
        stopped = {"n": 0}
        done = threading.Event()

        def nemesis():
            rng = random.Random(42)
            while not done.is_set():
                done.wait(rng.uniform(0.2, 0.6))
                if done.is_set():
                    break
                victim = rng.choice(procs)
                if victim.poll() is not None:
                    continue
                victim.send_signal(signal.SIGSTOP)
                stopped["n"] += 1
                time.sleep(ttl_ms / 1000 * rng.uniform(1.2, 2.5))
                victim.send_signal(signal.SIGCONT)

        pauser = threading.Thread(target=nemesis, daemon=True)
        pauser.start()
        time.sleep(duration / 2)
        if kill_replica:
            cluster.kill_and_restart(name, log)
        time.sleep(duration / 2)
        done.set()
        pauser.join()
        cluster.stop_clients()
        for r in cluster.replicas:
            r.stop()
        client_grants = {e["grant"] for e in read_outputs(outs) if "grant" in e}
        grants, log_problems = read_grant_log([p for r in cluster.replicas for p in r.logs], name)
        problems, history = check(grants, log_problems, client_grants)
        register = cluster.register
        result = {
            "name": name, "fenced": fenced, "grants": len(history), "clientGrants": len(client_grants),
            "registerValue": register.value, "acceptedWrites": register.accepted, "rejected": register.rejected,
            "lostUpdates": register.accepted - register.value, "sigstops": stopped["n"], "problems": problems,
        }
        log(json.dumps(result))
        return result
    finally:
        cluster.close()


def run_mixed(binary, base_conninfo, duration, clients, ttl_ms, workdir, log=print):
    """The mixed workload: lock clients and job workers on one name, a replica killed midway."""
    name = "jepsen-mixed"
    cluster = Cluster(binary, base_conninfo, workdir, fenced=False)
    done = threading.Event()
    try:
        cluster.start()

        def producer():
            # Keeps some jobs with lockKey = name queued, on whichever replica answers.
            k = 0
            while not done.is_set():
                try:
                    c = Connection(cluster.replicas[k % 2].port, timeout=5)
                    while not done.is_set():
                        queued = c.call("queues.stats", {"queue": name})["counts"].get("available", 0)
                        if queued < 20:
                            c.call("jobs.enqueueBatch", {"jobs": [{"queue": name, "kind": "mixed", "lockKey": name}
                                                                  for _ in range(20)]})
                        done.wait(0.05)
                except (OSError, ConnectionError, ValueError, RPCError):
                    k += 1
                    done.wait(0.1)

        feeder = threading.Thread(target=producer, daemon=True)
        feeder.start()
        outs = cluster.spawn(name, clients, ttl_ms, "mixed-client",
                             extra=lambda i: ["--mode", "lock" if i % 2 == 0 else "job"])
        time.sleep(duration / 2)
        cluster.kill_and_restart(name, log)
        time.sleep(duration / 2)
        done.set()
        feeder.join()
        cluster.stop_clients()
        holds = {"lock": 0, "job": 0}
        tokens = []
        for e in read_outputs(outs):
            holds[e["mode"]] += 1
            tokens.append(e["grant"])
        problems = []
        if len(tokens) != len(set(tokens)):
            problems.append(f"{len(tokens) - len(set(tokens))} fencing tokens were handed out twice")
        register = cluster.register
        result = {
            "name": name, "lockHolds": holds["lock"], "jobHolds": holds["job"], "registerValue": register.value,
            "acceptedWrites": register.accepted, "lostUpdates": register.accepted - register.value,
            "problems": problems,
        }
        log(json.dumps(result))
        return result
    finally:
        done.set()
        cluster.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        return client_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "mixed-client":
        return mixed_client_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.environ.get("WHARF_BIN", os.path.join(HERE, "../../.build/debug/wharf")))
    p.add_argument("--database", default=os.environ.get("WHARF_TEST_DATABASE_URL"))
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--ttl-ms", type=int, default=300)
    p.add_argument("--no-control", action="store_true", help="skip the control run without fencing")
    a = p.parse_args()
    if not a.database:
        sys.exit("set WHARF_TEST_DATABASE_URL or pass --database")
    with tempfile.TemporaryDirectory(prefix="wharf-jepsen-") as workdir:
        fenced = run(a.binary, a.database, True, a.duration, a.clients, a.ttl_ms, workdir)
        ok = not fenced["problems"] and fenced["lostUpdates"] == 0
        if not a.no_control:
            control = run(a.binary, a.database, False, a.duration, a.clients, a.ttl_ms, workdir)
            ok = ok and not control["problems"] and control["lostUpdates"] > 0
        mixed = run_mixed(a.binary, a.database, a.duration, a.clients, 2000, workdir)
        ok = ok and not mixed["problems"] and mixed["lostUpdates"] == 0
    print("ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
