/// A POSIX `TZ` rule string such as `EST5EDT,M3.2.0,M11.1.0`, as found in the footer of TZif files.
///
/// The footer describes local time after the file's last explicit transition. Offsets in the string
/// are hours west of UTC; they are stored here as seconds east of UTC. Transition times may be
/// negative or exceed 24 hours, as RFC 8536 allows.
struct POSIXTimeZoneRule: Sendable, Hashable {
    /// A day within a year on which a transition happens.
    enum DateRule: Sendable, Hashable {
        /// `Jn`: day `n` (1-365) of the year, never counting February 29.
        case julianSkippingLeapDay(Int)
        /// `n`: day `n` (0-365) of the year, counting February 29.
        case zeroBasedDay(Int)
        /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (1-4, or 5 for the last) of month `m`.
        case monthWeekDay(month: Int, week: Int, weekday: Int)
    }

    /// Daylight saving time: its offset and when it starts and ends each year.
    struct Daylight: Sendable, Hashable {
        var offset: Int
        var start: DateRule
        /// Seconds after local midnight (standard time) at which daylight time starts.
        var startTime: Int
        var end: DateRule
        /// Seconds after local midnight (daylight time) at which daylight time ends.
        var endTime: Int
    }

    var standardOffset: Int
    var daylight: Daylight?

    /// Parses a rule string; nil when it is empty or malformed.
    init?(_ text: String) {
        var scanner = Scanner(Array(text.utf8))
        guard scanner.skipName(), let std = scanner.offset() else { return nil }
        standardOffset = -std
        if scanner.atEnd {
            daylight = nil
            return
        }
        guard scanner.skipName() else { return nil }
        var dstOffset = standardOffset + 3600
        if let peek = scanner.peek, peek != UInt8(ascii: ",") {
            guard let o = scanner.offset() else { return nil }
            dstOffset = -o
        }
        var start = DateRule.monthWeekDay(month: 3, week: 2, weekday: 0)
        var end = DateRule.monthWeekDay(month: 11, week: 1, weekday: 0)
        var startTime = 7200
        var endTime = 7200
        if scanner.consume(",") {
            guard let s = scanner.dateRule() else { return nil }
            start = s
            if scanner.consume("/") {
                guard let t = scanner.offset() else { return nil }
                startTime = t
            }
            guard scanner.consume(","), let e = scanner.dateRule() else { return nil }
            end = e
            if scanner.consume("/") {
                guard let t = scanner.offset() else { return nil }
                endTime = t
            }
        }
        guard scanner.atEnd else { return nil }
        daylight = Daylight(offset: dstOffset, start: start, startTime: startTime, end: end, endTime: endTime)
    }

    /// The transitions of rule year `year` as (UTC seconds, offset from then on), in time order.
    func transitions(year: Int) -> [(at: Int, offset: Int)] {
        guard let dst = daylight else { return [] }
        let start = Self.dayNumber(dst.start, year: year) * 86_400 + dst.startTime - standardOffset
        let end = Self.dayNumber(dst.end, year: year) * 86_400 + dst.endTime - dst.offset
        let pair = [(at: start, offset: dst.offset), (at: end, offset: standardOffset)]
        return start <= end ? pair : [pair[1], pair[0]]
    }

    /// The day number of a date rule in a year.
    static func dayNumber(_ rule: DateRule, year: Int) -> Int {
        let jan1 = CivilCalendar.dayNumber(year: year, month: 1, day: 1)
        switch rule {
        case .julianSkippingLeapDay(let n):
            return jan1 + n - 1 + (CivilCalendar.isLeap(year) && n >= 60 ? 1 : 0)
        case .zeroBasedDay(let n):
            return jan1 + n
        case .monthWeekDay(let month, let week, let weekday):
            let first = CivilCalendar.dayNumber(year: year, month: month, day: 1)
            var day = first + (weekday - CivilCalendar.weekday(dayNumber: first) + 7) % 7 + (week - 1) * 7
            let length = CivilCalendar.daysIn(month: month, year: year)
            while day >= first + length { day -= 7 }
            return day
        }
    }
}

/// A byte scanner over a POSIX TZ string.
private struct Scanner {
    let bytes: [UInt8]
    var i = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { i >= bytes.count }
    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    mutating func consume(_ c: Character) -> Bool {
        guard let p = peek, p == c.asciiValue else { return false }
        i += 1
        return true
    }

    /// Skips a zone abbreviation: three or more letters, or anything between `<` and `>`.
    mutating func skipName() -> Bool {
        if consume("<") {
            while let p = peek, p != UInt8(ascii: ">") { i += 1 }
            return consume(">")
        }
        let begin = i
        while let p = peek, (p >= 65 && p <= 90) || (p >= 97 && p <= 122) { i += 1 }
        return i - begin >= 3
    }

    /// `[+|-]hh[:mm[:ss]]` as signed seconds.
    mutating func offset() -> Int? {
        var sign = 1
        if consume("-") { sign = -1 } else { _ = consume("+") }
        guard let h = number(), h <= 167 else { return nil }
        var total = h * 3600
        if consume(":") {
            guard let m = number(), m < 60 else { return nil }
            total += m * 60
            if consume(":") {
                guard let s = number(), s < 60 else { return nil }
                total += s
            }
        }
        return sign * total
    }

    mutating func number() -> Int? {
        var v = 0
        var digits = 0
        while let p = peek, p >= 48, p <= 57, digits < 4 {
            v = v * 10 + Int(p - 48)
            digits += 1
            i += 1
        }
        return digits > 0 ? v : nil
    }

    mutating func dateRule() -> POSIXTimeZoneRule.DateRule? {
        if consume("J") {
            guard let n = number(), (1...365).contains(n) else { return nil }
            return .julianSkippingLeapDay(n)
        }
        if consume("M") {
            guard let m = number(), (1...12).contains(m), consume("."), let w = number(), (1...5).contains(w),
                consume("."), let d = number(), d < 7
            else { return nil }
            return .monthWeekDay(month: m, week: w, weekday: d)
        }
        guard let n = number(), n <= 365 else { return nil }
        return .zeroBasedDay(n)
    }
}
