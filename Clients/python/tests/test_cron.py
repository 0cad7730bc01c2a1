"""Cron schedules through the Python client against a real server."""

from __future__ import annotations

import datetime
import time

import pytest

import wharf


def test_upsert_get_list_pause_resume_trigger_remove(client, unique):
    name = f"cron-{unique}"
    created = client.cron.upsert(
        name, expression="0 9 * * MON-FRI", timezone="Europe/Berlin", job={"queue": unique, "kind": "report"},
        overlap="skip", missed="skip",
    )
    assert created["created"] is True and created["overlap"] == "skip" and created["missed"] == "skip"
    assert len(created["nextFires"]) == 5 and "09:00" in created["description"]
    assert client.cron.get(name)["timezone"] == "Europe/Berlin"
    assert name in [s["name"] for s in client.cron.list(prefix="cron-")["schedules"]]
    paused = client.cron.pause(name, note="holiday")
    assert paused["paused"] is True and paused["pausedNote"] == "holiday" and paused["nextFires"] == []
    assert client.cron.resume(name)["paused"] is False
    job_id = client.cron.trigger(name)["jobId"]
    assert client.jobs.get(job_id)["schedule"]["name"] == name
    assert client.cron.remove(name)["removed"] is True
    with pytest.raises(wharf.NotFound):
        client.cron.get(name)


def test_preview_takes_datetimes_and_follows_dst(client):
    start = datetime.datetime(2026, 3, 7, 12, tzinfo=datetime.timezone.utc)
    r = client.cron.preview("30 2 * * *", timezone="America/New_York", from_=start, count=2)
    assert r["fires"] == ["2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"]
    assert r["dstGap"] == "runAtTransition"
    every = client.cron.preview(every_ms=90_000, from_=start, count=2)
    assert every["fires"] == ["2026-03-07T12:00:00.000Z", "2026-03-07T12:01:30.000Z"]


def test_invalid_expressions_raise_invalid_params(client, unique):
    with pytest.raises(wharf.InvalidParams) as err:
        client.cron.upsert(f"bad-{unique}", expression="0 0 30 2 *", job={"queue": unique, "kind": "k"})
    assert err.value.data["field"] == "expression"


def test_a_worker_updates_what_the_next_run_sees(client, unique):
    name = f"sync-{unique}"
    client.cron.upsert(name, expression="* * * * * *", overlap="skip",
                       job={"queue": unique, "kind": "sync", "payload": {"cursor": 0}})
    try:
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            jobs = client.jobs.lease([unique], worker="py", lease_ms=30_000, wait_ms=2_000)["jobs"]
            for job in jobs:
                cursor = job["payload"]["cursor"]
                seen.append(cursor)
                done = client.jobs.complete(job["id"], job["leaseToken"], {"ok": True},
                                            schedule_patch={"name": name, "payload": {"cursor": cursor + 1}})
                assert done["schedulePatched"] is True
        assert seen[:2] == [0, 1]
    finally:
        client.cron.remove(name)
