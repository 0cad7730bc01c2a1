"""TLS on the JSON-RPC port, against a real `wharf serve` over real TCP.

Every certificate is made at test time with the `openssl` command: a CA, server certificates for
127.0.0.1 (one valid, one already expired, one to reload), client certificates whose common names the
server maps to roles, and a second CA nobody trusts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import Dict, List, Tuple

import pytest
from hostile import rss_bytes

from wharf import Client
from wharf.aio import AsyncClient
from wharf.errors import WharfError
from wharf.testing import WharfServer, wharf_bin

ADMIN_TOKEN = "tls-admin-secret"


def openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class PKI:
    """Certificates in one directory; each is (certificate PEM path, key PEM path)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.serial = 1

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def ca(self, name: str) -> Tuple[str, str]:
        pem, key = self.path(f"{name}.pem"), self.path(f"{name}.key")
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", pem, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )
        return pem, key

    def issue(self, ca: Tuple[str, str], name: str, cn: str, *, server: bool, days: int = 2) -> Tuple[str, str]:
        pem, key, csr, ext = (self.path(f"{name}.{x}") for x in ("pem", "key", "csr", "ext"))
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={cn}",
        )
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
            f.write("subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
            if server:
                f.write("extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        self.serial += 1
        openssl(
            "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", str(self.serial),
            "-out", pem, "-days", str(days), "-extfile", ext,
        )
        return pem, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Tuple[str, str]]:
    p = PKI(str(tmp_path_factory.mktemp("pki")))
    ca = p.ca("wharf-test-ca")
    other = p.ca("untrusted-ca")
    return {
        "ca": ca,
        "other": other,
        "server": p.issue(ca, "server", "localhost", server=True),
        "reloaded": p.issue(ca, "reloaded", "wharf-reloaded", server=True),
        "expired": p.issue(ca, "expired", "localhost", server=True, days=-1),
        "reader": p.issue(ca, "reader", "reader-1", server=False),
        "producer": p.issue(ca, "producer", "producer-1", server=False),
        "stranger": p.issue(other, "stranger", "producer-1", server=False),
    }


def context(pki: Dict[str, Tuple[str, str]], ca: str = "ca", cert: str = "") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki[ca][0])
    if cert:
        ctx.load_cert_chain(*pki[cert])
    return ctx


@pytest.fixture(scope="module")
def server(pki: Dict[str, Tuple[str, str]]) -> WharfServer:
    """TLS with client certificates: reader-1 is a reader, producer-1 a producer; others need a token."""
    args = [
        "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1], "--tls-client-ca", pki["ca"][0],
        "--tls-client-role", "reader-1=reader", "--tls-client-role", "producer-1=producer",
        "--token", f"admin:{ADMIN_TOKEN}",
    ]
    with WharfServer(extra_args=args, ssl=context(pki)) as s:
        yield s


def cli(server: WharfServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [wharf_bin(), "call", "--server", server.address, *args], capture_output=True, text=True, timeout=30
    )


