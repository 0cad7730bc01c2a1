extension CronSchedule {
    /// Parses an interval such as `90s`, `1h30m`, `500ms` or `@every 2d` into milliseconds.
    ///
    /// A duration is one or more `<number><unit>` terms, summed; units are `ms`, `s`, `m`, `h` and `d`
    /// (case-insensitive). The result must be positive.
    ///
    /// - Throws: ``CronError`` with field `interval`.
    public static func parseInterval(_ text: String) throws -> Int64 {
        var body = Substring(text.trimmed.lowercased())
        if body.hasPrefix("@every") {
            body = body.dropFirst("@every".count)
            guard let first = body.first, first.isWhitespace else {
                throw CronError("Invalid interval '\(text.trimmed)': expected '@every <duration>'", field: "interval")
            }
        }
        let duration = String(body).trimmed
        func invalid(_ why: String) -> CronError {
            CronError("Invalid interval '\(duration)': \(why)", field: "interval")
        }
        guard !duration.isEmpty else { throw invalid("expected a duration such as 90s or 1h30m") }
        let chars = Array(duration.utf8)
        var i = 0
        var total: Int64 = 0
        while i < chars.count {
            var number: Int64 = 0
            var digits = 0
            while i < chars.count, chars[i] >= 48, chars[i] <= 57 {
                let (times10, o1) = number.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(Int64(chars[i] - 48))
                guard !o1, !o2 else { throw invalid("too large") }
                number = sum
                digits += 1
                i += 1
            }
            guard digits > 0 else {
                throw invalid("expected a number at '\(String(decoding: chars[i...], as: UTF8.self))'")
            }
            let unit: Int64
            if i + 1 < chars.count, chars[i] == UInt8(ascii: "m"), chars[i + 1] == UInt8(ascii: "s") {
                unit = 1
                i += 2
            } else if i < chars.count, let u = unitMs[chars[i]] {
                unit = u
                i += 1
            } else {
                throw invalid("each number needs a unit: ms, s, m, h or d")
            }
            let (ms, o1) = number.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(ms)
            guard !o1, !o2 else { throw invalid("too large") }
            total = sum
        }
        guard total > 0 else { throw invalid("must be greater than zero") }
        return total
    }

    private static let unitMs: [UInt8: Int64] = [
        UInt8(ascii: "s"): 1000, UInt8(ascii: "m"): 60_000, UInt8(ascii: "h"): 3_600_000, UInt8(ascii: "d"): 86_400_000,
    ]
}
