#!/usr/bin/env python3
"""Reference cron vectors from the `cronsim` package, for differential tests of WharfCore's cron engine.

Generates random cron expressions (restricted to syntax both engines support), random IANA zones and
random start instants concentrated around DST transitions between 2000 and 2035, and prints, for each
case, the next fire times cronsim computes, as compact JSON:

    {"seed": 1, "cronsim": "2.8", "fires": 5, "cases": [[expr, zone, start_ms, [fire_s, ...]], ...]}

Start instants are Unix epoch milliseconds; fires are Unix epoch seconds (fires are whole seconds). A
fifth element marks a case whose fires do not come from cronsim alone: "scan" when the wall-clock scan
replaced cronsim across a transition cronsim is known to mishandle, or "either" (followed by the scan's
fires) when the two disagree for a reason not yet understood; the engine must then match one of them.

    python3 cron_oracle.py --seed 1 --count 300                 # to stdout
    python3 cron_oracle.py --seed 20261122 --count 6000 --out Resources/cron-vectors.json

Exits with status 3 when cronsim cannot be imported (`python3 -m pip install cronsim`).

Generation rules that keep the two engines comparable (see also the notes in `main`):
- no `?`, `nW`, macros or `@every`: cronsim lacks them (unit tests cover them);
- no stepped single-value ranges such as `5-5/2`: cronsim reads them as `5/2` (5 to the maximum);
- `nL` and `n#k` use numbers or names only as cronsim accepts them (`5L`, `MON#2`, not `FRIL`).
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import signal
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

try:
    import cronsim
    from cronsim import CronSim, CronSimError
except ImportError:  # pragma: no cover - reported to the Swift test
    print("cronsim is not installed: python3 -m pip install cronsim", file=sys.stderr)
    sys.exit(3)

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "America/Santiago",
    "America/Havana",
    "Asia/Tehran",
    "Pacific/Chatham",
    "Pacific/Apia",
    "America/St_Johns",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/Nuuk",
]

YEAR_START = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp())
YEAR_END = int(datetime(2036, 1, 1, tzinfo=timezone.utc).timestamp())
SCAN_END = int(datetime(2060, 1, 1, tzinfo=timezone.utc).timestamp())
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAYS = "SUN MON TUE WED THU FRI SAT".split()


def transitions(zone: str) -> list[tuple[int, int, int]]:
    """(UTC instant, offset before, offset after) of each change of the zone's UTC offset in 2000-2059.

    Samples every 6 hours up to 2036 and daily after that (where only regular rules remain), then
    bisects to the second.
    """
    if zone == "UTC":
        return []
    tz = ZoneInfo(zone)

    def offset(t: int) -> int:
        return int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())

    found = []
    t = YEAR_START
    previous = offset(t)
    while t < SCAN_END:
        step = 6 * 3600 if t < YEAR_END else 86400
        current = offset(t + step)
        if current != previous:
            low, high = t, t + step  # offset(low) == previous != offset(high)
            while high - low > 1:
                mid = (low + high) // 2
                if offset(mid) == previous:
                    low = mid
                else:
                    high = mid
            found.append((high, previous, current))
            previous = current
        t += step
    return found


def misaligned(transition: tuple[int, int, int]) -> bool:
    """Whether cronsim's wall-clock mode may mishandle a transition.

    That mode steps whole hours from hh:00 and starts each day at local midnight, which is right only for
    shifts of whole hours at whole hours whose skipped or repeated local times do not include midnight.
    """
    at, before, after = transition
    low, high = sorted((at + before, at + after))  # the skipped or repeated local times
    crosses_midnight = low // 86400 != (high - 1) // 86400 or low % 86400 == 0
    return (after - before) % 3600 != 0 or (at + before) % 3600 != 0 or crosses_midnight


class Generator:
    """Random cron expressions in the syntax both engines support."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def value(self, lo: int, hi: int, names: list[str] | None = None, base: int = 0) -> str:
        v = self.r.randint(lo, hi)
        if names and self.r.random() < 0.3 and base <= v - base < len(names) + base and v - base < len(names):
            name = names[v - base]
            return name if self.r.random() < 0.7 else name.lower()
        return str(v)

    def term(self, lo: int, hi: int, names=None, base=0, hot: list[int] | None = None) -> str:
        r = self.r.random()
        if hot and r < 0.25:
            return str(self.r.choice(hot))
        if r < 0.45:
            return self.value(lo, hi, names, base)
        if r < 0.65:
            a = self.r.randint(lo, hi - 1)
            b = self.r.randint(a + 1, hi)
            return f"{self.name_or_num(a, names, base)}-{self.name_or_num(b, names, base)}"
        if r < 0.8:
            a = self.r.randint(lo, hi - 1)
            b = self.r.randint(a + 1, hi)
            return f"{a}-{b}/{self.r.randint(1, max(1, (b - a)))}"
        if r < 0.9:
            return f"{self.r.randint(lo, hi)}/{self.r.randint(1, max(1, (hi - lo) // 2))}"
        return f"*/{self.r.randint(1, max(1, (hi - lo) // 2))}"

    def name_or_num(self, v: int, names, base: int) -> str:
        if names and self.r.random() < 0.3 and 0 <= v - base < len(names):
            return names[v - base]
        return str(v)

    def field(self, lo, hi, star: float, names=None, base=0, hot=None, list_p=0.25) -> str:
        if self.r.random() < star:
            return "*" if self.r.random() < 0.7 else f"*/{self.r.randint(1, max(2, (hi - lo) // 3))}"
        terms = [self.term(lo, hi, names, base, hot)]
        while self.r.random() < list_p and len(terms) < 4:
            terms.append(self.term(lo, hi, names, base, hot))
        return ",".join(terms)

    def day_of_month(self) -> str:
        r = self.r.random()
        if r < 0.6:
            return "*"
        if r < 0.7:
            return self.r.choice(["L", "LW", "1,L", "15,LW"])
        return self.field(1, 31, 0.0, hot=[1, 15, 28, 29, 30, 31])

    def day_of_week(self) -> str:
        r = self.r.random()
        if r < 0.6:
            return "*"
        if r < 0.7:
            return f"{self.r.randint(0, 7)}L"
        if r < 0.8:
            day = self.r.choice([str(self.r.randint(0, 7)), self.r.choice(DAYS)])
            return f"{day}#{self.r.randint(1, 5)}"
        if r < 0.85:
            return self.r.choice(["MON-FRI", "SAT,SUN", "1-5", "0,6", "1/2", "*/2"])
        return self.field(0, 7, 0.0, names=DAYS, base=0)

    def expression(self) -> str:
        six = self.r.random() < 0.15
        # Hours and minutes near typical DST transition times make gaps and folds likely.
        minute = self.field(0, 59, 0.25, hot=[0, 30, 45, 15])
        hour = self.field(0, 23, 0.3, hot=[0, 1, 2, 3, 23])
        month = self.field(1, 12, 0.75, names=MONTHS, base=1)
        fields = [minute, hour, self.day_of_month(), month, self.day_of_week()]
        if six:
            fields.insert(0, self.field(0, 59, 0.3, hot=[0, 30]))
        return " ".join(fields)


