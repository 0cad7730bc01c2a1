/// Parses one field of a cron expression into bit sets.
struct CronFieldParser {
    /// The six fields, in expression order.
    enum Kind: Int, CaseIterable {
        case second, minute, hour, dayOfMonth, month, dayOfWeek

        /// The field's name as used in error messages.
        var name: String {
            ["second", "minute", "hour", "day-of-month", "month", "day-of-week"][rawValue]
        }

        /// The smallest and largest values; day-of-week allows 7 for Sunday.
        var bounds: ClosedRange<Int> {
            [0...59, 0...59, 0...23, 1...31, 1...12, 0...7][rawValue]
        }
    }

    /// The parsed content of a field.
    struct Result {
        /// Plain values as bits.
        var values: UInt64 = 0
        /// `L` in day-of-month.
        var last = false
        /// `LW` in day-of-month.
        var lastWeekday = false
        /// Days of `nW` terms as bits.
        var nearestWeekdays: UInt64 = 0
        /// Weekdays of `nL` terms as bits 0-6.
        var lastWeekdays: UInt8 = 0
        /// Weekdays of `n#k` terms as bit `(k - 1) * 8 + n`.
        var nthWeekdays: UInt64 = 0
    }

    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let weekdayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    let kind: Kind

    /// Parses a field's text (any letter case).
    func parse(_ text: String) throws -> Result {
        var result = Result()
        for term in text.split(separator: ",", omittingEmptySubsequences: false) {
            do {
                try parseTerm(term.uppercased(), into: &result)
            } catch let problem as Problem {
                let within = term.count == text.count ? "" : " in '\(text)'"
                let quoted = term.isEmpty ? "an empty list item" : "'\(term)'"
                throw CronError("Invalid \(kind.name) field: \(quoted)\(within) \(problem.detail)", field: kind.name)
            }
        }
        return result
    }

    /// What is wrong with a term, completed into a ``CronError`` by `parse`.
    private struct Problem: Error {
        let detail: String
        init(_ detail: String) { self.detail = detail }
    }

    private func parseTerm(_ term: String, into result: inout Result) throws {
        guard !term.isEmpty else { throw Problem("is not allowed") }
        let isDayField = kind == .dayOfMonth || kind == .dayOfWeek
        if term == "?" {
            guard isDayField else {
                throw Problem("is not allowed: '?' is only allowed in the day-of-month and day-of-week fields")
            }
            result.values |= bits(kind.bounds)
            return
        }
        if kind == .dayOfMonth {
            if term == "L" {
                result.last = true
                return
            }
            if term == "LW" {
                result.lastWeekday = true
                return
            }
            if term.count > 1, term.hasSuffix("W") {
                let day = try value(String(term.dropLast()))
                result.nearestWeekdays |= 1 << UInt64(day)
                return
            }
        }
        if kind == .dayOfWeek {
            if let hash = term.firstIndex(of: "#") {
                let weekday = try value(String(term[..<hash])) % 7
                let nthText = String(term[term.index(after: hash)...])
                guard let nth = Int(nthText), nthText.allSatisfy(\.isASCIIDigit), (1...5).contains(nth) else {
                    throw Problem("is not valid: the occurrence after '#' must be 1-5")
                }
                result.nthWeekdays |= 1 << UInt64((nth - 1) * 8 + weekday)
                return
            }
            if term == "L" {
                throw Problem("is not supported; use e.g. '5L' for the last Friday of the month")
            }
            if term.count > 1, term.hasSuffix("L") {
                let weekday = try value(String(term.dropLast())) % 7
                result.lastWeekdays |= 1 << UInt8(weekday)
                return
            }
        }
        var base = Substring(term)
        var step = 1
        if let slash = term.firstIndex(of: "/") {
            base = term[..<slash]
            let stepText = String(term[term.index(after: slash)...])
            guard let n = Int(stepText), stepText.allSatisfy(\.isASCIIDigit), n >= 1 else {
                throw Problem("is not valid: the step after '/' must be a positive number")
            }
            guard !base.isEmpty else { throw Problem("is missing a start before '/'") }
            step = n
        }
        let range: ClosedRange<Int>
        if base == "*" {
            range = kind.bounds
        } else if let dash = base.firstIndex(of: "-") {
            let lower = try value(String(base[..<dash]))
            let upper = try value(String(base[base.index(after: dash)...]))
            guard lower <= upper else {
                throw Problem("is not valid: the range starts after it ends")
            }
            range = lower...upper
        } else {
            let start = try value(String(base))
            range = term.contains("/") ? start...kind.bounds.upperBound : start...start
        }
        for v in stride(from: range.lowerBound, through: range.upperBound, by: step) {
            result.values |= 1 << UInt64(v)
        }
    }

    /// Parses a number or, for months and weekdays, a three-letter name, and checks the bounds.
    private func value(_ text: String) throws -> Int {
        if kind == .month, let i = Self.monthNames.firstIndex(of: text) { return i + 1 }
        if kind == .dayOfWeek, let i = Self.weekdayNames.firstIndex(of: text) { return i }
        guard !text.isEmpty else { throw Problem("is missing a value") }
        guard text.allSatisfy(\.isASCIIDigit), text.count <= 4, let v = Int(text) else {
            let names = kind == .month ? " or JAN-DEC" : kind == .dayOfWeek ? " or SUN-SAT" : ""
            throw Problem("is not valid: expected numbers \(kind.bounds.lowerBound)-\(kind.bounds.upperBound)\(names)")
        }
        guard kind.bounds.contains(v) else {
            throw Problem("is out of range: \(v) is not in \(kind.bounds.lowerBound)-\(kind.bounds.upperBound)")
        }
        return v
    }

    private func bits(_ range: ClosedRange<Int>) -> UInt64 {
        var b: UInt64 = 0
        for v in range { b |= 1 << UInt64(v) }
        return b
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
