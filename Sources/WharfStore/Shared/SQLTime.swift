/// Times between SQL and Swift as epoch milliseconds, converted exactly (interval arithmetic, not
/// floating point): a job's `schedule_fire_at` must equal its nominal fire time to the millisecond for
/// the unique (schedule, fire time) index to mean anything. Null stays null both ways.
enum SQLTime {
    /// Epoch milliseconds of a timestamptz expression.
    static func ms(_ expression: String) -> String { "floor(extract(epoch from \(expression)) * 1000)::bigint" }

    /// Epoch milliseconds of a timestamptz expression, rounded up: for an instant that someone waits for
    /// (when a lock can be taken). A wait computed as `ceilMs(t) - ms(now())` is never shorter than the
    /// time left, so a retry timed by it never comes before `t`.
    static func ceilMs(_ expression: String) -> String { "ceil(extract(epoch from \(expression)) * 1000)::bigint" }

    /// Milliseconds from now (the statement's `now()`) until instant `t`, rounded up (see `ceilMs`).
    static func msUntil(_ t: String) -> String { "(\(ceilMs(t)) - \(ms("now()")))" }

    /// The timestamptz of an epoch-milliseconds expression.
    static func at(_ ms: String) -> String { "(timestamptz 'epoch' + (\(ms)) * interval '1 millisecond')" }

    /// Whole milliseconds in an interval expression, rounded to the nearest (a duration, not an instant).
    static func durationMs(_ interval: String) -> String { "(extract(epoch from \(interval)) * 1000)::bigint" }
}
