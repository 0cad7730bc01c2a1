/// Times between SQL and Swift as epoch milliseconds, converted exactly (interval arithmetic, not
/// floating point): a job's `schedule_fire_at` must equal its nominal fire time to the millisecond for
/// the unique (schedule, fire time) index to mean anything. Null stays null both ways.
enum SQLTime {
    /// Epoch milliseconds of a timestamptz expression.
    static func ms(_ expression: String) -> String { "floor(extract(epoch from \(expression)) * 1000)::bigint" }

    /// The timestamptz of an epoch-milliseconds expression.
    static func at(_ ms: String) -> String { "(timestamptz 'epoch' + (\(ms)) * interval '1 millisecond')" }

    /// Whole milliseconds in an interval expression, rounded to the nearest (a duration, not an instant).
    static func durationMs(_ interval: String) -> String { "(extract(epoch from \(interval)) * 1000)::bigint" }
}
