import Foundation

/// The UTC offsets of an IANA time zone over time, read from the system tz database.
///
/// Rules come from the TZif file `/usr/share/zoneinfo/<identifier>` (or under `$TZDIR`): the 64-bit
/// transition table, then the POSIX TZ footer for instants after the last transition. Foundation's
/// `TimeZone` is deliberately not used, so schedules agree with other programs on the host.
/// Loaded zones are cached. `"UTC"` is always available, even without a tz database.
public struct ZoneRules: Sendable, Hashable, CustomStringConvertible {
    /// The IANA identifier, e.g. `Europe/London`.
    public let identifier: String
    /// Instants (UTC seconds) at which the offset changes, strictly increasing.
    let transitions: [Int64]
    /// The offset (seconds east of UTC) in effect from the matching transition on.
    let offsets: [Int32]
    /// The offset before the first transition.
    let initialOffset: Int
    /// The rule for instants after the last transition, when the file has one.
    let footer: POSIXTimeZoneRule?
    /// The largest magnitude of any offset the zone ever has, so `|local - utc|` never exceeds it.
    let largestOffsetMagnitude: Int

    /// Coordinated Universal Time.
    public static let utc = ZoneRules(
        identifier: "UTC", transitions: [], offsets: [], initialOffset: 0, footer: nil)

    init(identifier: String, transitions: [Int64], offsets: [Int32], initialOffset: Int, footer: POSIXTimeZoneRule?) {
        self.identifier = identifier
        self.transitions = transitions
        self.offsets = offsets
        self.initialOffset = initialOffset
        self.footer = footer
        let footerOffsets = [footer?.standardOffset ?? 0, footer?.daylight?.offset ?? 0]
        largestOffsetMagnitude = (offsets.map(Int.init) + footerOffsets + [initialOffset]).map(abs).max() ?? 0
    }

    public var description: String { identifier }

