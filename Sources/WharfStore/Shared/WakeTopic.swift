/// The topics of `NOTIFY wharf_wake, '<topic>:<rest>'`, by which one replica's write wakes the waiters
/// of every replica. Statements build their NOTIFY with `notify(_:)`; the server routes by the same cases.
/// The SQL functions of the migrations (`wharf.enqueue_batch`, `wharf.send_webhooks`, the lock triggers)
/// send the same words, written out: a migration cannot change once applied.
public enum WakeTopic: String, CaseIterable, Sendable {
    /// Jobs became available in a queue; rest: the queue.
    case jobs
    /// A schedule's next fire changed; rest: its time in epoch ms, or empty when it has none left.
    case cron
    /// A webhook delivery is due or an endpoint was re-enabled; rest: empty.
    case hooks
    /// A lock was released or expired with clients waiting; rest: the lock name.
    case lock
    /// An event raised on some replica; rest: the event as JSON.
    case event

    /// The channel every wake-up is sent on.
    public static let channel = "wharf_wake"

    /// A SQL expression that sends this topic with `rest` (a SQL text expression) and yields void.
    public func notify(_ rest: String = "''") -> String {
        "pg_notify('\(Self.channel)', '\(rawValue):' || \(rest))"
    }

    /// The payload for `rest`, as a parameter of `ServerSQL.publish`.
    public func payload(_ rest: String) -> String { rawValue + ":" + rest }

    /// Splits a received payload into its topic and rest; nil for a topic this version does not know.
    public static func parse(_ payload: String) -> (WakeTopic, String)? {
        guard let colon = payload.firstIndex(of: ":") else { return WakeTopic(rawValue: payload).map { ($0, "") } }
        guard let topic = WakeTopic(rawValue: String(payload[..<colon])) else { return nil }
        return (topic, String(payload[payload.index(after: colon)...]))
    }
}
