"""Start a real `wharf serve` for tests (this package's tests, the conformance suite, the lock workload).

Reads `WHARF_BIN` (the built binary) and `WHARF_TEST_DATABASE_URL` (a libpq conninfo such as
`host=/tmp/x port=5432 user=postgres dbname=postgres`, or a postgres:// URL); each server gets a
fresh database created beside it. `bash scripts/test.sh` sets both.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any, List, Optional
from urllib.parse import urlsplit, urlunsplit

HOW_TO_RUN = "run the suite with `bash scripts/test.sh` (it builds the server and starts a throwaway PostgreSQL)"


class MissingEnvironment(RuntimeError):
    """WHARF_BIN or WHARF_TEST_DATABASE_URL is not set."""


def database_url() -> str:
    """`WHARF_TEST_DATABASE_URL`, or `MissingEnvironment`."""
    url = os.environ.get("WHARF_TEST_DATABASE_URL")
    if not url:
        raise MissingEnvironment(f"WHARF_TEST_DATABASE_URL is not set: {HOW_TO_RUN}")
    return url


def wharf_bin() -> str:
    """`WHARF_BIN`, or `MissingEnvironment`."""
    path = os.environ.get("WHARF_BIN")
    if not path:
        raise MissingEnvironment(f"WHARF_BIN is not set: {HOW_TO_RUN}")
    if not os.path.exists(path):
        raise MissingEnvironment(f"WHARF_BIN={path} does not exist: {HOW_TO_RUN}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_dbname(conninfo: str, name: str) -> str:
    """The same connection settings, for database `name` (conninfo `key=value` pairs or a URL)."""
    if re.match(r"^postgres(ql)?://", conninfo):
        parts = urlsplit(conninfo)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    kept = [p for p in conninfo.split() if not p.startswith("dbname=")]
    return " ".join(kept + [f"dbname={name}"])


def fresh_database(prefix: str = "wharf_py") -> str:
    """Creates an empty database beside WHARF_TEST_DATABASE_URL and returns its conninfo."""
    base = database_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    done = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", base, "-c", f"create database {name}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"could not create database {name} with psql: {done.stderr.strip()}")
    return with_dbname(base, name)


class WharfServer:
    """`wharf serve --database <fresh db> --listen 127.0.0.1:<free port>`, returned once it answers a ping.

    Its log goes to a temporary file (`log_text()`), quoted when it fails to start.
    """

    def __init__(
        self,
        database: Optional[str] = None,
        extra_args: Optional[List[str]] = None,
        port: Optional[int] = None,
        startup_timeout: float = 30.0,
        ssl: Any = None,
    ) -> None:
        self.database = database or fresh_database()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra_args = list(extra_args or [])
        # The HTTP side door gets a free port of its own unless the test chose (or turned off) one.
        self.http_port: Optional[int] = None
        if not any(a == "--http-listen" or a.startswith("--http-listen=") for a in self.extra_args):
            self.http_port = free_port()
            self.extra_args += ["--http-listen", f"{self.host}:{self.http_port}"]
        self.ssl = ssl
        """With TLS flags in `extra_args`: the client context that trusts the server (pings and `client()`)."""
        self.log = tempfile.NamedTemporaryFile(prefix="wharf-serve-", suffix=".log", delete=False)
        args = [
            wharf_bin(),
            "serve",
            "--database",
            self.database,
            "--listen",
            f"{self.host}:{self.port}",
            "--log-level",
            "warning",
        ] + self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wharf serve exited with {self.proc.returncode}:\n{self.log_text()}")
            if self._answers_ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"wharf serve did not answer server.ping within {startup_timeout:.0f} s:\n{self.log_text()}")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as raw:
                s = self.ssl.wrap_socket(raw, server_hostname=self.host) if self.ssl is not None else raw
                s.sendall(b'{"jsonrpc":"2.0","method":"server.ping","id":1}\n')
                return b"pong" in s.recv(4096)
        except OSError:
            return False

    @property
    def http_url(self) -> str:
        """`http://127.0.0.1:<http port>` (only when this harness chose the HTTP port)."""
        if self.http_port is None:
            raise RuntimeError("this server's HTTP address was set by the test (or HTTP is off)")
        return f"http://{self.host}:{self.http_port}"

    @property
    def address(self) -> str:
        """`host:port`."""
        return f"{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> Any:
        """A `wharf.Client` for this server."""
        from .client import Client

        if self.ssl is not None:
            kwargs.setdefault("ssl", self.ssl)
        return Client(self.host, self.port, **kwargs)

    def log_text(self) -> str:
        """What the server wrote so far."""
        try:
            with open(self.log.name, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> Optional[int]:
        """Sends `sig` (SIGKILL for a crash) and waits for the exit; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass
        return self.proc.returncode

    def __enter__(self) -> "WharfServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