def wall_clock_scan(
    sim: CronSim, tz, start_ms: int, count: int, zone_transitions: list[int], until: int
) -> list[int] | None:
    """Fires under the plain wall-clock rule, by scanning UTC minutes: an instant fires when its local
    time matches. Matching uses cronsim's own parsed fields; only the DST handling is independent.

    Skips ahead a local hour or day at a time when the hour or day cannot match, never across a
    transition. All offsets and transitions in 2000-2035 fall on whole minutes, so each UTC minute is one
    local minute with the same seconds.
    """
    fires: list[int] = []
    t = start_ms // 1000 // 60 * 60
    seconds = sorted(sim.seconds)
    while len(fires) < count and t <= until:
        if t >= SCAN_END:
            return None
        local = datetime.fromtimestamp(t, tz)
        if local.month not in sim.months or not sim.match_day(local.date()):
            step = ((24 - local.hour) * 60 - local.minute) * 60
        elif local.hour not in sim.hours:
            step = (60 - local.minute) * 60
        else:
            if local.minute in sim.minutes:
                fires += [t + s for s in seconds if (t + s) * 1000 > start_ms]
            step = 60
        i = bisect.bisect_right(zone_transitions, t)
        if i < len(zone_transitions):
            step = min(step, zone_transitions[i] - t)
        t += step
    return fires[:count]


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--fires", type=int, default=5)
    parser.add_argument("--out", default="-")
    parser.add_argument("--stats", action="store_true", help="print exclusion counts to stderr")
    parser.add_argument("--verbose", action="store_true", help="print cases where the scan replaces cronsim")
    args = parser.parse_args()

    signal.signal(signal.SIGALRM, on_alarm)
    # A parent may hand down SIGALRM blocked (threads of Swift test runners block most signals).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGALRM])
    rng = random.Random(args.seed)
    gen = Generator(rng)
    zone_transitions = {zone: transitions(zone) for zone in ZONES}
    instants = {zone: [tr[0] for tr in trs] for zone, trs in zone_transitions.items()}
    stats: dict[str, int] = {}
    cases = []
    while len(cases) < args.count:
        zone = rng.choice(ZONES)
        expr = gen.expression()
        near = [t for t in instants[zone] if t < YEAR_END]
        if near and rng.random() < 0.8:
            t = rng.choice(near)
            before = 6 * 3600 if rng.random() < 0.5 else 3 * 86400
            start_ms = (t + rng.randint(-before, 3600)) * 1000 + rng.choice([0, rng.randint(0, 999)])
            if rng.random() < 0.1:
                start_ms = (t + rng.randint(-2, 1)) * 1000
        else:
            start_ms = rng.randint(YEAR_START, YEAR_END) * 1000 + rng.randint(0, 999)
        tz = timezone.utc if zone == "UTC" else ZoneInfo(zone)
        start_dt = datetime.fromtimestamp(start_ms / 1000, tz)
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        try:
            it = CronSim(expr, start_dt)
            fires = [next(it) for _ in range(args.fires)]
        except Timeout:
            # cronsim can loop forever, e.g. a 6-field daily expression across a St. John's
            # transition at 00:01 local time.
            if args.verbose:
                print(f"cronsim hangs: {expr!r} {zone} {start_ms}", file=sys.stderr)
            stats["cronsim-hangs"] = stats.get("cronsim-hangs", 0) + 1
            continue
        except CronSimError:
            if args.verbose:
                print(f"cronsim rejects: {expr!r}", file=sys.stderr)
            stats["cronsim-rejects"] = stats.get("cronsim-rejects", 0) + 1
            continue
        except StopIteration:
            if args.verbose:
                print(f"cronsim gives up: {expr!r} {zone} {start_ms}", file=sys.stderr)
            stats["cronsim-gives-up"] = stats.get("cronsim-gives-up", 0) + 1
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        fire_seconds = [int(f.timestamp()) for f in fires]
        case = [expr, zone, start_ms, fire_seconds]
        if it.fixup_tz is not None and start_dt.fold == 1:
            # For fixed-time expressions cronsim drops the start's fold: from inside the second copy of a
            # repeated hour it can return a fire before the start instant.
            stats["excluded: fixed-time start in a repeated hour"] = (
                stats.get("excluded: fixed-time start in a repeated hour", 0) + 1
            )
            continue
        if it.fixup_tz is None and zone != "UTC":
            # cronsim's wall-clock mode goes wrong across some transitions (see `misaligned`): Lord Howe's
            # 30-minute shifts, Chatham's at 02:45, St. John's at 00:01 until 2011, and gaps that skip
            # midnight (Tehran, Santiago, Havana). Every wall-clock case is checked against a plain scan;
            # where they differ across such a transition the scan is the reference and the case is marked.
            scan = wall_clock_scan(it, tz, start_ms, args.fires, instants[zone], fire_seconds[-1] + 2 * 86400)
            if scan is not None and len(scan) < args.fires:
                scan = wall_clock_scan(it, tz, start_ms, args.fires, instants[zone], fire_seconds[-1] + 800 * 86400)
            if scan != fire_seconds:
                # Transitions shortly before the start matter too: cronsim steps from the start of its hour.
                last = max(fire_seconds[-1], scan[-1] if scan else 0)
                suspect = [tr for tr in zone_transitions[zone] if start_ms // 1000 - 86400 < tr[0] <= last + 86400]
                if scan is None:
                    stats["excluded: beyond the scan's range"] = stats.get("excluded: beyond the scan's range", 0) + 1
                    continue
                if not any(misaligned(tr) for tr in suspect):
                    # Not a known cronsim problem: keep both answers (the engine must give one) and say so.
                    print(
                        f"unexplained: {expr!r} {zone} {start_ms}: cronsim {fire_seconds} scan {scan}", file=sys.stderr
                    )
                    stats["unexplained disagreement"] = stats.get("unexplained disagreement", 0) + 1
                    cases.append([expr, zone, start_ms, fire_seconds, "either", scan])
                    continue
                stats["wall-clock scan replaces cronsim"] = stats.get("wall-clock scan replaces cronsim", 0) + 1
                if args.verbose:
                    print(
                        f"scan differs: {expr!r} {zone} {start_dt.isoformat()}: cronsim "
                        f"{[datetime.fromtimestamp(f, tz).isoformat() for f in fire_seconds]} scan "
                        f"{[datetime.fromtimestamp(f, tz).isoformat() for f in scan]}",
                        file=sys.stderr,
                    )
                case = [expr, zone, start_ms, scan, "scan"]
        cases.append(case)

    document = {"seed": args.seed, "cronsim": cronsim_version(), "fires": args.fires, "cases": cases}
    text = json.dumps(document, separators=(",", ":"))
    if args.out == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.stats:
        print(json.dumps(stats), file=sys.stderr)
    return 0


def cronsim_version() -> str:
    try:
        from importlib.metadata import version

        return version("cronsim")
    except Exception:  # pragma: no cover
        return getattr(cronsim, "__version__", "unknown")


if __name__ == "__main__":
    sys.exit(main())
