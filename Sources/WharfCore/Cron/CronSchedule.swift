/// When a job runs: a cron expression in a time zone, or a fixed interval.
///
/// All times are Unix epoch milliseconds (UTC). Cron schedules fire on whole seconds; nothing here
/// reads a clock, so callers pass the current time in.
///
/// Cron schedules follow their zone's DST transitions by two policies, which default from the
/// expression (see ``CronExpression/isFixedTime``), as Vixie/Debian cron does:
/// - fixed-time expressions (e.g. `30 2 * * *`) fire at the end of a spring-forward gap when their
///   local time falls inside it (``DSTGapPolicy/runAtTransition``), and once in a repeated hour
///   (``DSTFoldPolicy/once``);
/// - expressions whose minute or hour field starts with `*` (e.g. `*/15 * * * *`), and six-field
///   expressions, follow the wall clock: nothing fires in a gap (``DSTGapPolicy/skip``) and both
///   copies of a repeated hour fire (``DSTFoldPolicy/twice``).
public struct CronSchedule: Sendable, Hashable, CustomStringConvertible {
    /// What the schedule is made of.
    public enum Kind: Sendable, Hashable {
        /// A cron expression evaluated in ``CronSchedule/zone``.
        case cron(CronExpression)
        /// Fires at `anchorMs + k * everyMs` for every integer `k`.
        case interval(everyMs: Int64, anchorMs: Int64)
    }

    public let kind: Kind
    /// The time zone cron expressions are evaluated in (UTC for intervals unless given).
    public let zone: ZoneRules
    /// How local times skipped by a spring-forward transition are handled.
    public let dstGap: DSTGapPolicy
    /// How local times repeated by a fall-back transition are handled.
    public let dstFold: DSTFoldPolicy

    /// A cron schedule. Nil policies take the defaults derived from the expression.
    public init(
        expression: CronExpression, zone: ZoneRules = .utc, dstGap: DSTGapPolicy? = nil, dstFold: DSTFoldPolicy? = nil
    ) {
        kind = .cron(expression)
        self.zone = zone
        self.dstGap = dstGap ?? (expression.isFixedTime ? .runAtTransition : .skip)
        self.dstFold = dstFold ?? (expression.isFixedTime ? .once : .twice)
    }

    /// An interval schedule firing at `anchorMs + k * everyMs` for every integer `k`.
    ///
    /// The default anchor, the Unix epoch, aligns intervals that divide a day with UTC midnight.
    /// - Precondition: `everyMs > 0`.
    public init(everyMs: Int64, anchorMs: Int64 = 0, zone: ZoneRules = .utc) {
        precondition(everyMs > 0, "interval must be positive")
        kind = .interval(everyMs: everyMs, anchorMs: anchorMs)
        self.zone = zone
        dstGap = .skip
        dstFold = .twice
    }

    /// Parses a cron expression, macro or `@every <duration>` interval.
    ///
    /// - Parameters:
    ///   - text: e.g. `30 9 * * MON-FRI`, `@daily` or `@every 1h30m`.
    ///   - timezone: an IANA zone identifier; cron expressions are evaluated in it.
    ///   - dayMatch: how day-of-month and day-of-week combine (cron expressions only).
    ///   - dstGap: overrides the default gap policy (cron expressions only).
    ///   - dstFold: overrides the default fold policy (cron expressions only).
    ///   - anchorMs: the instant intervals are counted from (intervals only).
    /// - Throws: ``CronError``.
    public static func parse(
        _ text: String, timezone: String = "UTC", dayMatch: DayMatch = .or, dstGap: DSTGapPolicy? = nil,
        dstFold: DSTFoldPolicy? = nil, anchorMs: Int64 = 0
    ) throws -> CronSchedule {
        let zone = try ZoneRules.load(timezone)
        if text.trimmed.lowercased().hasPrefix("@every") {
            return CronSchedule(everyMs: try parseInterval(text), anchorMs: anchorMs, zone: zone)
        }
        let expression = try CronExpression(text, dayMatch: dayMatch)
        return CronSchedule(expression: expression, zone: zone, dstGap: dstGap, dstFold: dstFold)
    }

    /// The cron expression, when this is a cron schedule.
    public var expression: CronExpression? {
        if case .cron(let e) = kind { return e }
        return nil
    }

    /// The interval in milliseconds, when this is an interval schedule.
    public var everyMs: Int64? {
        if case .interval(let every, _) = kind { return every }
        return nil
    }

    /// A plain-English description, e.g. `At 09:30 on Monday through Friday (Europe/London)`.
    public var description: String {
        switch kind {
        case .cron(let expression):
            return zone.identifier == "UTC" ? expression.description : "\(expression.description) (\(zone.identifier))"
        case .interval(let every, _):
            return CronDescriber.describeInterval(ms: every)
        }
    }

