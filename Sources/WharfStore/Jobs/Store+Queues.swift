import WharfCore
import WharfPQ
import WharfRPC

extension Store {
    /// A page of queues by name after `after`, at most `limit`.
    public func listQueues(after: String?, limit: Int, _ completion: @escaping (Result<[JSON], RPCError>) -> Void) {
        one(QueueSQL.list, [after, String(limit)], completion) { rows in
            (0..<rows.rowCount).map { i in
                [
                    "name": .from(rows.string(i, 0)), "paused": .bool(rows.bool(i, 1) ?? false),
                    "available": .from(rows.int(i, 2)), "scheduled": .from(rows.int(i, 3)),
                    "running": .from(rows.int(i, 4)), "retryable": .from(rows.int(i, 5)),
                ]
            }
        }
    }

    public func queueStats(_ queue: String, _ completion: @escaping (Result<JSON, RPCError>) -> Void) {
        one(QueueSQL.stats, [queue], completion) { rows in
            var counts: JSONObject = [:]
            for (i, s) in ["scheduled", "available", "running", "retryable", "completed", "dead", "cancelled"]
                .enumerated()
            {
                counts[s] = .from(rows.int(0, 1 + i) ?? 0)
            }
            return [
                "queue": .string(queue), "paused": .bool(rows.bool(0, 0) ?? false), "counts": .object(counts),
                "oldestAvailableAgeMs": .from(rows.int(0, 8)),
                "completedLastMinute": .from(rows.int(0, 9)), "completedLast5Minutes": .from(rows.int(0, 10)),
                "throughputPerSec": .double(((Double(rows.int(0, 10) ?? 0) / 300) * 100).rounded() / 100),
                "failing": .from(rows.int(0, 11)),
            ]
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
        deadRetentionMs: Setting<Int64>, _ completion: @escaping (Result<JSON, RPCError>) -> Void
    ) {
        func given<T>(_ s: Setting<T>) -> String { if case .set = s { "true" } else { "false" } }
        func value<T>(_ s: Setting<T>, _ text: (T) -> String) -> String? {
            if case .set(let v?) = s { text(v) } else { nil }
        }
        let params: [String?] = [
            queue, given(retry), given(completedRetentionMs), given(deadRetentionMs),
            value(retry) { $0.text }, value(completedRetentionMs) { String($0) }, value(deadRetentionMs) { String($0) },
        ]
        one(QueueSQL.configure, params, completion) { rows in
            var retention = JSONObject()
            retention["completedMs"] = .from(rows.int(0, 2))
            retention["deadMs"] = .from(rows.int(0, 3))
            return [
                "queue": .string(queue), "paused": .bool(rows.bool(0, 0) ?? false),
                "retry": JobRow.parsed(rows, 0, 1) ?? .null, "retention": .object(retention),
            ]
        }
    }

    public func setQueuePaused(_ queue: String, paused: Bool, _ completion: @escaping (Result<JSON, RPCError>) -> Void)
    {
        one(QueueSQL.setPaused, [queue, paused ? "true" : "false"], completion) { rows in
            ["queue": .string(queue), "paused": .bool(rows.bool(0, 1) ?? paused)]
        }
    }
}
