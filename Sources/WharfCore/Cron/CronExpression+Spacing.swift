extension CronExpression {
    /// The shortest time, in seconds, between two consecutive local times the expression matches.
    ///
    /// Computed from the seconds, minutes and hours fields: within a minute it is the smallest step
    /// between matching seconds; from one matching minute to the next, from one matching hour to the
    /// next and from one day to the next it is the step from the last match of one to the first of the
    /// other. Consecutive days are assumed to match (so `@daily` and `@yearly` both give 86,400), which
    /// can only make the answer smaller than the truth, never larger. On the wall clock only: a
    /// daylight-saving change can shorten the real time between two fires around it.
    public var shortestSpacingSeconds: Int {
        let s = Self.setBits(seconds)
        let m = Self.setBits(minutes)
        let h = Self.setBits(hours)
        // A parsed expression has at least one value in each of these fields.
        guard let sFirst = s.first, let sLast = s.last, let mFirst = m.first, let mLast = m.last,
            let hFirst = h.first, let hLast = h.last
        else {
            return CivilCalendar.secondsPerDay
        }
        var shortest =
            CivilCalendar.secondsPerDay + (hFirst * 3600 + mFirst * 60 + sFirst)
            - (hLast * 3600 + mLast * 60 + sLast)
        for (a, b) in zip(s, s.dropFirst()) { shortest = min(shortest, b - a) }
        for (a, b) in zip(m, m.dropFirst()) { shortest = min(shortest, (b - a) * 60 + sFirst - sLast) }
        for (a, b) in zip(h, h.dropFirst()) {
            shortest = min(shortest, (b - a) * 3600 + mFirst * 60 + sFirst - mLast * 60 - sLast)
        }
        return shortest
    }

    /// The positions of the set bits, ascending.
    private static func setBits(_ mask: UInt64) -> [Int] {
        var out: [Int] = []
        var rest = mask
        while rest != 0 {
            out.append(rest.trailingZeroBitCount)
            rest &= rest - 1
        }
        return out
    }
}
