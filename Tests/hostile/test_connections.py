"""Hostile connections: peers that never read, trickle a line byte by byte, never authenticate, or take
every connection slot; and tokens kept off the command line.

Each attack runs beside a `Bystander` (ping p99 under 50 ms) while the server's RSS is sampled; each test
states its RSS bound. Limits are set low with `wharf serve` flags so the clocks run out in seconds.
"""

from __future__ import annotations

import json
import multiprocessing
import selectors
import socket
import threading
import time
from typing import Callable, List, Optional

from hostile import Bystander, LineConnection, rpc_line, rss_bytes
from wharf.testing import WharfServer

MiB = 1 << 20


class RSSWatch:
    """Samples the server's RSS every 50 ms in a thread; `peak` is the largest sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RSSWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return


def connections(control: LineConnection) -> int:
    """The server's open connection count (`server.health`), `control` and the bystander included."""
    return control.call("server.health")["result"]["connections"]


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Polls `predicate` until it holds; returns the seconds it took, or raises after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


def raw_socket(host: str, port: int, source: Optional[str] = None, rcvbuf: Optional[int] = None) -> socket.socket:
    """A connected TCP socket. `rcvbuf` makes a client that does not read leave the server's replies in
    the server rather than in the kernel: it shrinks our receive buffer and announces an Ethernet-sized
    segment (on loopback the 64 KiB segment makes the server's kernel buffer several MB of replies
    before the server itself holds any)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
    if source is not None:
        s.bind((source, 0))
    s.settimeout(10)
    s.connect((host, port))
    return s


def read_lines(s: socket.socket, timeout: float) -> List[dict]:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """True when the server closed `s` (EOF or reset) within `timeout`; the data before it is discarded."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def _pipeline_without_reading(host: str, port: int, count: int, line: bytes, requests: int, seconds: float,
                              report) -> None:
    """The attack, in a process of its own: `count` connections, each sending `requests` pipelined copies
    of `line` as fast as the server takes them and never reading. Reports, per connection, when the
    server closed it (seconds after the start) or that it is still open, or that all was sent."""
    socks = [raw_socket(host, port, rcvbuf=4096) for _ in range(count)]
    report.send("connected")
    chunk = memoryview(line * 1000)
    left = [requests * len(line)] * count
    offset = [0] * count
    outcome: List[object] = ["open"] * count
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE, i)
    started = time.monotonic()
    while sel.get_map() and time.monotonic() - started < seconds:
        # A breath between rounds: the attacker must not take the CPU the server and bystander need.
        time.sleep(0.002)
        for key, _ in sel.select(timeout=0.2):
            i = key.data
            try:
                n = socks[i].send(chunk[offset[i]:])
                offset[i] = (offset[i] + n) % len(chunk)
                left[i] -= n
                if left[i] <= 0:
                    outcome[i] = "sent all"
                    sel.unregister(socks[i])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # reset or broken pipe: the server closed it
                outcome[i] = round(time.monotonic() - started, 2)
                sel.unregister(socks[i])
    report.send(outcome)
    for s in socks:
        s.close()


class NonReaders:
    """Runs `_pipeline_without_reading` in a child process, so that the attack does not compete with the
    bystander's thread for this interpreter's lock. `outcome()` waits for its report."""

    def __init__(self, host: str, port: int, count: int, line: bytes, requests: int = 100_000,
                 seconds: float = 45.0) -> None:
        ctx = multiprocessing.get_context("fork")
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_pipeline_without_reading, args=(host, port, count, line, requests, seconds, child), daemon=True)
        self.proc.start()
        assert self.parent.poll(30) and self.parent.recv() == "connected"
        self.seconds = seconds

    def outcome(self) -> List[object]:
        assert self.parent.poll(self.seconds + 10), "the attack process did not report"
        result = self.parent.recv()
        self.proc.join(10)
        return result


# Item: clients that never read are never disconnected.

def test_non_readers_are_cut_off_and_their_replies_stay_within_the_budget():
    """40 connections pipeline 100k `server.info` each and never read (without these bounds: RSS 32 ->
    373 MB and every connection still open after 40 s). With a 512 KiB per-connection high-water mark
    and an 8 MiB server budget, the server stops reading each one, closes the most stuck ones while over
    budget, and closes every other one within the 3 s write timeout once its socket is full. (Small
    marks keep the server's work, and so the test, short on a debug build; the defaults are 8 MiB and
    256 MiB.)"""
    write_timeout_s = 3.0
    args = [
        "--write-timeout-ms", str(int(write_timeout_s * 1000)),
        "--max-write-buffer-bytes", str(512 << 10),
        "--max-buffered-bytes", str(8 * MiB),
    ]
    with WharfServer(extra_args=args) as server:
        pid = server.proc.pid
        base = rss_bytes(pid)
        control = LineConnection(server.host, server.port)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            attack = NonReaders(server.host, server.port, 40, rpc_line("server.info"), seconds=30)
            # Every attacker is closed by the server: over the budget, or by the write timeout.
            took = wait_until(lambda: connections(control) == 2, timeout=30)
            outcome = attack.outcome()
        b.assert_healthy()
        assert control.call("server.ping")["result"] == "pong"
        control.close()
        log = server.log_text()
    # Each attacker's sends failed because the server closed it; none got its 100k requests through.
    assert all(isinstance(o, float) for o in outcome), outcome
    # The budget was exceeded and enforced: some connections were closed for it, by name.
    assert "--max-buffered-bytes" in log, log[-2000:]
    growth = rss.peak - base
    print(f"non-readers: all closed after {took:.1f} s (first {min(outcome):.1f} s, last {max(outcome):.1f} s), "
          f"RSS {base / MiB:.0f} -> peak {rss.peak / MiB:.0f} MiB, bystander p99 {b.p99_ms():.1f} ms")
    assert growth < 48 * MiB, f"RSS grew by {growth / MiB:.0f} MiB (budget 8 MiB)"


