import WharfCore
import WharfPQ
import WharfRPC

/// The server-wide retry defaults (see Protocol/jobs.md for why these values).
public struct RetryPolicy: Sendable {
    public var initialMs: Double = 1_000
    public var maxMs: Double = 3_600_000
    public var coefficient: Double = 2
    public var jitter: Double = 0.1
    public init() {}
}

/// How long finished jobs are kept when their queue sets no retention (see Protocol/jobs.md).
public struct RetentionPolicy: Sendable {
    /// Completed and cancelled jobs.
    public var completedMs: Int64 = 86_400_000
    /// Dead jobs, kept longer so that someone can look at them.
    public var deadMs: Int64 = 7 * 86_400_000
    public init() {}
}

/// One page of `jobs.list`.
public struct JobPage: Sendable {
    public var jobs: [JSON]
    /// True when the page ended at the byte budget rather than at the limit or the last job.
    public var cutByBytes: Bool
}

extension Store {
    /// Leases up to `max` jobs from `queues` in claim order (one statement), and fewer when their
    /// reply would pass `maxBytes` (always at least one when any is runnable). A `durable` lease
    /// commits like any write; otherwise it does not wait for the WAL flush (see Protocol/jobs.md).
    public func lease(
        queues: [String], max: Int, leaseMs: Int64, worker: String, maxBytes: Int, durable: Bool = true,
        _ completion: @escaping (Result<[JSON], RPCError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.text(queues), String(max), String(leaseMs), worker, String(maxBytes), durable ? "true" : "false",
        ]
        pool.query(JobSQL.lease, params) { [self] r in
            switch r {
            case .success(let rows):
                // A job with a lockKey holds that lock while it runs: the reply carries the grant's
                // fencing token.
                var jobs = (0..<rows.rowCount).map {
                    JobRow.json(rows, $0, withLeaseToken: true, fencingTokenColumn: JobRow.columnCount)
                }
                jobs.sort { a, b in
                    let pa = a["priority"]?.intValue ?? 0, pb = b["priority"]?.intValue ?? 0
                    if pa != pb { return pa > pb }
                    let ra = a["runAt"]?.stringValue ?? "", rb = b["runAt"]?.stringValue ?? ""
                    if ra != rb { return ra < rb }
                    return (Int64(a["id"]?.stringValue ?? "") ?? 0) < (Int64(b["id"]?.stringValue ?? "") ?? 0)
                }
                completion(.success(jobs))
            case .failure(let e):
                completion(.failure(rpcError(e)))
            }
        }
    }

    /// Extends a lease. Stale token → conflict `lease_lost`; cancelled job → conflict `cancelled`.
    public func heartbeat(
        id: Int64, token: String, extendMs: Int64, progress: JSON?,
        _ completion: @escaping (Result<String, RPCError>) -> Void
    ) {
        let params: [String?] = [String(id), token, String(extendMs), progress?.text]
        one(
            JobSQL.heartbeat, params,
            { [self] (r: Result<String?, RPCError>) in
                switch r {
                case .success(let expires?): completion(.success(expires))
                case .success(nil):
                    leaseFailure(id: id, token: token) { completion(.failure($0)) }
                case .failure(let e): completion(.failure(e))
                }
            }
        ) { rows in rows.rowCount > 0 ? rows.string(0, 0) : nil }
    }

    /// Works out why a token was refused.
    private func leaseFailure(id: Int64, token: String, _ completion: @escaping (RPCError) -> Void) {
        one(
            JobSQL.leaseCheck, [String(id), token],
            { (r: Result<RPCError, RPCError>) in
                switch r {
                case .success(let e), .failure(let e): completion(e)
                }
            }
        ) { rows in
            guard rows.rowCount > 0 else { return .notFound("job", id: String(id)) }
            return Self.leaseError(id: id, state: rows.string(0, 0), tokenMatches: rows.bool(0, 1) ?? false)
        }
    }

    static func leaseError(id: Int64, state: String?, tokenMatches: Bool) -> RPCError {
        if tokenMatches && state == "cancelled" {
            return .conflict("job \(id) was cancelled", reason: "cancelled", ["id": .string(String(id))])
        }
        return .conflict(
            "lease on job \(id) is no longer held by this token", reason: "lease_lost",
            ["id": .string(String(id)), "state": .from(state)])
    }

