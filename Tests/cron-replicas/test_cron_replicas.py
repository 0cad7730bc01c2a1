"""Three `wharf serve` replicas on one database fire many schedules while replicas are killed with
SIGKILL and restarted; afterwards the jobs table must hold exactly one job per (schedule, fire time) that
should have fired, and none that should not.

Reads WHARF_BIN and WHARF_TEST_DATABASE_URL (bash scripts/test.sh sets both). WHARF_CRON_SOAK_S sets the
length of the run (default 30 s).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Clients" / "python"))

import wharf  # noqa: E402
from wharf.testing import WharfServer, fresh_database  # noqa: E402

BINARY = os.environ.get("WHARF_BIN", "")
DATABASE = os.environ.get("WHARF_TEST_DATABASE_URL", "")
SOAK_S = float(os.environ.get("WHARF_CRON_SOAK_S", "30"))

pytestmark = pytest.mark.skipif(
    not (BINARY and os.access(BINARY, os.X_OK) and DATABASE),
    reason="needs WHARF_BIN and WHARF_TEST_DATABASE_URL (bash scripts/test.sh sets both)",
)

# name -> (definition, period in ms): every one fires on a fixed grid of its period.
SCHEDULES = {
    **{f"s1-{i}": ({"expression": "* * * * * *"}, 1000) for i in range(10)},
    **{f"s2-{i}": ({"expression": "*/2 * * * * *"}, 2000) for i in range(5)},
    **{f"e15-{i}": ({"every_ms": 1500}, 1500) for i in range(5)},
}


def gaps_and_duplicates(fires: List[int], period: int) -> List[str]:
    """What is wrong with one schedule's fire times: duplicates, gaps and times off its grid."""
    problems = []
    if len(set(fires)) != len(fires):
        problems.append("duplicate fire times")
    ordered = sorted(set(fires))
    problems += [f"off the grid: {f}" for f in ordered if f % period]
    problems += [f"gap between {a} and {b}" for a, b in zip(ordered, ordered[1:]) if b - a != period]
    return problems


def test_the_checker_sees_gaps_duplicates_and_strays():
    assert gaps_and_duplicates([1000, 2000, 3000], 1000) == []
    assert gaps_and_duplicates([1000, 2000, 2000, 3000], 1000) == ["duplicate fire times"]
    assert gaps_and_duplicates([1000, 3000], 1000) == ["gap between 1000 and 3000"]
    assert gaps_and_duplicates([1000, 1500, 2000], 1000)[0] == "off the grid: 1500"


def fires_by_schedule(database: str) -> Dict[str, List[int]]:
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", " ", "-d", database, "-c",
         "select schedule_name, floor(extract(epoch from schedule_fire_at) * 1000)::bigint "
         "from wharf.jobs where schedule_name is not null"],
        capture_output=True, text=True, check=True,
    ).stdout
    fires: Dict[str, List[int]] = {}
    for line in out.splitlines():
        name, ms = line.split()
        fires.setdefault(name, []).append(int(ms))
    return fires


def test_replicas_killed_and_restarted_fire_each_time_exactly_once():
    database = fresh_database("wharf_cron_soak")
    replicas = [WharfServer(database=database) for _ in range(3)]
    ports = [r.port for r in replicas]
    rng = random.Random(int(os.environ.get("WHARF_CRON_SOAK_SEED", "7")))
    kills = 0
    try:
        c = wharf.Client("127.0.0.1", ports[0], timeout=20)
        for name, (definition, _) in SCHEDULES.items():
            c.cron.upsert(name, missed="runAll", job={"queue": "soak", "kind": name}, **definition)
        c.close()
        deadline = time.monotonic() + SOAK_S
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 3.0))
            i = rng.randrange(3)
            replicas[i].stop(sig=signal.SIGKILL)
            kills += 1
            time.sleep(rng.uniform(0.0, 2.0))
            # The same port, so clients would find it again; at least two replicas ran meanwhile.
            replicas[i] = WharfServer(database=database, port=ports[i])
        time.sleep(2.0)
    finally:
        for r in replicas:
            r.stop()
    fires = fires_by_schedule(database)
    problems = []
    for name, (_, period) in SCHEDULES.items():
        got = fires.get(name, [])
        expected_at_least = int(SOAK_S * 1000 / period * 0.9)
        if len(got) < expected_at_least:
            problems.append(f"{name}: only {len(got)} fires, expected about {int(SOAK_S * 1000 / period)}")
        problems += [f"{name}: {p}" for p in gaps_and_duplicates(got, period)]
    assert kills >= 3
    assert problems == []