def test_the_idle_timeout_closes_a_non_reader_with_replies_pending():
    """With a long write timeout, the idle timeout still ends non-readers: their idle error line cannot
    be written, and the close waits at most 2 s for it instead of for ever."""
    args = ["--idle-timeout-ms", "1500", "--write-timeout-ms", "600000", "--max-write-buffer-bytes", str(256 << 10)]
    with WharfServer(extra_args=args) as server:
        pid = server.proc.pid
        base = rss_bytes(pid)
        control = LineConnection(server.host, server.port)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            attack = NonReaders(server.host, server.port, 5, rpc_line("server.info"), seconds=30)
            # The control connection asks for the count every 100 ms, so that it is not idle itself.
            took = wait_until(lambda: connections(control) == 2, timeout=30)
            outcome = attack.outcome()
        b.assert_healthy()
        control.close()
    assert all(isinstance(o, float) for o in outcome), outcome
    print(f"idle non-readers closed after {took:.1f} s; RSS peak {rss.peak / MiB:.0f} MiB")
    assert rss.peak - base < 48 * MiB


# Item: a partial frame sent one byte at a time keeps a connection alive for ever.

def test_a_line_trickled_byte_by_byte_is_cut_off_at_the_frame_deadline():
    frame_timeout_s = 1.5
    with WharfServer(extra_args=["--frame-timeout-ms", str(int(frame_timeout_s * 1000))]) as server:
        pid = server.proc.pid
        base = rss_bytes(pid)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            socks = [raw_socket(server.host, server.port) for _ in range(50)]
            started = time.monotonic()
            stop = threading.Event()
            line = rpc_line("server.ping")

            def trickle() -> None:
                # One byte of a never-finished line to every connection every 50 ms: always active.
                k = 0
                while not stop.is_set():
                    for s in socks:
                        try:
                            s.send(line[k % (len(line) - 1) : k % (len(line) - 1) + 1])
                        except OSError:
                            pass
                    k += 1
                    stop.wait(0.05)

            t = threading.Thread(target=trickle, daemon=True)
            t.start()
            replies = [read_lines(s, timeout=frame_timeout_s + 5) for s in socks]
            took = time.monotonic() - started
            stop.set()
            t.join()
        b.assert_healthy()
    for r in replies:
        assert r and r[-1]["error"]["code"] == -32005, r
        assert r[-1]["error"]["data"]["limit"] == "frameTimeoutMs", r
        assert r[-1]["id"] is None
    # Closed by the deadline (plus the 250 ms sweep), not by anything slower.
    assert frame_timeout_s - 0.1 <= took <= frame_timeout_s + 2.5, took
    assert rss.peak - base < 64 * MiB


def test_a_pipelining_client_whose_reads_end_mid_line_is_not_cut_off():
    """The frame clock restarts whenever a line ends: heavy pipelining, where nearly every read ends in
    the middle of a line, runs past the frame deadline."""
    with WharfServer(extra_args=["--frame-timeout-ms", "500"]) as server:
        c = LineConnection(server.host, server.port)
        line = rpc_line("server.ping")
        started = time.monotonic()
        answered = 0
        # Every write ends inside a line for 2 s, four times the frame deadline.
        c.send(line[:10])
        while time.monotonic() - started < 2.0:
            c.send(line[10:] + line * 49 + line[:10])
            for _ in range(50):
                assert json.loads(c.read_line())["result"] == "pong"
                answered += 1
            time.sleep(0.02)
        c.send(line[10:])
        assert json.loads(c.read_line())["result"] == "pong"
        assert answered >= 50
        c.close()


# Item: one peer can take all 10,000 connection slots.

