import WharfCore
import WharfRPC
import WharfStore

/// The jobs family's reply JSON and errors: the one place where the store's typed rows and refusals
/// become the wire's objects and `RPCError`s.
enum JobReplies {
    // MARK: Jobs

    /// A job object (`jobs.get`, `jobs.list`, `jobs.lease`). The lease token goes only to the worker
    /// that leased the job (`withLeaseToken`): anyone else who read it could complete or fail the job
    /// in its holder's place. `attempts` is shown when the record was read with its history.
    static func job(_ j: JobRecord, withLeaseToken: Bool = false) -> JSON {
        // Built as pairs with distinct keys: a lease reply holds hundreds of these, and setting each key
        // through the subscript would look it up first (and index the object past 16 keys).
        var o: [(key: String, value: JSON)] = []
        o.reserveCapacity(28)
        /// Adds `key` unless `value` is absent or JSON null.
        func put(_ key: String, _ value: JSON?) { if let value, value != .null { o.append((key, value)) } }
        put("id", .string(String(j.id)))
        put("queue", .string(j.queue))
        put("kind", .string(j.kind))
        o.append(("payload", j.payload))
        put("state", .string(j.state))
        put("priority", .int(j.priority))
        put("attempt", .int(j.attempt))
        put("maxAttempts", .int(j.maxAttempts))
        o.append(("runAt", .time(epochMs: j.runAtMs)))
        o.append(("createdAt", .time(epochMs: j.createdAtMs)))
        put("leasedAt", .time(epochMs: j.leasedAtMs))
        put("leaseExpiresAt", .time(epochMs: j.leaseExpiresAtMs))
        put("finishedAt", .time(epochMs: j.finishedAtMs))
        put("worker", j.worker.map(JSON.string))
        if withLeaseToken { put("leaseToken", j.leaseToken.map(JSON.string)) }
        put("uniqueKey", j.uniqueKey.map(JSON.string))
        put("lockKey", j.lockKey.map(JSON.string))
        o.append(("tags", j.tags))
        o.append(("meta", j.meta))
        put("progress", j.progress)
        put("result", j.result)
        put("lastError", j.lastError)
        put("timeoutMs", j.timeoutMs.map(JSON.int))
        if let name = j.scheduleName {
            o.append(("schedule", ["name": .string(name), "fireAt": .time(epochMs: j.scheduleFireAtMs)]))
        }
        put("retry", j.retry)
        put("fencingToken", j.fencingToken.map(JSON.int))
        if var attempts = j.attempts?.map(historyEntry) {
            // Failed and lost attempts are recorded as they end; the successful one is the row itself.
            if j.state == "completed" {
                attempts.append([
                    "attempt": .int(j.attempt), "worker": .from(j.worker), "leasedAt": .time(epochMs: j.leasedAtMs),
                    "finishedAt": .time(epochMs: j.finishedAtMs), "outcome": "completed",
                ])
            }
            o.append(("attempts", .array(attempts)))
        }
        return .object(JSONObject(distinctKeys: o))
    }

    /// A stored history entry with its instants in the reply format. The statements that end an attempt
    /// write them as the database renders a timestamptz in JSON (microseconds and an offset), and rows
    /// written so far keep that text.
    private static func historyEntry(_ entry: JSON) -> JSON {
        guard case .object(var o) = entry else { return entry }
        for key in ["leasedAt", "finishedAt"] {
            if let text = o[key]?.stringValue, let ms = Timestamp.parse(text) { o[key] = .time(epochMs: ms) }
        }
        return .object(o)
    }

    /// `jobs.lease`: the leased jobs, each with its lease token.
    static func leased(_ jobs: [JobRecord], draining: Bool = false) -> JSON {
        let list: JSON = .array(jobs.map { job($0, withLeaseToken: true) })
        return draining ? ["jobs": list, "draining": true] : ["jobs": list]
    }

    /// `jobs.lease` that found nothing (its wait ran out, its caller left, or the server drains: then
    /// `draining: true` tells the worker to lease from another replica).
    static func noJobs(draining: Bool) -> JSON { leased([], draining: draining) }

    /// `jobs.list`: a page and the cursor of the next (null when the list is exhausted). A page ends
    /// early at the byte budget; the cursor goes on from its last job.
    static func page(_ page: JobPage, limit: Int) -> JSON {
        let more = page.jobs.count == limit || page.cutByBytes
        let next: JSON = more ? (page.jobs.last.map { .string(String($0.id)) } ?? .null) : .null
        return ["jobs": .array(page.jobs.map { job($0) }), "nextCursor": next]
    }

    /// `jobs.get`.
    static func get(_ id: Int64, _ record: JobRecord?) -> Result<JSON, RPCError> {
        guard let record else { return .failure(.notFound("job", id: String(id))) }
        return .success(job(record))
    }

    // MARK: Enqueue

    /// `{id, state, duplicate}` of one enqueue, with `replayed: true` when an earlier call with the
    /// same idempotency key made it.
    static func enqueued(_ j: EnqueuedJob) -> JSON {
        var r: JSONObject = ["id": .string(String(j.id)), "state": .string(j.state), "duplicate": .bool(j.duplicate)]
        if j.replayed { r["replayed"] = true }
        return .object(r)
    }

    static func error(_ refusal: EnqueueRefusal) -> RPCError {
        switch refusal {
        case .equalJobExists: return .conflict("an equal job already exists", reason: "duplicate")
        case .uniqueKeyHolderChanged:
            return .unavailable("the job holding this uniqueKey changed meanwhile, retry", reason: "store_busy")
        case .lookupFailed(let e): return e.rpcError
        }
    }

