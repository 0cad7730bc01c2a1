/// Who wants which event types: this replica's subscribers (and, for a while after it ends, each
/// `GET /events` stream's types, so that a client that reconnects finds what it missed in the window),
/// the other replicas' subscribers as they announced them, and webhook endpoints that list event types.
///
/// An event type nobody wants is never built: `wanted` is the set the feature services check before they
/// make an event's data. Pure: times are passed in.
struct EventInterest {
    /// Type patterns of this replica's subscribers, counted per subscriber.
    private var local: [String: Int] = [:]
    /// Patterns of ended streams, until the time given.
    private var lingering: [String: UInt64] = [:]
    /// Patterns each other replica announced, until the time given.
    private var remote: [String: (patterns: Set<String>, untilMs: UInt64)] = [:]
    /// Patterns webhook endpoints list (those the server raises; see `EventsService`).
    private(set) var hooks: Set<String> = []

    /// Types some subscriber or endpoint anywhere wants.
    private(set) var wanted: Set<EventType> = []
    /// Types some other replica wants (their events are sent to it).
    private(set) var remoteWanted: Set<EventType> = []
    /// Types some webhook endpoint wants.
    private(set) var hookWanted: Set<EventType> = []

    /// The patterns this replica announces to the others.
    var announced: Set<String> { Set(local.keys).union(lingering.keys) }

    mutating func subscribed(_ patterns: Set<String>) {
        for p in patterns { local[p, default: 0] += 1 }
        recompute()
    }

    /// A subscriber's patterns are gone; with `lingerUntilMs` they still count until then.
    mutating func unsubscribed(_ patterns: Set<String>, lingerUntilMs: UInt64? = nil) {
        for p in patterns {
            if let n = local[p], n > 1 { local[p] = n - 1 } else { local[p] = nil }
            if let until = lingerUntilMs { lingering[p] = max(lingering[p] ?? 0, until) }
        }
        recompute()
    }

    /// Another replica announced its patterns (empty: none), valid until `untilMs`.
    mutating func announced(by replica: String, _ patterns: Set<String>, untilMs: UInt64) {
        remote[replica] = patterns.isEmpty ? nil : (patterns, untilMs)
        recompute()
    }

    mutating func hooksChanged(_ patterns: Set<String>) {
        guard patterns != hooks else { return }
        hooks = patterns
        recompute()
    }

    /// Forgets lingering and announced patterns whose time ran out; true when something changed.
    @discardableResult
    mutating func expire(nowMs: UInt64) -> Bool {
        let before = (lingering.count, remote.count)
        lingering = lingering.filter { $0.value > nowMs }
        remote = remote.filter { $0.value.untilMs > nowMs }
        guard before != (lingering.count, remote.count) else { return false }
        recompute()
        return true
    }

    private mutating func recompute() {
        let mine = announced
        let theirs = remote.values.reduce(into: Set<String>()) { $0.formUnion($1.patterns) }
        func matching(_ patterns: Set<String>) -> Set<EventType> {
            Set(EventType.allCases.filter { t in patterns.contains { EventFilter.pattern($0, matches: t.rawValue) } })
        }
        remoteWanted = matching(theirs)
        hookWanted = matching(hooks)
        wanted = matching(mine).union(remoteWanted).union(hookWanted)
    }
}
