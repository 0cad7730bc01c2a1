import Foundation
import WharfRPC

/// A job handed to a worker by `jobs.lease`.
public struct LeasedJob: Sendable {
    public let id: String
    public let queue: String
    public let kind: String
    public let payload: JSON
    public let attempt: Int
    public let maxAttempts: Int
    public let leaseToken: String
    public let leaseExpiresAt: String
    /// The whole job object as the server sent it.
    public let raw: JSON

    public init?(_ json: JSON) {
        guard let id = json["id"]?.stringValue, let token = json["leaseToken"]?.stringValue else { return nil }
        self.id = id
        queue = json["queue"]?.stringValue ?? ""
        kind = json["kind"]?.stringValue ?? ""
        payload = json["payload"] ?? .null
        attempt = Int(json["attempt"]?.intValue ?? 0)
        maxAttempts = Int(json["maxAttempts"]?.intValue ?? 0)
        leaseToken = token
        leaseExpiresAt = json["leaseExpiresAt"]?.stringValue ?? ""
        raw = json
    }
}

/// The reply to an enqueue.
public struct EnqueuedJob: Sendable, Equatable {
    public let id: String
    public let state: String
    public let duplicate: Bool
    /// True when an earlier call with the same idempotency key made (or found) this job.
    public var replayed: Bool = false
}

extension WharfClient {
    /// `jobs.enqueue`. `options` carries any other field of the method (priority, runAt, uniqueKey...).
    ///
    /// `idempotencyKey` (for instance a UUID made once per logical enqueue) makes the call safe to
    /// send again after an error whose outcome is unknown (`-32003` `outcome_unknown`, or a lost
    /// connection): the server then answers with the job the first call made instead of making
    /// another. `newIdempotencyKey()` makes one.
    public func enqueue(
        queue: String, kind: String, payload: JSON = .null, idempotencyKey: String? = nil, options: JSONObject = [:]
    ) async throws -> EnqueuedJob {
        var p = options
        p["queue"] = .string(queue)
        p["kind"] = .string(kind)
        p["payload"] = payload
        if let idempotencyKey { p["idempotencyKey"] = .string(idempotencyKey) }
        let r = try await call("jobs.enqueue", .object(p))
        return EnqueuedJob(
            id: r["id"]?.stringValue ?? "", state: r["state"]?.stringValue ?? "",
            duplicate: r["duplicate"]?.boolValue ?? false, replayed: r["replayed"]?.boolValue ?? false)
    }

    /// A fresh random idempotency key (a UUID) for `enqueue`.
    public static func newIdempotencyKey() -> String { UUID().uuidString.lowercased() }

    /// `jobs.lease`: up to `max` jobs, waiting up to `waitMs` for one to become available.
    public func lease(queues: [String], max: Int = 1, leaseMs: Int = 30_000, waitMs: Int = 0, worker: String)
        async throws
        -> [LeasedJob]
    {
        let r = try await call(
            "jobs.lease",
            [
                "queues": .array(queues.map(JSON.string)), "max": .from(max), "leaseMs": .from(leaseMs),
                "waitMs": .from(waitMs), "worker": .string(worker),
            ])
        return (r["jobs"]?.arrayValue ?? []).compactMap(LeasedJob.init)
    }

    public func heartbeat(_ job: LeasedJob, extendMs: Int = 30_000, progress: JSON? = nil) async throws {
        var p: JSONObject = ["id": .string(job.id), "leaseToken": .string(job.leaseToken), "extendMs": .from(extendMs)]
        if let progress { p["progress"] = progress }
        _ = try await call("jobs.heartbeat", .object(p))
    }

    public func complete(_ job: LeasedJob, result: JSON? = nil) async throws {
        var p: JSONObject = ["id": .string(job.id), "leaseToken": .string(job.leaseToken)]
        if let result { p["result"] = result }
        _ = try await call("jobs.complete", .object(p))
    }

    /// `jobs.fail`; returns the job's new state (`retryable` or `dead`).
    @discardableResult
    public func fail(_ job: LeasedJob, error: String, retryable: Bool = true, retryInMs: Int? = nil) async throws
        -> String
    {
        var p: JSONObject = [
            "id": .string(job.id), "leaseToken": .string(job.leaseToken), "error": .string(error),
            "retryable": .bool(retryable),
        ]
        if let retryInMs { p["retryInMs"] = .from(retryInMs) }
        return try await call("jobs.fail", .object(p))["state"]?.stringValue ?? ""
    }
}