    /// The last instant a schedule may fire: 9999-12-31T23:59:59.999Z, the end of the years that
    /// RFC 3339 can write (four digits).
    public static let latestFireMs: Int64 = 253_402_300_799_999

    /// The shortest time between two consecutive fires: the interval, or for a cron expression its
    /// shortest spacing on the wall clock (see ``CronExpression/shortestSpacingSeconds``).
    public var shortestPeriodMs: Int64 {
        switch kind {
        case .interval(let every, _): return every
        case .cron(let expression): return Int64(expression.shortestSpacingSeconds) * 1000
        }
    }

    /// The first fire strictly after `afterMs`, or nil when there is none.
    ///
    /// Interval schedules return the smallest `anchorMs + k * everyMs` greater than `afterMs`. Cron
    /// schedules return the first matching whole second after `afterMs` under the DST policies; nil
    /// when no match exists within 400 years. Nil too when the fire would come after
    /// ``latestFireMs``.
    public func nextFire(afterMs: Int64) -> Int64? {
        guard let next = uncappedNextFire(afterMs: afterMs), next <= Self.latestFireMs else { return nil }
        return next
    }

    private func uncappedNextFire(afterMs: Int64) -> Int64? {
        guard afterMs < Self.latestFireMs else { return nil }
        switch kind {
        case .interval(let every, let anchor):
            let (difference, o1) = afterMs.subtractingReportingOverflow(anchor)
            guard !o1 else { return nil }
            var steps = difference / every
            if difference >= 0 || difference % every == 0 { steps += 1 }
            let (delta, o2) = steps.multipliedReportingOverflow(by: every)
            let (next, o3) = anchor.addingReportingOverflow(delta)
            return o2 || o3 ? nil : next
        case .cron(let expression):
            let afterSeconds = CivilCalendar.floorDiv(Int(afterMs), 1000)
            guard afterSeconds < Int(Int64.max / 1000) - 1,
                let fire = nextFireSeconds(expression, after: afterSeconds)
            else { return nil }
            let (ms, overflow) = Int64(fire).multipliedReportingOverflow(by: 1000)
            return overflow ? nil : ms
        }
    }

    /// Up to `count` consecutive fires strictly after `afterMs`.
    public func nextFires(afterMs: Int64, count: Int) -> [Int64] {
        var result: [Int64] = []
        result.reserveCapacity(max(count, 0))
        var cursor = afterMs
        while result.count < count, let next = nextFire(afterMs: cursor) {
            result.append(next)
            cursor = next
        }
        return result
    }

    /// The first fire, in UTC seconds, strictly after `after`.
    ///
    /// Walks the zone's periods of constant offset. Within a period, local times map one-to-one onto
    /// instants, so the first matching local time in the period's range is the answer; at a
    /// spring-forward transition the skipped local times may fire at the transition instant, and after
    /// a fall-back transition the repeated local times are skipped under the `once` policy.
    ///
    /// After a period without a match the walk jumps ahead rather than visiting every period (twice a
    /// year in most zones) until a rare expression such as `0 0 29 2 MON` matches: no instant from the
    /// period's end reads a local time earlier than `end - reach`, where `reach` bounds the zone's
    /// offsets, so no instant before `next - reach` can read the first matching local time `next` from
    /// there or any later one, and neither can the local times a gap before that instant skips.
    private func nextFireSeconds(_ expression: CronExpression, after: Int) -> Int? {
        let secondsPerYear = 366 * CivilCalendar.secondsPerDay
        let reach = zone.largestOffsetMagnitude
        var t = after + 1
        let horizon = min(t + CronExpression.searchYears * secondsPerYear, Int(Self.latestFireMs / 1000) + 1)
        while t < horizon {
            let period = zone.period(containing: Int64(t))
            let offset = period.offset
            let end = period.end.map { Int($0) }
            if let start = period.start.map({ Int($0) }) {
                let previous = period.previousOffset
                if dstFold == .once, previous > offset, t < start + (previous - offset) {
                    // Local times just after a fall-back transition repeat earlier ones.
                    t = start + (previous - offset)
                    if let end, t >= end { continue }
                }
                if dstGap == .runAtTransition, previous < offset, t == start,
                    expression.firstMatch(from: start + previous, before: start + offset) != nil
                {
                    return start
                }
            }
            if let local = expression.firstMatch(from: t + offset, before: end.map { $0 + offset } ?? .max) {
                return local - offset
            }
            guard let end, let next = expression.firstMatch(from: end - reach) else { return nil }
            t = max(end, next - reach)
        }
        return nil
    }
}
