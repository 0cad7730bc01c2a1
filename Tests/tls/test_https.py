"""HTTPS on the HTTP listener: the RPC port's certificate and rules, against a real `wharf serve`.

With `--tls-cert`/`--tls-key` the HTTP side door (/healthz, /readyz, /metrics, POST /rpc) speaks HTTPS
too: same certificate (reloaded on SIGHUP with it), same client-certificate roles, a plaintext client gets
a clear 400 and a close, and a non-loopback HTTP listener needs TLS unless --insecure-plaintext.
Certificates come from test_tls.py's PKI (made with the `openssl` command at test time).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_tls import ADMIN_TOKEN, PKI, context, peer_common_name
from wharf.testing import WharfServer, free_port, wharf_bin


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    p = PKI(str(tmp_path_factory.mktemp("https-pki")))
    ca = p.ca("wharf-https-ca")
    return {
        "ca": ca,
        "server": p.issue(ca, "server", "localhost", server=True),
        "reloaded": p.issue(ca, "reloaded", "wharf-reloaded", server=True),
        "producer": p.issue(ca, "producer", "producer-1", server=False),
    }


@pytest.fixture(scope="module")
def server(pki: dict[str, tuple[str, str]]) -> WharfServer:
    args = [
        "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1], "--tls-client-ca", pki["ca"][0],
        "--tls-client-role", "producer-1=producer", "--token", f"admin:{ADMIN_TOKEN}",
    ]  # fmt: skip
    with WharfServer(extra_args=args, ssl=context(pki)) as s:
        yield s


def https(server: WharfServer, method: str, path: str, ctx: ssl.SSLContext, body=None, token=None):
    """One HTTPS request; (status, parsed JSON body)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    url = f"https://{server.host}:{server.http_port}{path}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def rpc(method: str, params=None) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


def test_healthz_readyz_and_post_rpc_over_https(server: WharfServer, pki: dict[str, tuple[str, str]]) -> None:
    ctx = context(pki)
    assert https(server, "GET", "/healthz", ctx)[0] == 200
    status, ready = https(server, "GET", "/readyz", ctx)
    assert status == 200 and ready["status"] == "ready"
    status, reply = https(server, "POST", "/rpc", ctx, rpc("server.ping"), token=ADMIN_TOKEN)
    assert status == 200 and reply["result"] == "pong"
    enqueue = rpc("jobs.enqueue", {"queue": "https", "kind": "k"})
    # Without a token or a mapped certificate a producer's method is refused...
    assert https(server, "POST", "/rpc", ctx, enqueue)[1]["error"]["data"]["reason"] == "unauthorized"
    # ...and the client certificate producer-1 is a producer, as on the RPC port.
    status, reply = https(server, "POST", "/rpc", context(pki, cert="producer"), enqueue)
    assert status == 200 and reply["result"]["state"] == "available", reply
    assert https(server, "POST", "/rpc", ctx, enqueue, token="wrong")[0] == 401


def test_curl_speaks_https_to_it(server: WharfServer, pki: dict[str, tuple[str, str]]) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    base = f"https://{server.host}:{server.http_port}"
    done = subprocess.run(
        ["curl", "-sS", "--cacert", pki["ca"][0], "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
         "-d", json.dumps(rpc("server.ping")), f"{base}/rpc"],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "pong"
    untrusted = subprocess.run(["curl", "-sS", f"{base}/healthz"], check=False, capture_output=True, text=True)
    assert untrusted.returncode != 0  # the system's trust store does not know the test CA


def test_plaintext_http_on_the_https_port_gets_a_clear_400_and_a_close(
    server: WharfServer, pki: dict[str, tuple[str, str]]
) -> None:
    for _ in range(5):
        with socket.create_connection((server.host, server.http_port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), data
        assert json.loads(body)["reason"] == "tls_required"
    # TLS clients are still answered.
    assert https(server, "GET", "/healthz", context(pki))[0] == 200


def http_common_name(server: WharfServer, ctx: ssl.SSLContext) -> str:
    return peer_common_name(server.host, server.http_port, ctx)


def test_sighup_reloads_the_https_certificate(pki: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    cert, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(pki["server"][0], cert)
    shutil.copy(pki["server"][1], key)
    with WharfServer(extra_args=["--tls-cert", cert, "--tls-key", key], ssl=context(pki)) as s:
        assert http_common_name(s, context(pki)) == "localhost"
        shutil.copy(pki["reloaded"][0], cert)
        shutil.copy(pki["reloaded"][1], key)
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while http_common_name(s, context(pki)) != "wharf-reloaded":
            assert time.monotonic() < deadline, "new HTTPS connections still get the old certificate"
            time.sleep(0.05)
        assert https(s, "GET", "/healthz", context(pki))[0] == 200


def test_non_loopback_http_listener_needs_tls_or_insecure_plaintext(pki: dict[str, tuple[str, str]]) -> None:
    rpc_port, http_port = free_port(), free_port()
    base = [
        wharf_bin(), "serve", "--database", "host=/nonexistent", "--listen", f"127.0.0.1:{rpc_port}",
        "--http-listen", f"0.0.0.0:{http_port}", "--token", f"admin:{ADMIN_TOKEN}",
    ]  # fmt: skip
    refused = subprocess.run(base, check=False, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "serve HTTP on 0.0.0.0 without TLS" in refused.stderr and "--insecure-plaintext" in refused.stderr
    tls = ["--tls-cert", pki["server"][0], "--tls-key", pki["server"][1]]
    for extra, ctx in ((["--insecure-plaintext"], None), (tls, context(pki))):
        args = ["--http-listen", f"0.0.0.0:{http_port}", "--token", f"admin:{ADMIN_TOKEN}", *extra]
        with WharfServer(extra_args=args, ssl=ctx):
            scheme = "https" if ctx else "http"
            url = f"{scheme}://127.0.0.1:{http_port}/healthz"
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                assert r.status == 200


def test_an_https_handshake_that_never_finishes_is_closed(server: WharfServer, pki: dict[str, tuple[str, str]]) -> None:
    """The RPC port's 10 s handshake deadline holds on the HTTPS listener too (a slowloris handshake)."""
    with socket.create_connection((server.host, server.http_port), timeout=15) as s:
        started = time.monotonic()
        s.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello record, never finished
        assert https(server, "GET", "/healthz", context(pki))[0] == 200  # others are served meanwhile
        assert s.recv(4096) == b""
        waited = time.monotonic() - started
    assert 9.5 <= waited <= 12, waited