    /// Completes a batch in one statement. A repeated complete by the same token is idempotent.
    public func complete(
        _ items: [(id: Int64, token: String, result: JSON?)], retention: RetentionPolicy,
        _ completion: @escaping (Result<[FinishOutcome], RPCError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.ints(items.map(\.id)), PGArray.text(items.map(\.token)),
            PGArray.text(items.map { $0.result?.text }), String(retention.completedMs),
        ]
        finish(JobSQL.complete, params, items.map { ($0.id, $0.token) }, completion) { _, _ in
            .done(state: "completed", nextRunAt: nil)
        }
    }

    /// Fails a batch in one statement: retryable with backoff, or dead.
    public func fail(
        _ items: [(id: Int64, token: String, error: JSON, retryable: Bool, retryInMs: Int64?)], defaults: RetryPolicy,
        retention: RetentionPolicy, _ completion: @escaping (Result<[FinishOutcome], RPCError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.ints(items.map(\.id)), PGArray.text(items.map(\.token)), PGArray.text(items.map { $0.error.text }),
            PGArray.bools(items.map(\.retryable)), PGArray.ints(items.map(\.retryInMs)),
            String(defaults.initialMs), String(defaults.maxMs), String(defaults.coefficient), String(defaults.jitter),
            String(retention.deadMs),
        ]
        finish(JobSQL.fail, params, items.map { ($0.id, $0.token) }, completion) { rows, row in
            let state = rows.string(row, 1) ?? ""
            return .done(state: state, nextRunAt: state == "retryable" ? rows.string(row, 2) : nil)
        }
    }

    /// Runs a complete/fail statement that returns the (id, token) pairs it finished (first and last
    /// columns), then explains each refusal from the jobs' current state and token. Keying by the pair
    /// matters: a stale and a current token for one job may share a batch.
    func finish(
        _ sql: String, _ params: [String?], _ items: [(id: Int64, token: String)],
        _ completion: @escaping (Result<[FinishOutcome], RPCError>) -> Void,
        _ done: @escaping (PQResult, Int) -> FinishOutcome
    ) {
        pool.query(sql, params) { [self] r in
            switch r {
            case .failure(let e):
                completion(.failure(rpcError(e)))
            case .success(let rows):
                var outcomes: [String: FinishOutcome] = [:]
                let tokenColumn = rows.columnCount - 1
                for row in 0..<rows.rowCount {
                    if let id = rows.int(row, 0), let token = rows.string(row, tokenColumn) {
                        outcomes["\(id)|\(token)"] = done(rows, row)
                    }
                }
                let refused = items.filter { outcomes["\($0.id)|\($0.token)"] == nil }
                if refused.isEmpty { return completion(.success(items.map { outcomes["\($0.id)|\($0.token)"]! })) }
                one(
                    JobSQL.leaseStates, [PGArray.ints(refused.map(\.id))],
                    { (r: Result<[Int64: (String?, String?)], RPCError>) in
                        completion(
                            r.map { current in
                                items.map { item in
                                    if let o = outcomes["\(item.id)|\(item.token)"] { return o }
                                    guard let (state, token) = current[item.id] else {
                                        return .failure(.notFound("job", id: String(item.id)))
                                    }
                                    // A repeated complete by the holder that already completed it.
                                    if token == item.token && state == "completed" && (sql == JobSQL.complete || sql == CronSQL.completeWithPatch) {
                                        return .done(state: "completed", nextRunAt: nil)
                                    }
                                    return .failure(
                                        Self.leaseError(id: item.id, state: state, tokenMatches: token == item.token))
                                }
                            })
                    }
                ) { rows in
                    var current: [Int64: (String?, String?)] = [:]
                    for i in 0..<rows.rowCount {
                        if let id = rows.int(i, 0) { current[id] = (rows.string(i, 1), rows.string(i, 2)) }
                    }
                    return current
                }
            }
        }
    }

