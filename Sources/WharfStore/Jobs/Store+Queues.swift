import WharfCore
import WharfJSON
import WharfPQ

/// A queue in `queues.list`: its unfinished jobs by state.
public struct QueueSummary: Sendable, Equatable {
    public var name: String
    public var paused: Bool
    public var available: Int64
    public var scheduled: Int64
    public var running: Int64
    public var retryable: Int64
}

/// `queues.stats` of one queue.
public struct QueueStats: Sendable, Equatable {
    public var queue: String
    public var paused: Bool
    /// Jobs per state, in `QueueStats.states` order.
    public var counts: [Int64]
    /// Age of the oldest job that could run now; nil when none waits.
    public var oldestAvailableAgeMs: Int64?
    public var completedLastMinute: Int64
    public var completedLast5Minutes: Int64
    /// Jobs waiting to retry, and jobs that died in the last 5 minutes.
    public var failing: Int64
    /// Jobs completed and jobs that died in each of the last 60 minutes, oldest first.
    public var lastHourCompleted: [Int64] = []
    public var lastHourDead: [Int64] = []

    /// The states `counts` follows.
    public static let states = ["scheduled", "available", "running", "retryable", "completed", "dead", "cancelled"]
}

/// A queue's settings after `queues.configure`; nil fields follow the server's.
public struct QueueSettings: Sendable, Equatable {
    public var queue: String
    public var paused: Bool
    public var retry: JSON?
    public var completedRetentionMs: Int64?
    public var deadRetentionMs: Int64?
}

extension QueueStats {
    init(
        queue: String, paused: Bool, counts: [Int64], oldestAvailableAgeMs: Int64?, completedLastMinute: Int64,
        completedLast5Minutes: Int64, failing: Int64, lastHour: String
    ) {
        self.init(
            queue: queue, paused: paused, counts: counts, oldestAvailableAgeMs: oldestAvailableAgeMs,
            completedLastMinute: completedLastMinute, completedLast5Minutes: completedLast5Minutes, failing: failing)
        // "completed:dead" per minute, comma-separated (QueueSQL.stats).
        for minute in lastHour.split(separator: ",") {
            let pair = minute.split(separator: ":")
            lastHourCompleted.append(pair.first.flatMap { Int64($0) } ?? 0)
            lastHourDead.append(pair.count > 1 ? Int64(pair[1]) ?? 0 : 0)
        }
    }
}

extension Store {
    /// A page of queues by name after `after`, at most `limit`.
    public func listQueues(
        after: String?, limit: Int, _ completion: @escaping (Result<[QueueSummary], StoreError>) -> Void
    ) {
        rows(QueueSQL.list, [after, String(limit)], completion) { rows in
            (0..<rows.rowCount).map { i in
                QueueSummary(
                    name: rows.string(i, 0) ?? "", paused: rows.bool(i, 1) ?? false, available: rows.int(i, 2) ?? 0,
                    scheduled: rows.int(i, 3) ?? 0, running: rows.int(i, 4) ?? 0, retryable: rows.int(i, 5) ?? 0)
            }
        }
    }

    public func queueStats(_ queue: String, _ completion: @escaping (Result<QueueStats, StoreError>) -> Void) {
        rows(QueueSQL.stats, [queue], completion) { rows in
            QueueStats(
                queue: queue, paused: rows.bool(0, 0) ?? false,
                counts: QueueStats.states.indices.map { rows.int(0, 1 + $0) ?? 0 },
                oldestAvailableAgeMs: rows.int(0, 8), completedLastMinute: rows.int(0, 9) ?? 0,
                completedLast5Minutes: rows.int(0, 10) ?? 0, failing: rows.int(0, 11) ?? 0,
                lastHour: rows.string(0, 12) ?? "")
        }
    }

    /// A setting of `queues.configure`: absent leaves it, `.set(nil)` clears it.
    public enum Setting<T: Sendable>: Sendable {
        case keep
        case set(T?)
    }

    /// Sets the given settings of a queue (retry policy, retention of completed and of dead jobs) and
    /// returns all of them.
    public func configureQueue(
        _ queue: String, retry: Setting<JSON>, completedRetentionMs: Setting<Int64>,
        deadRetentionMs: Setting<Int64>, _ completion: @escaping (Result<QueueSettings, StoreError>) -> Void
    ) {
        func given<T>(_ s: Setting<T>) -> String { if case .set = s { "true" } else { "false" } }
        func value<T>(_ s: Setting<T>, _ text: (T) -> String) -> String? {
            if case .set(let v?) = s { text(v) } else { nil }
        }
        let params: [String?] = [
            queue, given(retry), given(completedRetentionMs), given(deadRetentionMs),
            value(retry) { $0.text }, value(completedRetentionMs) { String($0) }, value(deadRetentionMs) { String($0) },
        ]
        rows(QueueSQL.configure, params, completion) { rows in
            QueueSettings(
                queue: queue, paused: rows.bool(0, 0) ?? false, retry: JobRow.parsed(rows, 0, 1),
                completedRetentionMs: rows.int(0, 2), deadRetentionMs: rows.int(0, 3))
        }
    }

    /// Pauses or resumes a queue; returns whether it is paused now.
    public func setQueuePaused(
        _ queue: String, paused: Bool, _ completion: @escaping (Result<Bool, StoreError>) -> Void
    ) {
        rows(QueueSQL.setPaused, [queue, paused ? "true" : "false"], completion) { rows in
            rows.bool(0, 1) ?? paused
        }
    }
}
