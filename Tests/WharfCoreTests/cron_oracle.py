"""Answers cron and time zone queries for the Swift differential tests, in one process per batch.

    python3 cron_oracle.py QUERY.json        # answers on stdout as JSON

QUERY.json holds `{"cases": [...], "offsets": [...]}`, both optional:

- a case is `[expression, zone, start_ms, count, policy, day_match]`: the expression as cronsim reads it
  (five or six fields, plus `nW` day-of-month terms, which cronsim lacks), an IANA zone, the start instant
  in epoch milliseconds and how many fires to return. `policy` is null for the default DST policies, or
  `[gap, fold]` with gap `runAtTransition|skip` and fold `once|twice`. `day_match` is `or` (Vixie: the day
  fields combine with OR unless one starts with `*`) or `and` (both must match).
- an offset query is `[zone, utc_seconds]`; the answer is the zone's UTC offset in seconds from `zoneinfo`.

Each case is answered twice, independently:

- by `cronsim` (the reference for the Vixie/Debian DST rule), when the policy is the default and the
  expression and day matching are ones cronsim has;
- by `reference_fires` below, a direct transcription of the documented rule over `zoneinfo`: walk the
  matching local wall-clock times in order and map each to the instants it denotes. A local time that
  exists once is one instant; one repeated by a fall-back transition is its first instant under `once`
  and both under `twice`; one skipped by a spring-forward transition is the transition instant under
  `runAtTransition` and nothing under `skip`. Only cronsim's field parser and day matchers are shared.

The answer for a case is `{"fires": [...], "source": ...}` with fires in UTC seconds:

- `cronsim`: both agree (or cronsim alone answered, where the reference ran out of time);
- `reference`: cronsim cannot answer (`note`: `policy-override`, `day-match-and`, `nearest-weekday`,
  `cronsim-hangs`), or it is wrong in one of the known ways listed in `cronsim_defect`, named in `note`;
- `unexplained`: they disagree otherwise; `fires` is cronsim's and `reference` the other answer, so the
  test fails and shows both until someone explains the difference;
- `skip` with a `note`: cronsim rejects the expression (`cronsim-rejects`) or finds no fire within 50
  years (`cronsim-gives-up`), where nothing can be compared.

Exits with status 3 when cronsim cannot be imported (`python3 -m pip install cronsim`).
"""

from __future__ import annotations

import bisect
import calendar
import json
import signal
import sys
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

try:
    import cronsim
    from cronsim import CronSim, CronSimError
except ImportError:  # pragma: no cover - reported to the Swift test
    print("cronsim is not installed: python3 -m pip install cronsim", file=sys.stderr)
    sys.exit(3)

EPOCH = datetime(1970, 1, 1)
DAY = 86400
# cronsim gives up after 50 years without a match; the reference looks as far.
SEARCH_DAYS = 51 * 366


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


