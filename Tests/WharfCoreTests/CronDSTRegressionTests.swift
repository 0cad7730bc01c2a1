import Testing

@testable import WharfCore

/// Fixed cases from the differential runs (see ``CronDifferentialTests``): zones with unusual transitions,
/// and the transitions where cronsim is wrong, with the answer of the oracle's reference and the reason.
@Suite struct CronDSTRegressionTests {
    @Test func caracasHalfHourShifts() throws {
        // 2007-12-09 03:00 -04 -> 02:30 -04:30 repeats 02:30-03:00; 2016-05-01 02:30 -04:30 -> 03:00 -04 skips it.
        #expect(
            try cronLocalFires("30 2 * * *", "America/Caracas", after: "2016-04-30T12:00:00Z", count: 2)
                == ["2016-05-01T03:00:00-04:00", "2016-05-02T02:30:00-04:00"])
        #expect(
            try cronLocalFires("*/15 2 * * *", "America/Caracas", after: "2016-05-01T06:00:00Z", count: 3)
                == ["2016-05-01T02:00:00-04:30", "2016-05-01T02:15:00-04:30", "2016-05-02T02:00:00-04:00"])
        #expect(
            try cronLocalFires("45 2 * * *", "America/Caracas", after: "2007-12-08T12:00:00Z", count: 2)
                == ["2007-12-09T02:45:00-04:00", "2007-12-10T02:45:00-04:30"])
        #expect(
            try cronLocalFires("*/20 2 * * *", "America/Caracas", after: "2007-12-09T06:00:00Z", count: 6)
                == [
                    "2007-12-09T02:20:00-04:00", "2007-12-09T02:40:00-04:00", "2007-12-09T02:40:00-04:30",
                    "2007-12-10T02:00:00-04:30", "2007-12-10T02:20:00-04:30", "2007-12-10T02:40:00-04:30",
                ])
    }

    @Test func dublinNegativeDaylightTime() throws {
        // The TZif data marks winter (+00) as Dublin's daylight time; only the offsets matter.
        #expect(
            try cronLocalFires("30 1 * * *", "Europe/Dublin", after: "2026-03-28T12:00:00Z", count: 2)
                == ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"])
        // Starting in the second 01:10 of 2026-10-25: the first 01:30 is past. cronsim, which drops the
        // start's fold for fixed-time expressions, answers 01:30+01:00, before the start.
        #expect(
            try cronLocalFires("30 1 * * *", "Europe/Dublin", after: "2026-10-25T01:10:00Z", count: 2)
                == ["2026-10-26T01:30:00+00:00", "2026-10-27T01:30:00+00:00"])
    }

    @Test func santiagoTransitionsAtMidnight() throws {
        // 2026-09-06 00:00 -04 -> 01:00 -03: no midnight that day. 2026-04-05 00:00 -03 -> 23:00 -04.
        #expect(
            try cronLocalFires("30 0 * * *", "America/Santiago", after: "2026-09-05T12:00:00Z", count: 2)
                == ["2026-09-06T01:00:00-03:00", "2026-09-07T00:30:00-03:00"])
        #expect(
            try cronLocalFires("*/30 0 * * *", "America/Santiago", after: "2026-09-05T12:00:00Z", count: 2)
                == ["2026-09-07T00:00:00-03:00", "2026-09-07T00:30:00-03:00"])
        #expect(
            try cronLocalFires("30 23 * * *", "America/Santiago", after: "2026-04-04T12:00:00Z", count: 3)
                == ["2026-04-04T23:30:00-03:00", "2026-04-05T23:30:00-04:00", "2026-04-06T23:30:00-04:00"])
    }

    @Test func kwajaleinSkippedADay() throws {
        // 1993-08-20 24:00 -12 became 1993-08-22 00:00 +12.
        #expect(
            try cronLocalFires("0 12 * * *", "Pacific/Kwajalein", after: "1993-08-19T12:00:00Z", count: 3)
                == ["1993-08-19T12:00:00-12:00", "1993-08-20T12:00:00-12:00", "1993-08-22T00:00:00+12:00"])
    }

    /// Monrovia's clocks went from 00:00 at -0:44:30 to 00:44:30 at +00 on 1972-01-07. The end of the gap
    /// is not a whole minute; cronsim, which moves a skipped time forward a minute at a time until it
    /// exists, fires at 00:45:00 instead of at the transition.
    @Test func gapEndingOffTheMinute() throws {
        #expect(
            try cronLocalFires("30 0 * * *", "Africa/Monrovia", after: "1972-01-06T12:00:00Z", count: 2)
                == ["1972-01-07T00:44:30+00:00", "1972-01-08T00:30:00+00:00"])
    }

    /// St. John's fell back at 00:01 local time until 2011, so midnight happened twice on 2008-11-02.
    /// cronsim's wall-clock mode, which starts each day at local midnight, returns the first midnight
    /// three times.
    @Test func repeatedMidnight() throws {
        #expect(
            try cronLocalFires("0 0 0 * * *", "America/St_Johns", after: "2008-11-01T12:00:00Z", count: 3)
                == ["2008-11-02T00:00:00-02:30", "2008-11-02T00:00:00-03:30", "2008-11-03T00:00:00-03:30"])
        #expect(
            try cronLocalFires("0 0 0 * * *", "America/St_Johns", after: "2009-03-07T12:00:00Z", count: 3)
                == ["2009-03-08T00:00:00-03:30", "2009-03-09T00:00:00-02:30", "2009-03-10T00:00:00-02:30"])
    }

    /// Lord Howe falls back half an hour at 02:00. cronsim's wall-clock mode steps whole hours from the
    /// half hour it lands on and misses 03:00.
    @Test func wholeHoursAfterAHalfHourFold() throws {
        #expect(
            try cronLocalFires("0 */3 * * *", "Australia/Lord_Howe", after: "2026-04-04T14:59:58Z", count: 3)
                == ["2026-04-05T03:00:00+10:30", "2026-04-05T06:00:00+10:30", "2026-04-05T09:00:00+10:30"])
    }

    /// Rare expressions far beyond the transition table, where every half-year period comes from the
    /// footer rule: the search jumps over periods that cannot hold the next match.
    @Test func rareExpressionsUnderFooterRules() throws {
        let after = try #require(Timestamp.parse("2065-01-01T00:00:00Z"))
        let leapMonday = try CronSchedule.parse("0 0 29 2 MON", timezone: "Australia/Lord_Howe", dayMatch: .and)
        #expect(
            leapMonday.nextFires(afterMs: after, count: 2).map { formatLocal($0, leapMonday.zone) } == [
                "2072-02-29T00:00:00+11:00", "2112-02-29T00:00:00+11:00",
            ])
        let fifthMonday = try CronSchedule.parse("0 0 * 2 MON#5", timezone: "Europe/London")
        #expect(
            fifthMonday.nextFires(afterMs: after, count: 2).map { formatLocal($0, fifthMonday.zone) } == [
                "2072-02-29T00:00:00+00:00", "2112-02-29T00:00:00+00:00",
            ])
        // Unoptimized code is far slower than optimized (about 50 µs a call here); the bound catches a
        // search that visits every period again.
        let clock = ContinuousClock()
        var checksum: Int64 = 0
        let elapsed = clock.measure {
            var cursor = after
            for _ in 0..<2000 {
                checksum &+= leapMonday.nextFire(afterMs: cursor) ?? 0
                cursor &+= 86_400_000 * 200
            }
        }
        #expect(checksum != 0)
        #expect(elapsed < .seconds(1), "2,000 rare next-fire computations took \(elapsed)")
    }
}