def test_one_peer_cannot_take_every_connection_slot():
    per_peer = 50
    with WharfServer(extra_args=["--max-connections-per-peer", str(per_peer)]) as server:
        pid = server.proc.pid
        base = rss_bytes(pid)
        with Bystander(server.host, server.port) as b, RSSWatch(pid) as rss:
            # The bystander is one of 127.0.0.1's connections: 49 more fit.
            held = [LineConnection(server.host, server.port) for _ in range(per_peer - 1)]
            for c in held:
                assert c.call("server.ping")["result"] == "pong"
            refused = 0
            for _ in range(300):
                s = raw_socket(server.host, server.port)
                got = read_lines(s, timeout=5)
                s.close()
                assert got and got[0]["error"]["code"] == -32005, got
                assert got[0]["error"]["data"]["limit"] == "connectionsPerPeer"
                assert got[0]["error"]["data"]["max"] == per_peer
                assert got[0]["error"]["data"]["retryable"] is True
                refused += 1
            # Another address is another peer: it still gets in, and its calls work.
            other = raw_socket(server.host, server.port, source="127.0.0.2")
            other.sendall(rpc_line("server.ping"))
            other.settimeout(5)
            assert json.loads(other.recv(4096).split(b"\n")[0])["result"] == "pong"
            other.close()
            # A slot freed by 127.0.0.1 is its own again.
            held.pop().close()
            time.sleep(0.2)
            again = LineConnection(server.host, server.port)
            assert again.call("server.ping")["result"] == "pong"
            held.append(again)
            for c in held:
                c.close()
        b.assert_healthy()
    assert refused == 300
    assert rss.peak - base < 64 * MiB


# Item: an unauthenticated connection lives for ever.

def test_a_connection_that_never_authenticates_is_closed_at_the_auth_deadline(tmp_path):
    auth_timeout_s = 1.5
    token_file = tmp_path / "tokens"
    token_file.write_text("admin:hostile-admin\n")
    args = ["--token-file", str(token_file), "--auth-timeout-ms", str(int(auth_timeout_s * 1000))]
    with WharfServer(extra_args=args) as server:
        pid = server.proc.pid
        base = rss_bytes(pid)
        with Bystander(server.host, server.port, token="hostile-admin") as b, RSSWatch(pid) as rss:
            silent = [raw_socket(server.host, server.port) for _ in range(20)]
            # Pinging (an open method) is activity, but not authentication: it does not extend the deadline.
            chatty = LineConnection(server.host, server.port)
            authed = LineConnection(server.host, server.port)
            assert authed.call("session.hello", {"token": "hostile-admin"})["result"]["role"] == "admin"
            started = time.monotonic()
            stop = threading.Event()
            pings: List[dict] = []

            def chat() -> None:
                while not stop.is_set():
                    try:
                        pings.append(chatty.call("server.ping"))
                    except (OSError, ConnectionError):
                        return
                    stop.wait(0.2)

            t = threading.Thread(target=chat, daemon=True)
            t.start()
            replies = [read_lines(s, timeout=auth_timeout_s + 5) for s in silent]
            took = time.monotonic() - started
            # The chatty one is closed too: its thread ends when its connection does.
            t.join(timeout=auth_timeout_s + 5)
            chatty_closed = not t.is_alive()
            stop.set()
            # The authenticated connection outlives the deadline.
            assert authed.call("server.info")["result"]["limits"]["authTimeoutMs"] == 1500
            authed.close()
        b.assert_healthy()
    for r in replies:
        assert r and r[-1]["error"]["data"]["limit"] == "authTimeoutMs", r
    assert chatty_closed
    assert sum(p.get("result") == "pong" for p in pings) >= 3, pings[:3]
    assert auth_timeout_s - 0.1 <= took <= auth_timeout_s + 2.5, took
    assert rss.peak - base < 64 * MiB


# Item: `--token ROLE:SECRET` shows the secret in `ps`.

def test_a_token_on_the_command_line_is_warned_about():
    with WharfServer(extra_args=["--token", "admin:visible-in-ps"]) as server:
        c = LineConnection(server.host, server.port)
        assert c.call("session.hello", {"token": "visible-in-ps"})["result"]["role"] == "admin"
        c.close()
        log = server.log_text()
    assert "--token puts its secret on the command line" in log, log
    assert "--token-file" in log and "WHARF_TOKENS" in log


def test_tokens_from_a_file_and_from_the_environment_work_without_a_warning(tmp_path, monkeypatch):
    token_file = tmp_path / "tokens"
    token_file.write_text("# operators\nadmin:from-file\n\nreader:also-from-file\n")
    monkeypatch.setenv("WHARF_TOKENS", "worker:from-env, producer:second-from-env")
    with WharfServer(extra_args=["--token-file", str(token_file)]) as server:
        roles = {}
        for token in ["from-file", "also-from-file", "from-env", "second-from-env"]:
            c = LineConnection(server.host, server.port)
            roles[token] = c.call("session.hello", {"token": token})["result"]["role"]
            c.close()
        c = LineConnection(server.host, server.port)
        assert c.call("session.hello", {"token": "worker:from-env"})["error"]["code"] == -32001
        c.close()
        log = server.log_text()
    assert roles == {
        "from-file": "admin", "also-from-file": "reader", "from-env": "worker", "second-from-env": "producer",
    }
    assert "--token puts" not in log, log