    /// One enqueue's outcome as a call sees it.
    static func enqueueOutcome(_ r: Result<EnqueuedJob, EnqueueRefusal>) -> Result<EnqueuedJob, RPCError> {
        r.mapError(error)
    }

    /// `jobs.enqueueBatch`: all the outcomes, or the first refusal (the call is all or nothing).
    static func enqueuedBatch(_ outcomes: [Result<EnqueuedJob, EnqueueRefusal>]) -> Result<[EnqueuedJob], RPCError> {
        var all: [EnqueuedJob] = []
        for o in outcomes {
            switch o {
            case .success(let j): all.append(j)
            case .failure(let refusal): return .failure(error(refusal))
            }
        }
        return .success(all)
    }

    // MARK: Leases

    static func error(_ refusal: LeaseRefusal, id: Int64) -> RPCError {
        switch refusal {
        case .notFound:
            return .notFound("job", id: String(id))
        case .cancelled:
            return .conflict("job \(id) was cancelled", reason: "cancelled", ["id": .string(String(id))])
        case .lost(let state):
            return .conflict(
                "lease on job \(id) is no longer held by this token", reason: "lease_lost",
                ["id": .string(String(id)), "state": .from(state)])
        }
    }

    /// `jobs.heartbeat`.
    static func heartbeat(_ id: Int64, _ outcome: HeartbeatOutcome) -> Result<JSON, RPCError> {
        switch outcome {
        case .extended(let expires):
            return .success(["id": .string(String(id)), "leaseExpiresAt": .time(epochMs: expires)])
        case .refused(let refusal): return .failure(error(refusal, id: id))
        }
    }

    /// A complete or fail as its call sees it: refusals become errors.
    static func finishOutcome(_ id: Int64, _ outcome: FinishOutcome) -> Result<FinishOutcome, RPCError> {
        if case .refused(let refusal) = outcome { return .failure(error(refusal, id: id)) }
        return .success(outcome)
    }

    /// `jobs.complete` and `jobs.fail`: `{id, state}`, with `nextRunAt` for a job that will retry.
    static func finished(_ id: Int64, _ result: Result<FinishOutcome, RPCError>) -> Result<JSON, RPCError> {
        result.flatMap { outcome in
            switch outcome {
            case .refused(let refusal): return .failure(error(refusal, id: id))
            case .done(let state, let next, _):
                var o: JSONObject = ["id": .string(String(id)), "state": .string(state)]
                if let next { o["nextRunAt"] = .time(epochMs: next) }
                return .success(.object(o))
            }
        }
    }

    // MARK: Cancel and retry

    /// `jobs.cancel`: `{id, state, cancelled}`.
    static func cancel(_ id: Int64, _ outcome: CancelOutcome) -> Result<JSON, RPCError> {
        switch outcome {
        case .cancelled:
            return .success(["id": .string(String(id)), "state": "cancelled", "cancelled": true])
        case .unchanged(let state):
            return .success(["id": .string(String(id)), "state": .string(state), "cancelled": false])
        case .notFound:
            return .failure(.notFound("job", id: String(id)))
        }
    }

    /// `jobs.retry`: `{id, state: "available"}`.
    static func retry(_ id: Int64, _ outcome: RetryOutcome) -> Result<JSON, RPCError> {
        switch outcome {
        case .retried:
            return .success(["id": .string(String(id)), "state": "available"])
        case .notRetryable(let state):
            return .failure(
                .conflict(
                    "job \(id) is \(state); only dead or cancelled jobs can be retried", reason: "invalid_state",
                    ["state": .string(state)]))
        case .notFound:
            return .failure(.notFound("job", id: String(id)))
        case .uniqueKeyTaken:
            return .failure(.conflict("another unfinished job holds its uniqueKey", reason: "duplicate"))
        }
    }

    // MARK: Queues

    /// `queues.list`: a page of queues and the cursor of the next.
    static func queues(_ list: [QueueSummary], limit: Int) -> JSON {
        let next: JSON = list.count == limit ? (list.last.map { .string($0.name) } ?? .null) : .null
        let queues: [JSON] = list.map { q in
            [
                "name": .string(q.name), "paused": .bool(q.paused), "available": .int(q.available),
                "scheduled": .int(q.scheduled), "running": .int(q.running), "retryable": .int(q.retryable),
            ]
        }
        return ["queues": .array(queues), "nextCursor": next]
    }

    /// `queues.stats`.
    static func stats(_ s: QueueStats) -> JSON {
        var counts: JSONObject = [:]
        for (state, n) in zip(QueueStats.states, s.counts) { counts[state] = .int(n) }
        return [
            "queue": .string(s.queue), "paused": .bool(s.paused), "counts": .object(counts),
            "oldestAvailableAgeMs": .from(s.oldestAvailableAgeMs),
            "completedLastMinute": .int(s.completedLastMinute), "completedLast5Minutes": .int(s.completedLast5Minutes),
            "throughputPerSec": .double(((Double(s.completedLast5Minutes) / 300) * 100).rounded() / 100),
            "failing": .int(s.failing),
            "lastHour": [
                "completed": .array(s.lastHourCompleted.map(JSON.int)), "dead": .array(s.lastHourDead.map(JSON.int)),
            ],
        ]
    }

    /// `queues.configure`: every setting of the queue.
    static func settings(_ s: QueueSettings) -> JSON {
        var retention = JSONObject()
        retention["completedMs"] = .from(s.completedRetentionMs)
        retention["deadMs"] = .from(s.deadRetentionMs)
        return [
            "queue": .string(s.queue), "paused": .bool(s.paused), "retry": s.retry ?? .null,
            "retention": .object(retention),
        ]
    }

    /// `queues.pause` and `queues.resume`.
    static func paused(_ queue: String, _ paused: Bool) -> JSON { ["queue": .string(queue), "paused": .bool(paused)] }
}
