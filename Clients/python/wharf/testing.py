"""Start a real `wharf serve` for tests (used by this package's tests and the conformance suite).

Reads `WHARF_BIN` (the binary) and `WHARF_TEST_DATABASE_URL` (a libpq conninfo; a fresh database is
created next to it for each server), as set by scripts/test.sh.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from typing import List, Optional


class MissingEnvironment(RuntimeError):
    pass


def database_url() -> str:
    url = os.environ.get("WHARF_TEST_DATABASE_URL")
    if not url:
        raise MissingEnvironment("WHARF_TEST_DATABASE_URL is not set: run the suite with `bash scripts/test.sh`")
    return url


def wharf_bin() -> str:
    path = os.environ.get("WHARF_BIN")
    if not path or not os.path.exists(path):
        raise MissingEnvironment("WHARF_BIN does not name the built wharf binary: run `bash scripts/test.sh`")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database() -> str:
    """Creates an empty database beside WHARF_TEST_DATABASE_URL and returns its conninfo."""
    base = database_url()
    name = "wharf_py_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", "-X", "-q", "-d", base, "-c", f"create database {name}"], check=True)
    parts = [p for p in base.split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={name}"])


class WharfServer:
    """`wharf serve --database <db> --listen 127.0.0.1:<free port>`, up once it answers a ping."""

    def __init__(self, database: Optional[str] = None, extra_args: Optional[List[str]] = None,
                 port: Optional[int] = None) -> None:
        self.database = database or fresh_database()
        self.port = port or free_port()
        args = [wharf_bin(), "serve", "--database", self.database, "--listen", f"127.0.0.1:{self.port}",
                "--log-level", "warning"] + (extra_args or [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("wharf serve exited: " + self.proc.stderr.read().decode(errors="replace"))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b'{"jsonrpc":"2.0","method":"server.ping","id":1}\n')
                    if b"pong" in s.recv(4096):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("wharf serve did not answer within 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