class Zone:
    """UTC offsets of one zone from `zoneinfo`, with the few derived questions the reference asks."""

    def __init__(self, name: str):
        self.tz = timezone.utc if name == "UTC" else ZoneInfo(name)
        self.cache: dict[int, int] = {}

    def offset(self, t: int) -> int:
        """The offset in seconds east of UTC at UTC second `t`."""
        o = self.cache.get(t)
        if o is None:
            o = int(datetime.fromtimestamp(t, self.tz).utcoffset().total_seconds())
            if len(self.cache) < 100_000:
                self.cache[t] = o
        return o

    def instants(self, local: int) -> tuple[list[int], int | None]:
        """The instants whose wall clock reads `local` (seconds on the local time line), earliest first,
        and for a local time skipped by a transition, that transition's instant."""
        naive = EPOCH + timedelta(seconds=local)
        offsets = {int(naive.replace(tzinfo=self.tz, fold=f).utcoffset().total_seconds()) for f in (0, 1)}
        found = sorted(local - o for o in offsets if self.offset(local - o) == o)
        if found:
            return found, None
        # Skipped: the transition is the first instant whose local time is past `local`.
        low, high = local - max(offsets) - 1, local - min(offsets)
        assert low + self.offset(low) <= local < high + self.offset(high)
        while high - low > 1:
            mid = (low + high) // 2
            if mid + self.offset(mid) > local:
                high = mid
            else:
                low = mid
        return [], high

    def transitions(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """(instant, offset before, offset after) of each change of offset in [a, b], found by sampling
        every hour (every six hours over long spans) and bisecting."""
        step = 3600 if b - a < 10 * DAY else 6 * 3600
        found = []
        t, previous = a, self.offset(a)
        while t < b:
            u = min(t + step, b)
            current = self.offset(u)
            if current != previous:
                low, high = t, u
                while high - low > 1:
                    mid = (low + high) // 2
                    if self.offset(mid) == previous:
                        low = mid
                    else:
                        high = mid
                found.append((high, previous, self.offset(high)))
                previous = self.offset(high)
                if previous != current:  # a second change within the step
                    t = high
                    continue
            t = u
        return found


def nearest_weekday(n: int, d: date) -> int | None:
    """The day of `d`'s month that `nW` selects: day `n` when it is Monday to Friday, else the nearest
    weekday within the month (Saturday the 1st moves to Monday the 3rd, a Sunday on the last day to the
    Friday before). None when the month has fewer than `n` days."""
    length = calendar.monthrange(d.year, d.month)[1]
    if n > length:
        return None
    weekday = date(d.year, d.month, n).weekday()  # Monday = 0
    if weekday == 5:
        return n - 1 if n > 1 else n + 2
    if weekday == 6:
        return n + 1 if n < length else n - 2
    return n


class Fields:
    """A matcher over local times built from cronsim's own parse of the expression, plus what cronsim
    lacks: `nW` day-of-month terms (`nearest`) and combining the day fields with AND (`day_and`)."""

    def __init__(self, sim: CronSim, nearest: list[int], plain_days: bool, day_and: bool):
        self.sim = sim
        self.seconds = sorted(sim.seconds)
        self.minutes = sorted(sim.minutes)
        self.hours = sorted(sim.hours)
        self.nearest = nearest
        self.plain_days = plain_days
        self.day_and = day_and or sim.day_and

    def match_day(self, d: date) -> bool:
        dom = (self.plain_days and self.sim.match_dom(d)) or any(nearest_weekday(n, d) == d.day for n in self.nearest)
        dow = self.sim.match_dow(d)
        return dom and dow if self.day_and else dom or dow

    def next_match(self, local: int, limit_day: int) -> int | None:
        """The first matching local time at or after `local`, on or before day number `limit_day`."""
        day, sod = divmod(local, DAY)
        d = date(1970, 1, 1) + timedelta(days=day)
        while day <= limit_day:
            if d.month not in self.sim.months:
                first = (d.replace(day=1) + timedelta(days=32)).replace(day=1)
                day += (first - d).days
                d, sod = first, 0
                continue
            if self.match_day(d):
                found = self.time_of_day(sod)
                if found is not None:
                    return day * DAY + found
            day += 1
            d += timedelta(days=1)
            sod = 0
        return None

    def time_of_day(self, sod: int) -> int | None:
        """The first matching second of a day at or after second-of-day `sod`."""
        h, rest = divmod(sod, 3600)
        m, s = divmod(rest, 60)
        for hour in self.hours[bisect.bisect_left(self.hours, h) :]:
            for minute in self.minutes[bisect.bisect_left(self.minutes, m) if hour == h else 0 :]:
                first = s if (hour == h and minute == m) else 0
                i = bisect.bisect_left(self.seconds, first)
                if i < len(self.seconds):
                    return hour * 3600 + minute * 60 + self.seconds[i]
        return None


def reference_fires(fields: Fields, zone: Zone, start_ms: int, count: int, gap: str, fold: str) -> list[int] | None:
    """The first `count` fires strictly after `start_ms` under the given policies (UTC seconds).

    Matching local times are walked in order. Instants come out in order except inside a repeated
    interval under `twice`, so the walk continues until no later local time can denote an instant before
    the count-th fire found: local - offset >= fire for every offset in effect up to that fire.
    """
    after = start_ms // 1000  # fires are whole seconds f with f * 1000 > start_ms
    # Any fire f > after reads local f + offset(f) >= after + (least offset near the start); past two
    # days the local time is later than after + any offset anyway.
    lowest = min(zone.offset(after + k * 1800) for k in range(0, 97))
    local = after + 1 + lowest
    limit_day = local // DAY + SEARCH_DAYS
    fires: set[int] = set()
    highest = None
    while True:
        match = fields.next_match(local, limit_day)
        if match is None:
            break
        if highest is not None and len(fires) >= count:
            kth = sorted(fires)[count - 1]
            if match - highest >= kth:
                break
        instants, transition = zone.instants(match)
        if instants:
            chosen = instants if fold == "twice" else instants[:1]
        else:
            chosen = [transition] if gap == "runAtTransition" else []
        fires.update(f for f in chosen if f > after)
        if highest is None and len(fires) >= count:
            kth = sorted(fires)[count - 1]
            span = kth - after
            step = 900 if span < 10 * DAY else 6 * 3600
            highest = max(zone.offset(after + k * step) for k in range(span // step + 2))
            highest = max(highest, zone.offset(kth))
        local = match + 1
    result = sorted(fires)[:count]
    return result


def misaligned(transition: tuple[int, int, int]) -> bool:
    """Whether cronsim's wall-clock mode may mishandle a transition.

    That mode steps whole hours from hh:00 and starts each day at local midnight, which is right only for
    shifts of whole hours at whole hours whose skipped or repeated local times do not include midnight.
    """
    at, before, after = transition
    low, high = sorted((at + before, at + after))  # the skipped or repeated local times
    crosses_midnight = low // DAY != (high - 1) // DAY or low % DAY == 0
    return (after - before) % 3600 != 0 or (at + before) % 3600 != 0 or crosses_midnight


def cronsim_defect(
    expression: str, zone: Zone, start_ms: int, fixed: bool, ours: list[int], theirs: list[int]
) -> str | None:
    """Names the known cronsim defect that explains a difference from the reference, if one does.

    - `fold-start`: for fixed-time expressions cronsim walks naive local times and drops the start's
      fold, so from inside the second copy of a repeated interval it returns the first copy's instants,
      which are before the start instant (every fire must be after it).
    - `unaligned-gap`: for fixed-time expressions cronsim moves a time skipped by a transition forward a
      whole minute at a time until it exists, so when the transition lands on a local time that is not a
      whole minute (local mean time offsets such as Monrovia's -0:44:30) it fires up to a minute after
      the end of the gap instead of at it.
    - `misaligned-transition`: in wall-clock mode cronsim steps whole hours from hh:00 and starts days at
      local midnight; across a transition that is not a whole-hour shift at a whole hour, or whose skipped
      or repeated interval touches midnight, it lands on wrong minutes, skips days or repeats fires.
    """
    after = start_ms // 1000
    if fixed:
        if theirs and theirs[0] <= after:
            return "fold-start"
        for f in set(ours) - set(theirs):
            if (f + zone.offset(f)) % 60 != 0:
                return "unaligned-gap"
        return None
    last = max(ours[-1] if ours else after, theirs[-1] if theirs else after)
    if any(misaligned(tr) for tr in zone.transitions(after - DAY, last + DAY)):
        return "misaligned-transition"
    return None


def answer_case(case: list, zones: dict[str, Zone]) -> dict:
    expression, zone_name, start_ms, count, policy, day_match = case
    zone = zones.get(zone_name) or zones.setdefault(zone_name, Zone(zone_name))
    start = datetime.fromtimestamp(start_ms // 1000, zone.tz).replace(microsecond=(start_ms % 1000) * 1000)
    fields = expression.split()
    fixed = len(fields) == 5 and not fields[0].startswith("*") and not fields[1].startswith("*")
    gap, fold = policy or (("runAtTransition", "once") if fixed else ("skip", "twice"))

    # cronsim has no `nW`: such terms leave the day-of-month field and are matched here (a field of
    # only `nW` terms becomes `1`, ignored). The field does not start with `*`, so the OR rule holds.
    dom = len(fields) - 3
    terms = fields[dom].upper().split(",")
    nearest = [int(t[:-1]) for t in terms if t.endswith("W") and t != "LW"]
    rest = [t for t in terms if not (t.endswith("W") and t != "LW")]
    fields[dom] = ",".join(rest) or "1"
    try:
        sim = CronSim(" ".join(fields), start)
    except CronSimError:
        return {"source": "skip", "note": "cronsim-rejects"}
    matcher = Fields(sim, nearest, bool(rest), day_match == "and")
    if nearest or matcher.day_and != sim.day_and:
        policy = policy or [gap, fold]  # cronsim answers a different expression: the reference alone

    theirs: list[int] | None = None
    note = None
    if policy is None:
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        try:
            theirs = [int(next(sim).timestamp()) for _ in range(count)]
        except Timeout:
            # cronsim can loop forever, e.g. a 6-field daily expression across a St. John's transition at
            # 00:01 local time; the reference still answers.
            note = "cronsim-hangs"
        except StopIteration:
            return {"source": "skip", "note": "cronsim-gives-up"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        ours = reference_fires(matcher, zone, start_ms, count, gap, fold)
    except Timeout:
        ours = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

    if theirs is None:
        if ours is None:
            return {"source": "skip", "note": "both-time-out"}
        if len(ours) < count:
            return {"source": "skip", "note": "beyond-reference-horizon"}
        reason = "nearest-weekday" if nearest else "day-match-and" if day_match == "and" else "policy-override"
        return {"source": "reference", "fires": ours, "note": note or reason}
    if ours is None or ours == theirs:
        return {"source": "cronsim", "fires": theirs}
    if len(ours) < count:
        # The reference looks 51 years ahead of the start's local date; cronsim 50 years past the year
        # of its latest position, which can reach further.
        return {"source": "skip", "note": "beyond-reference-horizon"}
    defect = cronsim_defect(expression, zone, start_ms, fixed, ours, theirs)
    if defect:
        return {"source": "reference", "fires": ours, "note": defect, "cronsim": theirs}
    return {"source": "unexplained", "fires": theirs, "reference": ours}


def main() -> int:
    with open(sys.argv[1]) as f:
        query = json.load(f)
    signal.signal(signal.SIGALRM, on_alarm)
    # A parent may hand down SIGALRM blocked (threads of Swift test runners block most signals).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGALRM])
    zones: dict[str, Zone] = {}
    answers = [answer_case(case, zones) for case in query.get("cases", [])]
    offsets = []
    for name, t in query.get("offsets", []):
        zone = zones.get(name) or zones.setdefault(name, Zone(name))
        offsets.append(zone.offset(t))
    document = {"cronsim": cronsim_version(), "cases": answers, "offsets": offsets}
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    return 0


def cronsim_version() -> str:
    try:
        from importlib.metadata import version

        return version("cronsim")
    except Exception:  # pragma: no cover
        return getattr(cronsim, "__version__", "unknown")


if __name__ == "__main__":
    sys.exit(main())