def test_handshake_and_calls(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    with server.client(token=ADMIN_TOKEN).connect() as c:
        assert c.role == "admin"
        job = c.call("jobs.enqueue", queue="tls", kind="hello", payload={"over": "tls"})
        assert c.call("jobs.get", id=job["id"])["payload"] == {"over": "tls"}
        # A reply larger than many TLS records comes back whole.
        big = "x" * 200_000
        job = c.call("jobs.enqueue", queue="tls", kind="big", payload={"blob": big})
        assert c.call("jobs.get", id=job["id"])["payload"]["blob"] == big

    async def run_async() -> str:
        async with AsyncClient(server.host, server.port, token=ADMIN_TOKEN, ssl=context(pki)) as a:
            return await a.call("server.ping")

    import asyncio

    assert asyncio.run(run_async()) == "pong"

    done = cli(server, "--ca-file", pki["ca"][0], "server.ping")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"pong"'


def test_client_refuses_a_server_signed_by_another_ca(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(server.host, server.port, ssl=context(pki, ca="other")).connect()
    # True trusts only the system's store, where the test CA is not.
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(server.host, server.port, ssl=True).connect()
    done = cli(server, "--ca-file", pki["other"][0], "server.ping")
    assert done.returncode != 0
    assert "certificate verify failed" in done.stderr
    # The server is unharmed.
    with server.client(token=ADMIN_TOKEN) as c:
        assert c.call("server.ping") == "pong"


def test_expired_server_certificate_is_refused(pki: Dict[str, Tuple[str, str]]) -> None:
    args = ["--tls-cert", pki["expired"][0], "--tls-key", pki["expired"][1]]
    # The server starts (an operator may be replacing the file), but no verifying client accepts it.
    with _expired(args) as s:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            Client(s.host, s.port, ssl=context(pki)).connect()
        done = cli(s, "--ca-file", pki["ca"][0], "server.ping")
        assert done.returncode != 0
        assert "certificate has expired" in done.stderr


def _expired(args: List[str]) -> WharfServer:
    """A server whose certificate expired: its readiness ping skips verification (CERT_NONE)."""
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    return WharfServer(extra_args=args, ssl=lax)


def test_client_certificates_map_to_roles(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    with server.client(ssl=context(pki, cert="reader")).connect() as reader:
        assert reader.role == "reader"
        assert reader.call("server.ping") == "pong"
        with pytest.raises(WharfError) as refused:
            reader.call("jobs.enqueue", queue="tls", kind="nope")
        assert refused.value.code == -32002
    with server.client(ssl=context(pki, cert="producer")).connect() as producer:
        assert producer.role == "producer"
        assert producer.call("jobs.enqueue", queue="tls", kind="ok")["state"] == "available"
    # Without a certificate or a token there is no role.
    with pytest.raises(WharfError) as anonymous:
        server.client().connect()
    assert anonymous.value.code == -32001
    # A certificate with a mapped name from a CA the server does not trust ends the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with server.client(ssl=context(pki, cert="stranger")) as c:
            c.call("jobs.enqueue", queue="tls", kind="nope")
    # The CLI presents certificates too.
    done = cli(server, "--ca-file", pki["ca"][0], "--cert", pki["reader"][0], "--key", pki["reader"][1],
               "jobs.enqueue", '{"queue":"tls","kind":"nope"}')
    assert done.returncode == 2 and "forbidden" in done.stderr.lower() + done.stdout.lower(), done.stderr
    done = cli(server, "--ca-file", pki["ca"][0], "--cert", pki["producer"][0], "--key", pki["producer"][1],
               "jobs.enqueue", '{"queue":"tls","kind":"cli"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "available"


def peer_common_name(host: str, port: int, ctx: ssl.SSLContext) -> str:
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            return subject["commonName"]


def test_sighup_reloads_the_certificate_for_new_connections(
    pki: Dict[str, Tuple[str, str]], tmp_path: "os.PathLike[str]"
) -> None:
    cert, key = os.path.join(tmp_path, "live.pem"), os.path.join(tmp_path, "live.key")
    shutil.copy(pki["server"][0], cert)
    shutil.copy(pki["server"][1], key)
    with WharfServer(extra_args=["--tls-cert", cert, "--tls-key", key], ssl=context(pki)) as s:
        assert peer_common_name(s.host, s.port, context(pki)) == "localhost"
        with s.client() as open_before:
            assert open_before.call("server.ping") == "pong"
            shutil.copy(pki["reloaded"][0], cert)
            shutil.copy(pki["reloaded"][1], key)
            s.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while peer_common_name(s.host, s.port, context(pki)) != "wharf-reloaded":
                assert time.monotonic() < deadline, "new connections still get the old certificate"
                time.sleep(0.05)
            # The connection opened before the reload keeps working, on its session.
            assert open_before.call("server.ping") == "pong"
            assert open_before.connects == 1
        # A reload that fails (a key that does not match) keeps the certificate being served.
        shutil.copy(pki["server"][1], key)
        s.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert s.running
        assert peer_common_name(s.host, s.port, context(pki)) == "wharf-reloaded"
        assert "TLS reload failed" in s.log_text()


def test_plaintext_client_gets_a_clear_close(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    for _ in range(20):
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"server.ping"}\n')
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        assert reply["id"] is None
        assert reply["error"]["data"]["reason"] == "tls_required"
        assert "TLS" in reply["error"]["message"]
    done = cli(server, "server.ping")
    assert done.returncode != 0
    assert "this port speaks TLS" in done.stderr
    with pytest.raises(ConnectionError, match="this port speaks TLS"):
        Client(server.host, server.port, token=ADMIN_TOKEN).connect()
    # The server stays healthy: TLS clients are answered promptly.
    with server.client(token=ADMIN_TOKEN) as c:
        started = time.perf_counter()
        for _ in range(50):
            assert c.call("server.ping") == "pong"
        assert (time.perf_counter() - started) / 50 < 0.05


def test_pipelined_load_across_connections(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    connections, per_connection = 20, 500
    answered: List[int] = []
    errors: List[str] = []

    def run(n: int) -> None:
        try:
            with socket.create_connection((server.host, server.port), timeout=30) as raw:
                with context(pki).wrap_socket(raw, server_hostname=server.host) as s:
                    lines = b"".join(
                        json.dumps({"jsonrpc": "2.0", "id": i, "method": "server.ping"}).encode() + b"\n"
                        for i in range(per_connection)
                    )
                    s.sendall(lines)
                    f = s.makefile("rb")
                    ids = set()
                    for _ in range(per_connection):
                        reply = json.loads(f.readline())
                        assert reply["result"] == "pong", reply
                        ids.add(reply["id"])
                    assert ids == set(range(per_connection))
                    answered.append(len(ids))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"connection {n}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(answered) == connections * per_connection == 10_000
    with server.client(token=ADMIN_TOKEN) as c:
        assert c.call("server.ping") == "pong"


def test_non_loopback_listener_needs_tls_or_insecure_plaintext(pki: Dict[str, Tuple[str, str]]) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    base = [wharf_bin(), "serve", "--database", "host=/nonexistent", "--listen", f"0.0.0.0:{free}"]
    refused = subprocess.run(base + ["--token", "admin:x"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "without TLS" in refused.stderr and "--insecure-plaintext" in refused.stderr
    no_tokens = subprocess.run(base + ["--insecure-plaintext"], capture_output=True, text=True, timeout=30)
    assert no_tokens.returncode != 0 and "without tokens" in no_tokens.stderr
    # With the flag (or with TLS) it starts; the last --listen wins over the harness's loopback one.
    for extra in (["--insecure-plaintext"], ["--tls-cert", pki["server"][0], "--tls-key", pki["server"][1]]):
        tls = context(pki) if extra[0] == "--tls-cert" else None
        args = ["--listen", f"0.0.0.0:{free}", "--token", f"admin:{ADMIN_TOKEN}", *extra]
        with WharfServer(extra_args=args, port=free, ssl=tls) as s:
            with s.client(token=ADMIN_TOKEN) as c:
                assert c.call("server.ping") == "pong"


def test_a_handshake_that_never_finishes_is_closed(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    """A peer that opens a TLS record and stalls (a slowloris handshake) is closed at the 10 s deadline."""
    with socket.create_connection((server.host, server.port), timeout=15) as s:
        started = time.monotonic()
        s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello record, never finished
        with server.client(token=ADMIN_TOKEN) as c:  # others are served meanwhile
            assert c.call("server.ping") == "pong"
        assert s.recv(4096) == b""
        waited = time.monotonic() - started
    assert 9.5 <= waited <= 12, waited


def test_a_refusal_reaches_a_tls_client(pki: Dict[str, Tuple[str, str]]) -> None:
    """Past --max-connections the error line is written after the handshake, then the connection closes."""
    args = ["--tls-cert", pki["server"][0], "--tls-key", pki["server"][1], "--max-connections", "1"]
    with WharfServer(extra_args=args, ssl=context(pki)) as s:
        with s.client().connect() as first:
            with socket.create_connection((s.host, s.port), timeout=5) as raw:
                with context(pki).wrap_socket(raw, server_hostname=s.host) as second:
                    reply = json.loads(second.makefile("rb").readline())
            assert reply["error"]["data"]["limit"] == "connections"
            assert first.call("server.ping") == "pong"


def test_worker_runs_jobs_over_tls(server: WharfServer, pki: Dict[str, Tuple[str, str]]) -> None:
    import wharf

    queue = f"tls-worker-{os.getpid()}"
    worker = wharf.Worker([queue], port=server.port, token=ADMIN_TOKEN, ssl=context(pki), poll_ms=300)

    @worker.task("double")
    def double(payload: Dict[str, int]) -> int:
        return payload["n"] * 2

    with server.client(token=ADMIN_TOKEN) as c:
        job = c.call("jobs.enqueue", queue=queue, kind="double", payload={"n": 21})
        t = worker.run_in_thread()
        try:
            deadline = time.monotonic() + 10
            while c.call("jobs.get", id=job["id"])["state"] != "completed":
                assert time.monotonic() < deadline, "the TLS worker did not complete the job"
                time.sleep(0.05)
            assert c.call("jobs.get", id=job["id"])["result"] == 42
        finally:
            worker.stop()
            t.join(5)


def test_a_handshake_flood_does_not_stall_other_connections(
    server: WharfServer, pki: Dict[str, Tuple[str, str]]
) -> None:
    """Handshakes run on the loop: four threads shaking hands as fast as they can (with client
    certificates, the costliest kind) must leave an established connection's pings fast."""
    stop = threading.Event()
    handshakes: List[int] = []

    def flood() -> None:
        ctx = context(pki, cert="producer")
        n = 0
        while not stop.is_set():
            with socket.create_connection((server.host, server.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=server.host) as s:
                    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"server.ping"}\n')
                    s.recv(100)
            n += 1
        handshakes.append(n)

    rss_before = rss_bytes(server.proc.pid)
    latencies: List[float] = []
    with server.client(token=ADMIN_TOKEN).connect() as c:
        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                started = time.perf_counter()
                assert c.call("server.ping") == "pong"
                latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"{sum(handshakes)} handshakes in 5 s; ping p50 {latencies[len(latencies) // 2]:.2f} ms, p99 {p99:.2f} ms")
    assert sum(handshakes) > 100, handshakes
    assert p99 < 50, f"ping p99 {p99:.1f} ms during {sum(handshakes)} handshakes"
    assert rss_bytes(server.proc.pid) - rss_before < 64 << 20
