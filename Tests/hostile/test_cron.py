"""Hostile use of cron: schedules created and removed by the thousand, schedules that would fire every
millisecond, and previews asked for the year 10000 and for definitions that can never fire.

Each test asserts its own outcome, that a bystander's pings stay fast (p99 under 50 ms) and that the
server's RSS stays under a stated bound.
"""

from __future__ import annotations

import json
import time

from hostile import Bystander, LineConnection, rss_bytes
from wharf.testing import WharfServer

MB = 1 << 20
JOB = {"job": {"queue": "cron-hostile", "kind": "tick", "payload": {"pad": "x" * 500}}}


def pipeline(conn: LineConnection, calls: list, window: int = 5) -> list:
    """Sends `calls` ([(method, params)]) with up to `window` in flight; returns the replies in order."""
    replies: dict = {}
    sent = 0
    while len(replies) < len(calls):
        burst = []
        while sent < len(calls) and sent - len(replies) < window:
            method, params = calls[sent]
            burst.append(json.dumps({"jsonrpc": "2.0", "id": sent, "method": method, "params": params},
                                    separators=(",", ":")))
            sent += 1
        if burst:
            conn.send(("\n".join(burst) + "\n").encode())
        reply = json.loads(conn.read_line())
        replies[reply["id"]] = reply
    return [replies[i] for i in range(len(calls))]


def test_upsert_and_remove_rounds_keep_memory_bounded():
    """Five rounds of 2,000 schedules created under new names and removed again, 5 calls in flight:
    the scheduler keeps no trace of removed schedules, so RSS after the last round stays within 8 MB of
    RSS after the first, and under 200 MB throughout. Before the compiled-schedule cache was bounded it
    kept every schedule ever seen (definition text, payload and all), some 3 KB each here."""
    rounds, per_round, chunk = 5, 2_000, 1_000
    with WharfServer() as server:
        conn = LineConnection(server.host, server.port, timeout=60)
        after_round = []
        t0 = time.monotonic()
        with Bystander(server.host, server.port) as b:
            for r in range(rounds):
                for start in range(0, per_round, chunk):
                    names = [f"churn-{r}-{i}" for i in range(start, start + chunk)]
                    ups = pipeline(conn, [("cron.upsert", {"name": n, "expression": f"{i % 60} * * * * *",
                                                        "target": JOB}) for i, n in enumerate(names)])
                    assert all("result" in u for u in ups), [u for u in ups if "error" in u][:1]
                    gone = pipeline(conn, [("cron.remove", {"name": n}) for n in names])
                    assert all(g.get("result", {}).get("removed") for g in gone), gone[:1]
                after_round.append(rss_bytes(server.proc.pid))
                print(f"round {r}: {time.monotonic() - t0:.1f} s, RSS {after_round[-1] / MB:.1f} MB")
        conn.close()
        listed = server.client().call("cron.list", {"limit": 10})
        assert listed["schedules"] == []
        b.assert_healthy()
        growth = after_round[-1] - after_round[0]
        print(f"RSS after each round (MB): {[round(x / MB, 1) for x in after_round]}")
        assert growth < 8 * MB, f"RSS grew {growth / MB:.1f} MB over rounds 2-5: {after_round}"
        assert max(after_round) < 200 * MB, after_round


def test_periods_below_the_minimum_are_refused():
    """`everyMs: 1` (five of them made 151,000 jobs in 30 s) and its disguises are refused with the
    limit named; an every-second schedule is still allowed by default; `--cron-min-period-ms` raises the
    floor. RSS stays under 150 MB."""
    with WharfServer() as server:
        c = server.client()
        conn = LineConnection(server.host, server.port)
        with Bystander(server.host, server.port) as b:
            bad = [{"everyMs": 1}, {"everyMs": 999}, {"expression": "@every 1ms"}, {"expression": "@every 999ms"}]
            replies = pipeline(conn, [("cron.upsert", dict(p, name=f"fast-{i}", target=JOB)) for i, p in enumerate(bad)])
            for p, r in zip(bad, replies):
                assert r["error"]["code"] == -32602, r
                assert r["error"]["data"]["field"] == ("everyMs" if "everyMs" in p else "expression"), r
                assert "minimum period is 1000 ms" in r["error"]["data"]["detail"], r
            ok = conn.call("cron.upsert", {"name": "each-second", "everyMs": 1000, "target": JOB})
            assert "result" in ok, ok
            time.sleep(3.5)
        conn.close()
        assert [s["name"] for s in c.call("cron.list", {})["schedules"]] == ["each-second"]
        # About 3 fires in 3.5 s, not thousands.
        jobs = c.call("jobs.list", {"queue": "cron-hostile", "limit": 100})["jobs"]
        assert 1 <= len(jobs) <= 5, len(jobs)
        b.assert_healthy()
        assert rss_bytes(server.proc.pid) < 150 * MB

    with WharfServer(extra_args=["--cron-min-period-ms", "5000"]) as server:
        conn = LineConnection(server.host, server.port)
        r = conn.call("cron.upsert", {"name": "two", "expression": "*/2 * * * * *", "target": JOB})
        assert r["error"]["data"]["field"] == "expression", r
        assert "minimum period is 5000 ms" in r["error"]["data"]["detail"], r
        assert "result" in conn.call("cron.upsert", {"name": "five", "expression": "*/5 * * * * *", "target": JOB})
        conn.close()


def test_preview_stops_at_9999_and_never_firing_definitions_are_refused():
    """4,000 previews asking for 1,000 leap days from the year 9990 get the two that exist (9992-02-29,
    9996-02-29) in RFC 3339, not years past 9999; a definition that its DST policy keeps from ever firing is
    refused by preview and upsert alike. RSS stays under 150 MB."""
    with WharfServer() as server:
        conn = LineConnection(server.host, server.port, timeout=60)
        with Bystander(server.host, server.port) as b:
            # At least 40 rounds, and for at least a second, so the bystander pings throughout the attack
            # however fast the build answers.
            rounds, started = 0, time.monotonic()
            while rounds < 40 or time.monotonic() - started < 1.0:
                rounds += 1
                replies = pipeline(conn, [("cron.preview", {"expression": "0 0 29 2 *", "from": "9990-01-01T00:00:00Z",
                                                         "count": 1000})] * 100)
                for r in replies:
                    assert r["result"]["fires"] == ["9992-02-29T00:00:00.000Z", "9996-02-29T00:00:00.000Z"], r
        # Deciding that a definition never fires searches 400 years of the zone's transitions (a few
        # ms in a release build, tens in a debug one), so these two are not part of the timed attack.
        skip = {"expression": "30 2 * 3 0#2", "timezone": "America/New_York", "dstGap": "skip"}
        for method, params in [("cron.preview", skip), ("cron.upsert", dict(skip, name="gap", target=JOB))]:
            r = conn.call(method, params)
            assert r["error"]["code"] == -32602, r
            assert "daylight-saving gap" in r["error"]["data"]["detail"], r
        conn.close()
        assert server.client().call("cron.list", {})["schedules"] == []
        b.assert_healthy()
        assert rss_bytes(server.proc.pid) < 150 * MB