    /// Returns jobs to the runnable set: those whose lease expired (`held` nil), or those a lost
    /// worker held. Completion gets the (id, queue, newState) of every job moved.
    public func releaseJobs(
        held: [(id: Int64, token: String)]?, reason: String, retention: RetentionPolicy,
        _ completion: @escaping (Result<[(id: String, queue: String, state: String)], RPCError>) -> Void
    ) {
        let sql: String
        let params: [String?]
        if let held {
            sql = JobSQL.releaseLost
            params = [
                PGArray.ints(held.map(\.id)), PGArray.text(held.map(\.token)), reason, String(retention.deadMs),
            ]
        } else {
            sql = JobSQL.releaseExpired
            params = [String(retention.deadMs)]
        }
        one(sql, params, completion) { rows in
            (0..<rows.rowCount).map { (rows.string($0, 0)!, rows.string($0, 1)!, rows.string($0, 2)!) }
        }
    }

    /// Cancels an unfinished job. Returns the job's state afterwards and whether this call cancelled it.
    public func cancel(
        id: Int64, retention: RetentionPolicy,
        _ completion: @escaping (Result<(state: String, cancelled: Bool), RPCError>) -> Void
    ) {
        one(
            JobSQL.cancel, [String(id), String(retention.completedMs)],
            { [self] (r: Result<Bool, RPCError>) in
                switch r {
                case .success(true): completion(.success(("cancelled", true)))
                case .success(false): currentState(id) { completion($0.map { ($0, false) }) }
                case .failure(let e): completion(.failure(e))
                }
            }
        ) { rows in rows.rowCount > 0 }
    }

    /// Makes a dead or cancelled job available again.
    public func retry(id: Int64, _ completion: @escaping (Result<(state: String, retried: Bool), RPCError>) -> Void) {
        pool.query(JobSQL.retry, [String(id)]) { [self] r in
            switch r {
            case .success(let rows) where rows.rowCount > 0: completion(.success(("available", true)))
            case .success: currentState(id) { completion($0.map { ($0, false) }) }
            case .failure(let e) where e.sqlState == "23505":
                completion(.failure(.conflict("another unfinished job holds its uniqueKey", reason: "duplicate")))
            case .failure(let e): completion(.failure(rpcError(e)))
            }
        }
    }

    private func currentState(_ id: Int64, _ completion: @escaping (Result<String, RPCError>) -> Void) {
        one(JobSQL.stateOf, [String(id)], completion) { rows throws(RPCError) in
            guard rows.rowCount > 0, let s = rows.string(0, 0) else { throw .notFound("job", id: String(id)) }
            return s
        }
    }

    public func job(id: Int64, _ completion: @escaping (Result<JSON, RPCError>) -> Void) {
        one(JobSQL.get, [String(id)], completion) { rows throws(RPCError) in
            guard rows.rowCount > 0 else { throw .notFound("job", id: String(id)) }
            return JobRow.json(rows, 0, withAttempts: true)
        }
    }

    /// A page of jobs newest first before id `beforeID`: at most `limit`, and past the first job at
    /// most `maxBytes` of reply.
    public func listJobs(
        queue: String?, state: String?, kind: String?, tag: String?, beforeID: Int64?, limit: Int, maxBytes: Int,
        _ completion: @escaping (Result<JobPage, RPCError>) -> Void
    ) {
        let params: [String?] = [
            queue, state, kind, tag, beforeID.map(String.init), String(limit), String(maxBytes),
        ]
        one(JobSQL.list, params, completion) { rows in
            JobPage(
                jobs: (0..<rows.rowCount).map { JobRow.json(rows, $0) },
                cutByBytes: rows.rowCount > 0 && rows.bool(0, JobRow.columnCount) == true)
        }
    }

    /// Deletes one batch of at most `batch` finished jobs past retention; returns how many.
    public func pruneJobs(
        retention: RetentionPolicy, batch: Int, _ completion: @escaping (Result<Int, RPCError>) -> Void
    ) {
        one(JobSQL.prune, [String(retention.completedMs), String(retention.deadMs), String(batch)], completion) {
            $0.affectedRows
        }
    }
}
