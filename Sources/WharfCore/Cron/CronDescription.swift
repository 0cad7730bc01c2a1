extension CronExpression {
    /// A plain-English description, e.g. `At 09:30 on Monday through Friday` or `Every 15 minutes`.
    public var description: String { CronDescriber(expression: self).sentence() }
}

/// Renders cron expressions and intervals as plain English.
///
/// Works from the parsed bit sets rather than the text, so equivalent spellings (`1-5`, `MON-FRI`)
/// read the same. The wording aims to be clear rather than exhaustive for unusual combinations.
struct CronDescriber {
    static let monthNames = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
        "November", "December",
    ]
    static let weekdayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    static let ordinalWords = ["first", "second", "third", "fourth", "fifth"]

    let expression: CronExpression

    func sentence() -> String {
        var parts = [timePhrase()]
        let (day, monthConsumed) = dayPhrase()
        if let day { parts.append(day) }
        if !monthConsumed, let month = monthPhrase() { parts.append(month) }
        return parts.joined(separator: " ")
    }

    // MARK: Time of day

    private func timePhrase() -> String {
        let e = expression
        let secs = Self.values(e.seconds, 0...59)
        let mins = Self.values(e.minutes, 0...59)
        let hrs = Self.values(e.hours, 0...23)
        let showSeconds = e.hasSeconds && secs != [0]
        if mins.count == 1, hrs.count == 1, secs.count <= 4 {
            let second: [Int?] = e.hasSeconds ? secs : [nil]
            return "At " + Self.list(second.map { Self.clock(hrs[0], mins[0], $0) })
        }
        if !showSeconds, mins.count == 1, (2...8).contains(hrs.count), Self.step(hrs, 0...23) == nil {
            return "At " + Self.list(hrs.map { Self.clock($0, mins[0], e.hasSeconds ? 0 : nil) })
        }
        let minuteAndHour = minuteHourPhrase(mins, hrs)
        guard showSeconds else { return minuteAndHour }
        if mins.count == 1, hrs.count == 1 {
            return "At " + Self.numbered("second", secs) + " past " + Self.clock(hrs[0], mins[0])
        }
        let secondPart: String
        if secs.count == 60 {
            secondPart = "Every second"
        } else if let n = Self.step(secs, 0...59) {
            secondPart = "Every \(n) seconds"
        } else {
            secondPart = "At " + Self.numbered("second", secs)
        }
        if mins.count == 60, hrs.count == 24 { return secondPart }
        let minutePart: String
        if mins.count == 60 {
            minutePart = "every minute"
        } else if let n = Self.step(mins, 0...59) {
            minutePart = "every \(Self.ordinal(n)) minute"
        } else {
            minutePart = Self.numbered("minute", mins)
        }
        return secondPart + " of " + minutePart + hourSuffix(hrs)
    }

    private func minuteHourPhrase(_ mins: [Int], _ hrs: [Int]) -> String {
        let minuteStep = Self.step(mins, 0...59)
        if hrs.count == 24 {
            if mins.count == 60 { return "Every minute" }
            if let n = minuteStep { return "Every \(n) minutes" }
            if mins == [0] { return "Every hour" }
            return "At " + Self.numbered("minute", mins) + " of every hour"
        }
        if let n = Self.step(hrs, 0...23), mins.count == 1, mins[0] == 0 { return "Every \(n) hours" }
        if Self.runs(hrs).count == 1, mins.count == 1 {
            let (first, last) = (hrs[0], hrs[hrs.count - 1])
            return "Every hour from \(Self.clock(first, mins[0])) through \(Self.clock(last, mins[0]))"
        }
        let minutePart: String
        if mins.count == 60 {
            minutePart = "Every minute"
        } else if let n = minuteStep {
            minutePart = "Every \(n) minutes"
        } else {
            minutePart = "At " + Self.numbered("minute", mins)
        }
        return minutePart + hourSuffix(hrs, lastMinute: mins.last ?? 59)
    }

    private func hourSuffix(_ hrs: [Int], lastMinute: Int = 59) -> String {
        if hrs.count == 24 { return "" }
        if let n = Self.step(hrs, 0...23) { return " of every \(Self.ordinal(n)) hour" }
        if Self.runs(hrs).count == 1, hrs.count > 1 {
            return " from \(Self.clock(hrs[0], 0)) through \(Self.clock(hrs[hrs.count - 1], lastMinute))"
        }
        return " of " + Self.numbered("hour", hrs)
    }

    // MARK: Days and months

    /// The day phrase, and whether it already named the month.
    private func dayPhrase() -> (String?, Bool) {
        let e = expression
        let monthDays = Self.values(UInt64(e.monthDays), 1...31)
        let monthDayRestricted =
            monthDays.count < 31 || e.lastDayOfMonth || e.lastWeekdayOfMonth
            || e.nearestWeekdays != 0
        let weekdayRestricted = e.weekdays != 0x7F || e.lastWeekdays != 0 || e.nthWeekdays != 0
        let months = Self.values(UInt64(e.months), 1...12)

        if monthDayRestricted, !weekdayRestricted || e.weekdayIsStar, monthDays.count == 1, months.count == 1,
            !e.lastDayOfMonth, !e.lastWeekdayOfMonth, e.nearestWeekdays == 0
        {
            return ("on \(Self.monthNames[months[0] - 1]) \(monthDays[0])", true)
        }
        let monthDayText = monthDayRestricted ? monthDayPhrase(monthDays) : nil
        let weekdayText = weekdayRestricted ? weekdayPhrase() : nil
        switch (monthDayText, weekdayText) {
        case (let d?, let w?):
            if e.daysCombineWithOr { return ("on \(d) or on \(w)", false) }
            return ("on \(d) if it is \(w.hasPrefix("the ") ? w : "a " + w)", false)
        case (let d?, nil): return ("on \(d)", false)
        case (nil, let w?): return ("on \(w)", false)
        case (nil, nil): return (nil, false)
        }
    }

    private func monthDayPhrase(_ monthDays: [Int]) -> String {
        let e = expression
        var items: [String] = []
        if !monthDays.isEmpty {
            if monthDays.count == 31 {
                items.append("every day")
            } else if let n = Self.step(monthDays, 1...31) {
                items.append("every \(Self.ordinal(n)) day")
            } else {
                items.append(Self.numbered("day", monthDays))
            }
        }
        for n in Self.values(UInt64(e.nearestWeekdays), 1...31) { items.append("the weekday nearest day \(n)") }
        if e.lastWeekdayOfMonth { items.append("the last weekday") }
        if e.lastDayOfMonth { items.append("the last day") }
        return Self.list(items) + " of the month"
    }

    private func weekdayPhrase() -> String {
        let e = expression
        var items: [String] = []
        // Monday-first order reads naturally: "Monday through Friday", "Saturday and Sunday".
        let plain = Self.values(UInt64(e.weekdays), 0...6).map { ($0 + 6) % 7 }.sorted()
        if plain.count == 7 {
            items.append("every day of the week")
        } else if !plain.isEmpty {
            items.append(Self.rangeList(plain) { Self.weekdayNames[($0 + 1) % 7] })
        }
        for k in 0..<5 {
            let bits = (e.nthWeekdays >> UInt64(k * 8)) & 0x7F
            for day in Self.values(bits, 0...6) {
                items.append("the \(Self.ordinalWords[k]) \(Self.weekdayNames[day]) of the month")
            }
        }
        for day in Self.values(UInt64(e.lastWeekdays), 0...6) {
            items.append("the last \(Self.weekdayNames[day]) of the month")
        }
        return Self.list(items)
    }

    private func monthPhrase() -> String? {
        let months = Self.values(UInt64(expression.months), 1...12)
        guard months.count < 12 else { return nil }
        return "in " + Self.rangeList(months) { Self.monthNames[$0 - 1] }
    }

    // MARK: Helpers

    static func values(_ bits: UInt64, _ range: ClosedRange<Int>) -> [Int] {
        range.filter { bits.has($0) }
    }

    /// `n` when `values` is exactly every `n`-th value of `range` from its start, for `n` ≥ 2.
    static func step(_ values: [Int], _ range: ClosedRange<Int>) -> Int? {
        guard values.count >= 2, values[0] == range.lowerBound else { return nil }
        let n = values[1] - values[0]
        guard n >= 2 else { return nil }
        return values == Array(stride(from: range.lowerBound, through: range.upperBound, by: n)) ? n : nil
    }

    /// Maximal runs of consecutive values.
    static func runs(_ values: [Int]) -> [ClosedRange<Int>] {
        var result: [ClosedRange<Int>] = []
        for v in values {
            if let last = result.last, last.upperBound + 1 == v {
                result[result.count - 1] = last.lowerBound...v
            } else {
                result.append(v...v)
            }
        }
        return result
    }

    /// Values as a list where runs of three or more read `a through b`.
    static func rangeList(_ values: [Int], _ name: (Int) -> String) -> String {
        var items: [String] = []
        for run in runs(values) {
            if run.count >= 3 {
                items.append("\(name(run.lowerBound)) through \(name(run.upperBound))")
            } else {
                items += run.map(name)
            }
        }
        return list(items)
    }

    /// `minute 5`, `minutes 0 and 30`, `days 1 through 7`.
    static func numbered(_ unit: String, _ values: [Int]) -> String {
        (values.count == 1 ? unit : unit + "s") + " " + rangeList(values) { String($0) }
    }

    static func list(_ items: [String], conjunction: String = "and") -> String {
        switch items.count {
        case 0: return ""
        case 1: return items[0]
        default: return items.dropLast().joined(separator: ", ") + " \(conjunction) " + items[items.count - 1]
        }
    }

    static func ordinal(_ n: Int) -> String {
        let suffix: String
        switch (n % 10, n % 100) {
        case (_, 11...13): suffix = "th"
        case (1, _): suffix = "st"
        case (2, _): suffix = "nd"
        case (3, _): suffix = "rd"
        default: suffix = "th"
        }
        return "\(n)\(suffix)"
    }

    static func clock(_ hour: Int, _ minute: Int, _ second: Int? = nil) -> String {
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(two(hour)):\(two(minute))" + (second.map { ":\(two($0))" } ?? "")
    }

    /// `Every 90 seconds`, `Every 2 hours`, `Every day`.
    static func describeInterval(ms: Int64) -> String {
        let units: [(Int64, String)] = [(86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second")]
        for (size, name) in units where ms % size == 0 {
            let n = ms / size
            return n == 1 ? "Every \(name)" : "Every \(n) \(name)s"
        }
        return ms == 1 ? "Every millisecond" : "Every \(ms) milliseconds"
    }
}
