import Testing

@testable import WharfCore

/// The limits the server enforces on schedules: the shortest period, the year 9999, and the bounded
/// cache of compiled timings.
@Suite struct CronLimitsTests {
    func spacing(_ text: String) throws -> Int { try CronExpression(text, dayMatch: .or).shortestSpacingSeconds }

    @Test func shortestSpacingReadsSecondsMinutesAndHours() throws {
        #expect(try spacing("* * * * * *") == 1)
        #expect(try spacing("*/5 * * * * *") == 5)
        #expect(try spacing("0,1 0 0 * * *") == 1)
        #expect(try spacing("* * * * *") == 60)
        #expect(try spacing("*/15 * * * *") == 900)
        #expect(try spacing("0 * * * *") == 3600)
        #expect(try spacing("@daily") == 86_400)
        #expect(try spacing("@yearly") == 86_400)
        // From the last second of one minute to the first of the next: 59 -> 60.
        #expect(try spacing("0,59 * * * * *") == 1)
        // Minute 59 of hour 1 to minute 0 of hour 2 (hours 1 and 2): one minute.
        #expect(try spacing("0 0,59 1,2 * * *") == 60)
        // 23:59 to 00:00 of the next day.
        #expect(try spacing("59 23 * * *") == 86_400)
        #expect(try spacing("0 0,23 * * *") == 3600)
        #expect(try spacing("30 9 * * MON-FRI") == 86_400)
    }

    @Test func theShortestPeriodOfAnIntervalIsTheInterval() throws {
        #expect(CronSchedule(everyMs: 1).shortestPeriodMs == 1)
        #expect(try CronSchedule.parse("@every 1h30m").shortestPeriodMs == 5_400_000)
        #expect(try CronSchedule.parse("*/2 * * * * *").shortestPeriodMs == 2_000)
    }

    @Test func noFireAfterTheYear9999() throws {
        let from = try #require(Timestamp.parse("9990-01-01T00:00:00Z"))
        // Leap days: 9992 and 9996; the next would be in 10004.
        let leap = try CronSchedule.parse("0 0 29 2 *").nextFires(afterMs: from, count: 10)
        #expect(leap.map { Timestamp.format(epochMs: $0) } == ["9992-02-29T00:00:00.000Z", "9996-02-29T00:00:00.000Z"])
        let last = try #require(Timestamp.parse("9999-12-31T23:59:58Z"))
        let seconds = CronSchedule(everyMs: 1000).nextFires(afterMs: last - 1, count: 5)
        #expect(seconds == [last, last + 1000])
        #expect(CronSchedule(everyMs: 1000).nextFire(afterMs: CronSchedule.latestFireMs) == nil)
        #expect(CronSchedule(everyMs: 7).nextFire(afterMs: Int64.max - 1) == nil)
    }

    @Test func theCacheHoldsAtMostItsCapacityAndReturnsWhatItCompiled() throws {
        var cache = CronScheduleCache(capacity: 100)
        var compiled = 0
        for i in 0..<10_000 {
            let s = try cache.schedule(for: "k\(i)") {
                compiled += 1
                return CronSchedule(everyMs: Int64(i + 1))
            }
            #expect(s.everyMs == Int64(i + 1))
            #expect(cache.count <= 100)
        }
        #expect(compiled == 10_000)
        // A key in use stays: look one up between every insertion.
        var hot = 0
        for i in 0..<1_000 {
            _ = cache.schedule(for: "hot") {
                hot += 1
                return CronSchedule(everyMs: 5)
            }
            _ = cache.schedule(for: "cold\(i)") { CronSchedule(everyMs: 6) }
        }
        #expect(hot == 1)
        cache.removeAll()
        #expect(cache.count == 0)
    }
}
