"""Starts a real `wharf serve` on a fresh database for the protocol conformance tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest


def _database_url() -> str:
    url = os.environ.get("WHARF_TEST_DATABASE_URL")
    if not url:
        pytest.fail("WHARF_TEST_DATABASE_URL is not set: run the suite with `bash scripts/test.sh`")
    return url


def _wharf_bin() -> str:
    path = os.environ.get("WHARF_BIN")
    if not path or not os.path.exists(path):
        pytest.fail("WHARF_BIN does not name the built wharf binary: run the suite with `bash scripts/test.sh`")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database() -> str:
    base = _database_url()
    name = "wharf_py_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", "-X", "-q", "-d", base, "-c", f"create database {name}"], check=True)
    parts = [p for p in base.split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={name}"])


class WharfServer:
    def __init__(self, database: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [_wharf_bin(), "serve", "--database", database, "--listen", f"127.0.0.1:{self.port}", "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
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
        raise RuntimeError("wharf serve did not answer within 30 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server():
    s = WharfServer(fresh_database())
    yield s
    s.stop()
