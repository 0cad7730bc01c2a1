/// A parsed cron expression: which local wall-clock times it matches.
///
/// Accepts 5 fields (`minute hour day-of-month month day-of-week`) or 6 with a leading seconds field,
/// and the macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly`.
/// Each field is a comma-separated list of `*`, values, ranges `a-b` and steps `*/n`, `a-b/n` and
/// `a/n` (from `a` to the field's maximum). Months and weekdays accept three-letter English names,
/// case-insensitively. Day-of-week runs 0-7, where both 0 and 7 are Sunday.
///
/// Day fields also accept `?` (same as `*`); day-of-month accepts `L` (last day of the month), `LW`
/// (last weekday of the month) and `nW` (the weekday nearest day `n`, staying within the month; no
/// match in months shorter than `n` days); day-of-week accepts `nL` (the last weekday `n` of the
/// month) and `n#k` (the `k`-th weekday `n` of the month, `k` 1-5).
///
/// An expression matches local times only; see ``CronSchedule`` for time zones and DST. Expressions
/// that can never match any date are rejected when parsed.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The text the expression was parsed from.
    public let text: String
    /// How day-of-month and day-of-week combine (see ``DayMatch``).
    public let dayMatch: DayMatch
    /// Whether the expression has a leading seconds field. Five-field expressions fire at second 0.
    public let hasSeconds: Bool

    /// The six field texts, seconds first, upper-cased, with macros expanded (`"0"` when no seconds field).
    let fields: [String]
    /// Seconds as bits 0-59 (bit 0 alone for five-field expressions).
    let seconds: UInt64
    /// Minutes as bits 0-59.
    let minutes: UInt64
    /// Hours as bits 0-23.
    let hours: UInt64
    /// Day-of-month values as bits 1-31.
    var monthDays: UInt32
    /// `L` in day-of-month.
    let lastDayOfMonth: Bool
    /// `LW` in day-of-month.
    let lastWeekdayOfMonth: Bool
    /// Days `n` of `nW` terms as bits 1-31.
    let nearestWeekdays: UInt32
    /// Months as bits 1-12.
    let months: UInt16
    /// Weekdays as bits 0-6, 0 = Sunday.
    var weekdays: UInt8
    /// Weekdays of `nL` terms as bits 0-6.
    var lastWeekdays: UInt8
    /// Weekdays of `n#k` terms: bit `(k - 1) * 8 + n`.
    var nthWeekdays: UInt64
    /// Whether day-of-month and day-of-week combine with OR for this expression.
    var daysCombineWithOr: Bool
    /// Whether the day-of-month field is `*` or `?`-led, i.e. unrestricted for the OR rule.
    let monthDayIsStar: Bool
    /// Whether the day-of-week field is `*` or `?`-led.
    let weekdayIsStar: Bool

    /// Whether the expression runs at fixed times of day, which selects the Vixie/Debian cron DST rule.
    ///
    /// True for five-field expressions (and macros) whose minute and hour fields do not start with `*`
    /// (Vixie cron looks at a field's first character only, so `5,*/10` counts as fixed); such
    /// schedules by default fire once at the end of a spring-forward gap for times inside it and once
    /// in a repeated hour. Six-field expressions are never fixed-time: they follow the wall clock.
    public var isFixedTime: Bool {
        !hasSeconds && !fields[1].hasPrefix("*") && !fields[2].hasPrefix("*")
    }

    /// The six field texts, seconds first; `"0"` stands for the seconds of a five-field expression.
    public var normalizedFields: [String] { fields }

    /// Whether a local wall-clock time (seconds on the local time line) matches every field.
    public func matches(localSeconds: Int64) -> Bool {
        let t = Int(localSeconds)
        let day = CivilCalendar.floorDiv(t, CivilCalendar.secondsPerDay)
        let sod = t - day * CivilCalendar.secondsPerDay
        guard seconds.has(sod % 60), minutes.has(sod / 60 % 60), hours.has(sod / 3600) else { return false }
        let date = CivilCalendar.date(dayNumber: day)
        guard UInt64(months).has(date.month) else { return false }
        return UInt64(dayMask(year: date.year, month: date.month)).has(date.day)
    }

    /// The days of a month that match the day fields, as bits 1-31.
    func dayMask(year: Int, month: Int) -> UInt32 {
        let first = CivilCalendar.weekday(dayNumber: CivilCalendar.dayNumber(year: year, month: month, day: 1))
        return dayMask(length: CivilCalendar.daysIn(month: month, year: year), firstWeekday: first)
    }

    /// The matching days of a month with `length` days whose first day falls on `firstWeekday`.
    func dayMask(length: Int, firstWeekday: Int) -> UInt32 {
        let valid = UInt32((1 << (length + 1)) - 2)
        var byMonthDay = monthDays & valid
        if lastDayOfMonth { byMonthDay |= 1 << length }
        if lastWeekdayOfMonth {
            let lastWeekday = (firstWeekday + length - 1) % 7
            let day = lastWeekday == 0 ? length - 2 : lastWeekday == 6 ? length - 1 : length
            byMonthDay |= 1 << day
        }
        var nearest = nearestWeekdays & valid
        while nearest != 0 {
            let n = nearest.trailingZeroBitCount
            nearest &= nearest - 1
            byMonthDay |= 1 << Self.nearestWeekday(to: n, length: length, firstWeekday: firstWeekday)
        }
        var byWeekday: UInt32 = 0
        if weekdays == 0x7F {
            byWeekday = valid
        } else {
            for day in 1...length {
                let weekday = (firstWeekday + day - 1) % 7
                let bit = UInt8(1) << weekday
                if weekdays & bit != 0 || (lastWeekdays & bit != 0 && day + 7 > length)
                    || nthWeekdays & (UInt64(bit) << ((day - 1) / 7 * 8)) != 0
                {
                    byWeekday |= 1 << day
                }
            }
        }
        return daysCombineWithOr ? byMonthDay | byWeekday : byMonthDay & byWeekday
    }

    /// The weekday (Monday-Friday) nearest day `n` of a month, never leaving the month.
    static func nearestWeekday(to n: Int, length: Int, firstWeekday: Int) -> Int {
        switch (firstWeekday + n - 1) % 7 {
        case 6: return n == 1 ? n + 2 : n - 1  // Saturday: the Friday before, or Monday the 3rd.
        case 0: return n == length ? n - 2 : n + 1  // Sunday: the Monday after, or the Friday before.
        default: return n
        }
    }

    /// Whether any date matches the day and month fields.
    ///
    /// Every month starts on every weekday (and February is both 28 and 29 days long) somewhere in
    /// each 400-year Gregorian cycle, so checking those combinations is exact.
    var canMatchSomeDay: Bool {
        for month in 1...12 where UInt64(months).has(month) {
            let lengths = month == 2 ? [28, 29] : [CivilCalendar.daysIn(month: month, year: 2001)]
            for length in lengths {
                for firstWeekday in 0..<7 where dayMask(length: length, firstWeekday: firstWeekday) != 0 {
                    return true
                }
            }
        }
        return false
    }
}

extension UInt64 {
    /// Whether bit `i` is set.
    @inline(__always) func has(_ i: Int) -> Bool { i >= 0 && i < 64 && (self >> UInt64(i)) & 1 == 1 }

    /// The lowest set bit at position `from` or above, if any.
    @inline(__always) func nextBit(from: Int) -> Int? {
        guard from < 64 else { return nil }
        let rest = self & (~UInt64(0) << UInt64(Swift.max(from, 0)))
        return rest == 0 ? nil : rest.trailingZeroBitCount
    }
}

/// How the day-of-month and day-of-week fields combine when both are restricted.
///
/// With ``or`` (the Vixie cron rule) a day matches when either field matches, provided neither field
/// starts with `*` or `?`; when one of them does, both must match, which makes the other field the
/// only real restriction. With ``and`` both fields must always match.
public enum DayMatch: String, Sendable, Hashable, CaseIterable {
    case or
    case and
}