    /// Loads a zone by IANA identifier, from the cache when it was loaded before.
    ///
    /// - Throws: ``CronError`` (field `timezone`) when the identifier is malformed or unknown, or the
    ///   file is not a valid TZif file.
    public static func load(_ identifier: String) throws -> ZoneRules {
        if identifier == "UTC" { return .utc }
        if let cached = cache.get(identifier) { return cached }
        guard isValidIdentifier(identifier) else {
            throw CronError("Invalid time zone '\(identifier)'", field: "timezone")
        }
        let directory =
            ProcessInfo.processInfo.environment["TZDIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "/usr/share/zoneinfo"
        guard let data = FileManager.default.contents(atPath: directory + "/" + identifier) else {
            throw CronError("Unknown time zone '\(identifier)'", field: "timezone")
        }
        let zone = try ZoneRules(identifier: identifier, tzif: [UInt8](data))
        cache.set(identifier, zone)
        return zone
    }

    /// The offset from UTC, in seconds east, at a UTC instant.
    public func offset(atUTCSeconds t: Int64) -> Int {
        period(containing: t).offset
    }

    /// The local wall-clock time at a UTC instant, as seconds on the local time line.
    public func localSeconds(atUTCSeconds t: Int64) -> Int64 {
        t + Int64(offset(atUTCSeconds: t))
    }

    /// A stretch of time with a constant offset.
    struct Period {
        /// The transition that began the period; nil when it extends into the past indefinitely.
        var start: Int64?
        /// The next transition; nil when the offset never changes again.
        var end: Int64?
        var offset: Int
        /// The offset before `start` (equal to `offset` when `start` is nil).
        var previousOffset: Int
    }

    /// The period of constant offset containing a UTC instant.
    func period(containing t: Int64) -> Period {
        let n = transitions.count
        if n > 0, t < transitions[n - 1] {
            if t < transitions[0] {
                return Period(start: nil, end: transitions[0], offset: initialOffset, previousOffset: initialOffset)
            }
            var low = 0
            var high = n - 1  // transitions[low] <= t < transitions[high]
            while high - low > 1 {
                let mid = (low + high) / 2
                if transitions[mid] <= t { low = mid } else { high = mid }
            }
            return Period(
                start: transitions[low], end: transitions[high], offset: Int(offsets[low]),
                previousOffset: low > 0 ? Int(offsets[low - 1]) : initialOffset)
        }
        let lastStart: Int64? = n > 0 ? transitions[n - 1] : nil
        let lastOffset = n > 0 ? Int(offsets[n - 1]) : initialOffset
        let lastPrevious = n > 1 ? Int(offsets[n - 2]) : initialOffset
        guard let footer else {
            return Period(start: lastStart, end: nil, offset: lastOffset, previousOffset: lastPrevious)
        }
        guard footer.daylight != nil else {
            let previous = lastStart == nil ? footer.standardOffset : lastPrevious
            return Period(start: lastStart, end: nil, offset: footer.standardOffset, previousOffset: previous)
        }
        return footerPeriod(
            containing: t, after: lastStart, lastOffset: lastOffset, lastPrevious: lastPrevious,
            footer: footer)
    }

    /// The period containing `t` under the footer rule, which takes over after `lastStart`.
    private func footerPeriod(
        containing t: Int64, after lastStart: Int64?, lastOffset: Int, lastPrevious: Int, footer: POSIXTimeZoneRule
    ) -> Period {
        let year = CivilCalendar.year(ofSeconds: Int(t))
        // Transitions of the rule years around t in time order; at equal instants the later one wins.
        var raw: [(at: Int, offset: Int)] = []
        for y in (year - 1)...(year + 1) { raw += footer.transitions(year: y) }
        raw = raw.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
        // Keep only real changes of offset after the last explicit transition. The first entry is an
        // anchor: the last explicit transition when there is one.
        var list: [(at: Int, offset: Int, previous: Int)] = []
        if let lastStart { list.append((Int(lastStart), lastOffset, lastPrevious)) }
        for transition in raw {
            if let lastStart, transition.at <= Int(lastStart) { continue }
            if let last = list.last, last.at == transition.at {
                list.removeLast()
                if list.isEmpty {
                    list.append((transition.at, transition.offset, last.previous))
                    continue
                }
            }
            if let last = list.last {
                if last.offset != transition.offset {
                    list.append((transition.at, transition.offset, last.offset))
                }
            } else {
                list.append((transition.at, transition.offset, transition.offset))
            }
        }
        let time = Int(t)
        guard let index = list.lastIndex(where: { $0.at <= time }) else {
            // Only reachable for instants before every listed transition, far from any real use.
            let first = list[0]
            return Period(start: nil, end: Int64(first.at), offset: first.previous, previousOffset: first.previous)
        }
        let entry = list[index]
        let end = index + 1 < list.count ? Int64(list[index + 1].at) : nil
        return Period(start: Int64(entry.at), end: end, offset: entry.offset, previousOffset: entry.previous)
    }

    private static func isValidIdentifier(_ identifier: String) -> Bool {
        guard !identifier.isEmpty, identifier.utf8.count <= 255, !identifier.hasPrefix("/") else { return false }
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-")
        guard identifier.allSatisfy({ allowed.contains($0) }) else { return false }
        return !identifier.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == ".." }
    }

    private static let cache = ZoneCache()

    public static func == (a: ZoneRules, b: ZoneRules) -> Bool {
        a.identifier == b.identifier && a.initialOffset == b.initialOffset && a.transitions == b.transitions
            && a.offsets == b.offsets && a.footer == b.footer
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(identifier)
        hasher.combine(transitions.count)
        hasher.combine(transitions.last)
    }
}

/// A lock-protected map from identifier to loaded zone.
private final class ZoneCache: @unchecked Sendable {
    private let lock = NSLock()
    private var zones: [String: ZoneRules] = [:]

    func get(_ identifier: String) -> ZoneRules? {
        lock.lock()
        defer { lock.unlock() }
        return zones[identifier]
    }

    func set(_ identifier: String, _ zone: ZoneRules) {
        lock.lock()
        defer { lock.unlock() }
        zones[identifier] = zone
    }
}
