import Testing

@testable import WharfCore

/// The next `count` fires as RFC 3339 UTC strings.
func cronFires(
    _ text: String, timezone: String = "UTC", after: String, count: Int = 3, dayMatch: DayMatch = .or,
    dstGap: DSTGapPolicy? = nil, dstFold: DSTFoldPolicy? = nil
) throws -> [String] {
    let schedule = try CronSchedule.parse(
        text, timezone: timezone, dayMatch: dayMatch, dstGap: dstGap, dstFold: dstFold)
    let start = try #require(Timestamp.parse(after))
    return schedule.nextFires(afterMs: start, count: count).map { Timestamp.format(epochMs: $0) }
}

/// The error a parse throws, or nil.
func cronError(_ text: String, dayMatch: DayMatch = .or) -> CronError? {
    do {
        _ = try CronExpression(text, dayMatch: dayMatch)
        return nil
    } catch {
        return error as? CronError
    }
}

@Suite struct CronExpressionTests {
    @Test func fieldsRangesStepsListsAndNames() throws {
        #expect(
            try cronFires("*/15 9-17 * * MON-FRI", after: "2026-11-20T16:50:00Z")
                == ["2026-11-20T17:00:00.000Z", "2026-11-20T17:15:00.000Z", "2026-11-20T17:30:00.000Z"])
        #expect(
            try cronFires("0 0 1 jan,Jul *", after: "2026-03-01T00:00:00Z", count: 2)
                == ["2026-07-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"])
        // a-b/n, a/n (to the field's maximum) and lists mixing them.
        #expect(
            try cronFires("10-30/10,55 8/6 * * *", after: "2026-01-01T00:00:00Z", count: 5)
                == [
                    "2026-01-01T08:10:00.000Z", "2026-01-01T08:20:00.000Z", "2026-01-01T08:30:00.000Z",
                    "2026-01-01T08:55:00.000Z", "2026-01-01T14:10:00.000Z",
                ])
        // Month steps, ranges of names.
        #expect(
            try cronFires("0 0 1 FEB-DEC/5 *", after: "2026-01-01T00:00:00Z", count: 3)
                == ["2026-02-01T00:00:00.000Z", "2026-07-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"])
    }

    @Test func sixFieldsPutSecondsFirst() throws {
        let e = try CronExpression("30 */20 * * * *")
        #expect(e.hasSeconds)
        #expect(
            try cronFires("30 */20 * * * *", after: "2026-01-01T00:00:00Z")
                == ["2026-01-01T00:00:30.000Z", "2026-01-01T00:20:30.000Z", "2026-01-01T00:40:30.000Z"])
        #expect(
            try cronFires("*/20 * * * * *", after: "2026-01-01T00:00:59.500Z")
                == ["2026-01-01T00:01:00.000Z", "2026-01-01T00:01:20.000Z", "2026-01-01T00:01:40.000Z"])
        #expect(try !CronExpression("0 * * * *").hasSeconds)
    }

    @Test func weekdaySevenAndZeroAreSunday() throws {
        for text in ["0 12 * * 7", "0 12 * * 0", "0 12 * * sun", "0 12 * * 0,7"] {
            // 2026-11-22 is a Sunday.
            let fires = try cronFires(text, after: "2026-11-20T13:00:00Z", count: 1)
            #expect(fires.last == "2026-11-22T12:00:00.000Z", "\(text)")
        }
        // a/n in day-of-week runs to 7, so 1/2 is Monday, Wednesday, Friday and Sunday, as in Vixie cron.
        #expect(
            try cronFires("0 0 * * 1/2", after: "2026-11-22T12:00:00Z", count: 4)
                == [
                    "2026-11-23T00:00:00.000Z", "2026-11-25T00:00:00.000Z", "2026-11-27T00:00:00.000Z",
                    "2026-11-29T00:00:00.000Z",
                ])
    }

    @Test func macros() throws {
        let after = "2026-11-18T10:15:00Z"
        #expect(try cronFires("@yearly", after: after, count: 1) == ["2027-01-01T00:00:00.000Z"])
        #expect(try cronFires("@annually", after: after, count: 1) == ["2027-01-01T00:00:00.000Z"])
        #expect(try cronFires("@monthly", after: after, count: 1) == ["2026-12-01T00:00:00.000Z"])
        #expect(try cronFires("@weekly", after: after, count: 1) == ["2026-11-22T00:00:00.000Z"])
        #expect(try cronFires("@daily", after: after, count: 1) == ["2026-11-19T00:00:00.000Z"])
        #expect(try cronFires("@MIDNIGHT", after: after, count: 1) == ["2026-11-19T00:00:00.000Z"])
        #expect(try cronFires("@hourly", after: after, count: 1) == ["2026-11-18T11:00:00.000Z"])
        #expect(try CronExpression("@daily").isFixedTime)
        #expect(try !CronExpression("@hourly").isFixedTime)
        #expect(try CronExpression("@daily").text == "@daily")
        #expect(cronError("@reboot")?.message.contains("Unknown macro") == true)
        #expect(cronError("@every 5m")?.field == "interval")
    }

    @Test func lastDayLastWeekdayNthAndNearestWeekday() throws {
        #expect(
            try cronFires("0 0 L * *", after: "2028-02-01T00:00:00Z", count: 3)
                == ["2028-02-29T00:00:00.000Z", "2028-03-31T00:00:00.000Z", "2028-04-30T00:00:00.000Z"])
        // 2026-05-31 is a Sunday, 2026-10-31 a Saturday.
        #expect(
            try cronFires("0 0 LW * *", after: "2026-05-01T00:00:00Z", count: 1) == ["2026-05-29T00:00:00.000Z"])
        #expect(
            try cronFires("0 0 LW * *", after: "2026-10-01T00:00:00Z", count: 1) == ["2026-10-30T00:00:00.000Z"])
        #expect(
            try cronFires("0 0 * * 5L", after: "2026-11-01T00:00:00Z", count: 2)
                == ["2026-11-27T00:00:00.000Z", "2026-12-25T00:00:00.000Z"])
        #expect(
            try cronFires("0 0 * * MON#2,fri#5", after: "2026-05-01T00:00:00Z", count: 3)
                == ["2026-05-11T00:00:00.000Z", "2026-05-29T00:00:00.000Z", "2026-06-08T00:00:00.000Z"])
        // nW: 2026-11-01 is a Sunday (Monday the 2nd); 2026-08-01 a Saturday (Monday the 3rd, staying in
        // the month); 2026-05-31 a Sunday at the end of the month (Friday the 29th); 2026-11-14 a Saturday.
        #expect(try cronFires("0 0 1W * *", after: "2026-10-31T00:00:00Z", count: 1) == ["2026-11-02T00:00:00.000Z"])
        #expect(try cronFires("0 0 1W * *", after: "2026-07-31T00:00:00Z", count: 1) == ["2026-08-03T00:00:00.000Z"])
        #expect(try cronFires("0 0 31W * *", after: "2026-05-01T00:00:00Z", count: 1) == ["2026-05-29T00:00:00.000Z"])
        #expect(try cronFires("0 0 14W * *", after: "2026-11-01T00:00:00Z", count: 1) == ["2026-11-13T00:00:00.000Z"])
        // 31W does not fire in months without a 31st.
        #expect(
            try cronFires("0 0 31W * *", after: "2026-06-01T00:00:00Z", count: 1) == ["2026-07-31T00:00:00.000Z"])
        // Lists may mix L with days.
        #expect(
            try cronFires("0 0 1,L * *", after: "2026-02-02T00:00:00Z", count: 2)
                == ["2026-02-28T00:00:00.000Z", "2026-03-01T00:00:00.000Z"])
    }

    @Test func questionMarkMeansStarInDayFields() throws {
        #expect(
            try cronFires("0 0 ? * MON", after: "2026-11-18T00:00:00Z", count: 1)
                == cronFires("0 0 * * MON", after: "2026-11-18T00:00:00Z", count: 1))
        #expect(
            try cronFires("0 0 15 * ?", after: "2026-11-18T00:00:00Z", count: 1) == ["2026-12-15T00:00:00.000Z"])
        #expect(cronError("? * * * *")?.field == "minute")
    }

    @Test func dayFieldsCombineWithOrUnlessOneStartsWithStar() throws {
        let after = "2026-11-01T00:00:00Z"
        // Both restricted: the 13th OR any Friday (2026-11-06, 13 and 20 are Fridays).
        #expect(
            try cronFires("0 0 13 * FRI", after: after, count: 3)
                == ["2026-11-06T00:00:00.000Z", "2026-11-13T00:00:00.000Z", "2026-11-20T00:00:00.000Z"])
        // dayMatch .and: Friday the 13th only.
        #expect(
            try cronFires("0 0 13 * FRI", after: "2026-01-01T00:00:00Z", count: 2, dayMatch: .and)
                == ["2026-02-13T00:00:00.000Z", "2026-03-13T00:00:00.000Z"])
        // A field starting with * makes it AND: odd days that are Mondays.
        #expect(
            try cronFires("0 0 */2 * MON", after: after, count: 3)
                == ["2026-11-09T00:00:00.000Z", "2026-11-23T00:00:00.000Z", "2026-12-07T00:00:00.000Z"])
        // */7 in day-of-week is Sunday (0 and 7): the first Sunday of each month.
        #expect(
            try cronFires("0 0 1-7 * */7", after: after, count: 2)
                == ["2026-12-06T00:00:00.000Z", "2027-01-03T00:00:00.000Z"])
    }

    @Test func rejectsBadSyntaxNamingFieldAndText() {
        let cases: [(String, String, String)] = [
            ("61 * * * *", "minute", "61"),
            ("* 24 * * *", "hour", "24"),
            ("* * 0 * *", "day-of-month", "0"),
            ("* * * 13 *", "month", "13"),
            ("* * * * 8", "day-of-week", "8"),
            ("5-1 * * * *", "minute", "5-1"),
            ("*/0 * * * *", "minute", "*/0"),
            ("* * * FOO *", "month", "FOO"),
            ("* * * * MON#6", "day-of-week", "MON#6"),
            ("* * * * L", "day-of-week", "L"),
            ("* * 32W * *", "day-of-month", "32"),
            ("1,,2 * * * *", "minute", "empty"),
            ("* * * JAN-MON *", "month", "MON"),
            ("a * * * * *", "second", "a"),
            ("* * L/2 * *", "day-of-month", "L"),
            ("* * * * 1-5L", "day-of-week", "1-5"),
        ]
        for (text, field, fragment) in cases {
            let error = cronError(text)
            #expect(error?.field == field, "\(text): \(String(describing: error))")
            #expect(error?.message.contains(fragment) == true, "\(text): \(String(describing: error))")
            #expect(error?.message.contains(field) == true, "\(text): \(String(describing: error))")
        }
        for text in ["", "* * * *", "* * * * * * *", "  "] {
            #expect(cronError(text)?.message.contains("Expected 5 fields") == true, "\(text)")
        }
    }

    @Test func rejectsExpressionsThatCanNeverFire() {
        let e1 = cronError("0 0 30 2 *")
        #expect(e1?.field == "day-of-month")
        #expect(e1?.message == "Day-of-month '30' never occurs in February; the expression can never fire")
        let e2 = cronError("0 0 31 4,6 *")
        #expect(e2?.message == "Day-of-month '31' never occurs in April or June; the expression can never fire")
        #expect(cronError("0 0 31W 2,4 *")?.field == "day-of-month")
        // The fifth Monday of February exists in leap years starting on a Monday (e.g. 2016).
        #expect(cronError("0 0 * 2 MON#5") == nil)
        // Both must match but never coincide.
        let e3 = cronError("0 0 */15 * MON#2")
        #expect(e3?.field == "day-of-month")
        #expect(e3?.message.contains("never fall on the same day") == true)
        #expect(cronError("0 0 1 * MON#2", dayMatch: .and) != nil)
        #expect(cronError("0 0 1 * MON#2") == nil)  // OR: the 1st or the second Monday.
        #expect(cronError("0 0 30 2 MON") == nil)  // OR: any Monday in February.
        #expect(cronError("0 0 30 2 MON", dayMatch: .and)?.field == "day-of-month")
        #expect(cronError("0 0 29 2 *") == nil)
    }

    @Test func fixedTimeFollowsCronsimsRule() throws {
        // As in Vixie/Debian cron, which sets its MIN_STAR and HR_STAR flags from a field's first character
        // only, a list that merely contains a `*/n` term is fixed-time.
        let fixed = [
            "0 2 * * *", "30 1,2 * * *", "0-59 0-23 * * *", "5/10 2 * * *", "5,*/10 2 * * *", "@daily", "@weekly",
        ]
        let wall = ["* 2 * * *", "*/5 2 * * *", "0 * * * *", "0 */2 * * *", "0 0 2 * * *", "@hourly"]
        for text in fixed { #expect(try CronExpression(text).isFixedTime, "\(text)") }
        for text in wall { #expect(try !CronExpression(text).isFixedTime, "\(text)") }
    }

    @Test func matchesLocalTimes() throws {
        let e = try CronExpression("30 9 * * MON-FRI")
        let monday0930 = try #require(Timestamp.parse("2026-11-23T09:30:00Z")) / 1000
        #expect(e.matches(localSeconds: monday0930))
        #expect(!e.matches(localSeconds: monday0930 + 1))
        #expect(!e.matches(localSeconds: monday0930 - 2 * 86_400))
    }

    @Test func descriptions() throws {
        let cases: [(String, String)] = [
            ("30 9 * * 1-5", "At 09:30 on Monday through Friday"),
            ("*/15 * * * *", "Every 15 minutes"),
            ("0 0 * * 5L", "At 00:00 on the last Friday of the month"),
            ("* * * * *", "Every minute"),
            ("0 * * * *", "Every hour"),
            ("5 * * * *", "At minute 5 of every hour"),
            ("0 */2 * * *", "Every 2 hours"),
            ("*/15 9-17 * * *", "Every 15 minutes from 09:00 through 17:45"),
            ("0 9-17 * * MON-FRI", "Every hour from 09:00 through 17:00 on Monday through Friday"),
            ("0 9,17 * * *", "At 09:00 and 17:00"),
            ("@monthly", "At 00:00 on day 1 of the month"),
            ("@yearly", "At 00:00 on January 1"),
            ("@weekly", "At 00:00 on Sunday"),
            ("0 0 L * *", "At 00:00 on the last day of the month"),
            ("0 0 LW * *", "At 00:00 on the last weekday of the month"),
            ("0 0 15W * *", "At 00:00 on the weekday nearest day 15 of the month"),
            ("0 0 * * MON#2", "At 00:00 on the second Monday of the month"),
            ("0 0 1,15 * *", "At 00:00 on days 1 and 15 of the month"),
            ("0 0 13 * FRI", "At 00:00 on day 13 of the month or on Friday"),
            ("0 12 * * SAT,SUN", "At 12:00 on Saturday and Sunday"),
            ("0 0 1 */3 *", "At 00:00 on day 1 of the month in January, April, July and October"),
            ("*/10 * * * * *", "Every 10 seconds"),
            ("0 30 9 * * *", "At 09:30:00"),
            ("0 0 * JAN-MAR *", "At 00:00 in January through March"),
            ("0 0 */2 * *", "At 00:00 on every 2nd day of the month"),
        ]
        for (text, expected) in cases {
            #expect(try CronExpression(text).description == expected, "\(text)")
        }
        #expect(
            try CronExpression("0 0 13 * FRI", dayMatch: .and).description
                == "At 00:00 on day 13 of the month if it is a Friday")
    }
}
