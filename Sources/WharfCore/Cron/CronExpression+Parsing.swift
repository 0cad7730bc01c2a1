extension CronExpression {
    /// Parses a cron expression.
    ///
    /// - Parameters:
    ///   - text: five or six whitespace-separated fields, or a macro such as `@daily`.
    ///   - dayMatch: how day-of-month and day-of-week combine when both are restricted.
    /// - Throws: ``CronError`` naming the field and the offending text, or explaining why the
    ///   expression can never fire.
    public init(_ text: String, dayMatch: DayMatch = .or) throws {
        var parts = text.split(whereSeparator: \.isWhitespace).map { $0.uppercased() }
        if parts.count == 1, let first = parts.first, first.hasPrefix("@") {
            guard let expansion = Self.macros[first] else {
                if first == "@EVERY" {
                    throw CronError("'@every' needs a duration such as '@every 90s'", field: "interval")
                }
                throw CronError("Unknown macro '\(text.trimmed)'; expected one of \(Self.macroNames)")
            }
            parts = expansion.split(separator: " ").map(String.init)
        } else if parts.first?.hasPrefix("@") == true {
            if parts.first == "@EVERY" {
                throw CronError(
                    "'\(text.trimmed)' is an interval, not a cron expression; parse it with CronSchedule.parse",
                    field: "interval")
            }
            throw CronError("Unknown macro '\(text.trimmed)'; expected one of \(Self.macroNames)")
        }
        guard parts.count == 5 || parts.count == 6 else {
            throw CronError(
                "Expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, "
                    + "got \(parts.count) in '\(text.trimmed)'")
        }
        let hasSeconds = parts.count == 6
        if !hasSeconds { parts.insert("0", at: 0) }

        let second = try CronFieldParser(kind: .second).parse(parts[0])
        let minute = try CronFieldParser(kind: .minute).parse(parts[1])
        let hour = try CronFieldParser(kind: .hour).parse(parts[2])
        let monthDay = try CronFieldParser(kind: .dayOfMonth).parse(parts[3])
        let month = try CronFieldParser(kind: .month).parse(parts[4])
        let weekday = try CronFieldParser(kind: .dayOfWeek).parse(parts[5])

        let monthDayIsStar = parts[3].hasPrefix("*") || parts[3].hasPrefix("?")
        let weekdayIsStar = parts[5].hasPrefix("*") || parts[5].hasPrefix("?")
        // Fold day-of-week 7 onto 0: both are Sunday.
        let weekdayBits = UInt8(truncatingIfNeeded: (weekday.values | (weekday.values >> 7)) & 0x7F)

        self.text = text
        self.dayMatch = dayMatch
        self.hasSeconds = hasSeconds
        self.fields = parts
        self.seconds = second.values
        self.minutes = minute.values
        self.hours = hour.values
        self.monthDays = UInt32(truncatingIfNeeded: monthDay.values)
        self.lastDayOfMonth = monthDay.last
        self.lastWeekdayOfMonth = monthDay.lastWeekday
        self.nearestWeekdays = UInt32(truncatingIfNeeded: monthDay.nearestWeekdays)
        self.months = UInt16(truncatingIfNeeded: month.values)
        self.weekdays = weekdayBits
        self.lastWeekdays = weekday.lastWeekdays
        self.nthWeekdays = weekday.nthWeekdays
        self.monthDayIsStar = monthDayIsStar
        self.weekdayIsStar = weekdayIsStar
        self.daysCombineWithOr = dayMatch == .or && !monthDayIsStar && !weekdayIsStar

        if !canMatchSomeDay { throw neverFiresError() }
    }

    static let macros: [String: String] = [
        "@YEARLY": "0 0 1 1 *", "@ANNUALLY": "0 0 1 1 *", "@MONTHLY": "0 0 1 * *", "@WEEKLY": "0 0 * * 0",
        "@DAILY": "0 0 * * *", "@MIDNIGHT": "0 0 * * *", "@HOURLY": "0 * * * *",
    ]
    static let macroNames = "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>"

    /// The error for an expression whose day fields match no date in any month it allows.
    private func neverFiresError() -> CronError {
        let monthNames = (1...12).filter { UInt64(months).has($0) }.map { CronDescriber.monthNames[$0 - 1] }
        let monthList = CronDescriber.list(monthNames, conjunction: "or")
        if !canMatchSomeDay(weekdayOnly: false) {
            return CronError(
                "Day-of-month '\(fields[3])' never occurs in \(monthList); the expression can never fire",
                field: "day-of-month")
        }
        if !canMatchSomeDay(weekdayOnly: true) {
            return CronError(
                "Day-of-week '\(fields[5])' never occurs in \(monthList); the expression can never fire",
                field: "day-of-week")
        }
        return CronError(
            "Day-of-month '\(fields[3])' and day-of-week '\(fields[5])' must both match but never fall on the same "
                + "day in \(monthList); the expression can never fire", field: "day-of-month")
    }

    /// Whether one day field alone matches some day of the allowed months.
    private func canMatchSomeDay(weekdayOnly: Bool) -> Bool {
        var single = self
        if weekdayOnly {
            single.monthDays = ~0
        } else {
            single.weekdays = 0x7F
            single.lastWeekdays = 0
            single.nthWeekdays = 0
        }
        single.daysCombineWithOr = false
        return single.canMatchSomeDay
    }
}

extension String {
    /// The string without leading and trailing whitespace.
    var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
