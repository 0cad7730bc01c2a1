import WharfCore
import WharfJSON
import WharfPQ

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
    public var jobs: [JobRecord]
    /// True when the page ended at the byte budget rather than at the limit or the last job.
    public var cutByBytes: Bool
}

/// Why a heartbeat, complete or fail with a lease token changed nothing.
public enum LeaseRefusal: Sendable, Equatable {
    /// There is no such job.
    case notFound
    /// The job was cancelled while this token held it.
    case cancelled
    /// The token no longer holds the job: another lease does, or it is no longer running (`state`, its
    /// state now).
    case lost(state: String?)
}

/// The outcome of one heartbeat.
public enum HeartbeatOutcome: Sendable, Equatable {
    /// The lease now expires at `leaseExpiresAtMs` (epoch milliseconds).
    case extended(leaseExpiresAtMs: Int64)
    case refused(LeaseRefusal)
}

/// The outcome of one complete or fail, per job of a batch.
public enum FinishOutcome: Sendable, Equatable {
    /// The job of `queue` is now in `state`; a retryable one runs again at `nextRunAtMs` (epoch
    /// milliseconds).
    case done(state: String, nextRunAtMs: Int64?, queue: String = "")
    case refused(LeaseRefusal)
}

/// The outcome of one cancel.
public enum CancelOutcome: Sendable, Equatable {
    /// The job, of `queue`, is cancelled now.
    case cancelled(queue: String)
    /// The job was already finished, in `state`.
    case unchanged(state: String)
    case notFound
}

/// The outcome of one retry.
public enum RetryOutcome: Sendable, Equatable {
    /// The job is available again.
    case retried
    /// Only dead or cancelled jobs can be retried; the job is in `state`.
    case notRetryable(state: String)
    case notFound
    /// Another unfinished job holds the job's uniqueKey.
    case uniqueKeyTaken
}

/// What one lease asks for (`Store.lease`, or the lease an enqueue takes in its own transaction for a
/// waiting worker: `Store.enqueue(_:handingTo:)`).
public struct LeaseRequest: Sendable {
    public var queues: [String]
    public var max: Int
    public var leaseMs: Int64
    public var worker: String
    /// Bytes the reply may carry past its first job.
    public var maxBytes: Int

    public init(queues: [String], max: Int, leaseMs: Int64, worker: String, maxBytes: Int) {
        self.queues = queues
        self.max = max
        self.leaseMs = leaseMs
        self.worker = worker
        self.maxBytes = maxBytes
    }

    /// `JobSQL.lease`'s parameters.
    func params(durable: Bool) -> [String?] {
        [PGArray.text(queues), String(max), String(leaseMs), worker, String(maxBytes), durable ? "true" : "false"]
    }
}

/// A running job that went back to the runnable set (or died) because its worker or lease was lost.
public struct ReleasedJob: Sendable, Equatable {
    public var id: Int64
    public var queue: String
    /// `available`, or `dead` when its attempts were used up.
    public var state: String
}

extension Store {
    /// How the lease and the statements that finish jobs are planned: by key. Planned from statistics
    /// taken while the table was smaller or had no running job, they read all of `wharf.jobs` for every
    /// batch and kept doing so while the plan stayed cached (BENCHMARKS.md, "Plans that read the whole
    /// table").
    static let jobsPlan = PlanChoice.byKey

    /// Leases up to `request.max` jobs from its queues in claim order (one statement), and fewer when
    /// their reply would pass `maxBytes` (always at least one when any is runnable). A `durable` lease
    /// commits like any write; otherwise it does not wait for the WAL flush (see Protocol/jobs.md).
    /// The rows carry their lease token, and the fencing token of a lockKey's lock.
    public func lease(
        _ request: LeaseRequest, durable: Bool = true,
        _ completion: @escaping (Result<[JobRecord], StoreError>) -> Void
    ) {
        let params = request.params(durable: durable)
        rows(
            leaseStatement(for: request), params, plan: Self.jobsPlan,
            { [self] (r: Result<[JobRecord]?, StoreError>) in
                guard case .success(nil) = r else { return completion(r.map { $0 ?? [] }) }
                // A keyed job is due in one of the queues: the whole statement, which took nothing yet.
                rows(JobSQL.lease, params, plan: Self.jobsPlan, completion) { self.leasedJobs($0, for: request) ?? [] }
            }
        ) { self.leasedJobs($0, for: request) }
    }

    /// How long the queues of a lease that found a runnable keyed job run `JobSQL.lease` straight away.
    static let keyedLeaseMemoryMs: Int64 = 5_000

    /// The lease statement for `request`: `JobSQL.lease` when one of its queues had a runnable keyed job
    /// lately, otherwise `JobSQL.leaseWithoutKeys`, which says when it should not have been used.
    func leaseStatement(for request: LeaseRequest) -> String {
        let now = Timestamp.nowMs()
        return request.queues.contains(where: { (keyedLeaseQueues[$0] ?? 0) > now })
            ? JobSQL.lease : JobSQL.leaseWithoutKeys
    }

    /// The jobs a lease statement returned, in claim order (noted by the observer); nil when
    /// `JobSQL.leaseWithoutKeys` found a keyed job due (it then took nothing, and the request's queues
    /// run `JobSQL.lease` for a while).
    func leasedJobs(_ rows: PQResult, for request: LeaseRequest) -> [JobRecord]? {
        if rows.rowCount > 0, rows.int(rows.rowCount - 1, 0) == nil {
            let now = Timestamp.nowMs()
            if keyedLeaseQueues.count > 1_000 { keyedLeaseQueues = keyedLeaseQueues.filter { $0.value > now } }
            for q in request.queues { keyedLeaseQueues[q] = now + Self.keyedLeaseMemoryMs }
            return nil
        }
        var jobs = (0..<rows.rowCount).map { JobRow.record(rows, $0, fencingTokenColumn: JobRow.columnCount) }
        if let observer = jobsObserver, !jobs.isEmpty {
            observer.jobsLeased(jobs.map { ($0.queue, Swift.max(0, ($0.leasedAtMs ?? $0.runAtMs) - $0.runAtMs)) })
        }
        jobs.sort { a, b in
            if a.priority != b.priority { return a.priority > b.priority }
            if a.runAtMs != b.runAtMs { return a.runAtMs < b.runAtMs }
            return a.id < b.id
        }
        return jobs
    }

    /// Extends a lease, or says why the token no longer holds the job.
    public func heartbeat(
        id: Int64, token: String, extendMs: Int64, progress: JSON?,
        _ completion: @escaping (Result<HeartbeatOutcome, StoreError>) -> Void
    ) {
        let params: [String?] = [String(id), token, String(extendMs), progress?.text]
        rows(
            JobSQL.heartbeat, params,
            { [self] (r: Result<Int64?, StoreError>) in
                switch r {
                case .success(let expires?): completion(.success(.extended(leaseExpiresAtMs: expires)))
                case .success(nil): leaseRefusal(id: id, token: token) { completion($0.map { .refused($0) }) }
                case .failure(let e): completion(.failure(e))
                }
            }
        ) { rows in rows.rowCount > 0 ? rows.int(0, 0) : nil }
    }

    /// Works out why a token was refused.
    private func leaseRefusal(
        id: Int64, token: String, _ completion: @escaping (Result<LeaseRefusal, StoreError>) -> Void
    ) {
        rows(JobSQL.leaseCheck, [String(id), token], completion) { rows in
            guard rows.rowCount > 0 else { return .notFound }
            return Self.leaseRefusal(state: rows.string(0, 0), tokenMatches: rows.bool(0, 1) ?? false)
        }
    }

    static func leaseRefusal(state: String?, tokenMatches: Bool) -> LeaseRefusal {
        tokenMatches && state == "cancelled" ? .cancelled : .lost(state: state)
    }

    /// Completes a batch in one statement. A repeated complete by the same token is idempotent.
    public func complete(
        _ items: [(id: Int64, token: String, result: JSON?)], retention: RetentionPolicy,
        _ completion: @escaping (Result<[FinishOutcome], StoreError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.ints(items.map(\.id)), PGArray.text(items.map(\.token)),
            PGArray.text(items.map { $0.result?.text }), String(retention.completedMs),
        ]
        finish(
            JobSQL.complete, params, items.map { ($0.id, $0.token) }, completes: true, completion
        ) { rows, row in .done(state: "completed", nextRunAtMs: nil, queue: rows.string(row, 1) ?? "") }
    }

    /// Fails a batch in one statement: retryable with backoff, or dead.
    public func fail(
        _ items: [(id: Int64, token: String, error: JSON, retryable: Bool, retryInMs: Int64?)], defaults: RetryPolicy,
        retention: RetentionPolicy, _ completion: @escaping (Result<[FinishOutcome], StoreError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.ints(items.map(\.id)), PGArray.text(items.map(\.token)), PGArray.text(items.map { $0.error.text }),
            PGArray.bools(items.map(\.retryable)), PGArray.ints(items.map(\.retryInMs)),
            String(defaults.initialMs), String(defaults.maxMs), String(defaults.coefficient), String(defaults.jitter),
            String(retention.deadMs),
        ]
        finish(JobSQL.fail, params, items.map { ($0.id, $0.token) }, completes: false, completion) { rows, row in
            let state = rows.string(row, 1) ?? ""
            return .done(
                state: state, nextRunAtMs: state == "retryable" ? rows.int(row, 2) : nil,
                queue: rows.string(row, 3) ?? "")
        }
    }

    /// A job under one lease, the key of a complete's or fail's outcome (see `finish`).
    struct LeaseKey: Hashable {
        let id: Int64
        let token: String
    }

    /// Runs a complete/fail statement that returns the (id, token) pairs it finished (first and last
    /// columns), then explains each refusal from the jobs' current state and token. Keying by the pair
    /// matters: a stale and a current token for one job may share a batch. For a statement that
    /// `completes`, a job already completed under the same token is a repeat of that completion (its
    /// reply was lost) and succeeds again.
    func finish(
        _ sql: String, _ params: [String?], _ items: [(id: Int64, token: String)], completes: Bool,
        _ completion: @escaping (Result<[FinishOutcome], StoreError>) -> Void,
        _ done: @escaping (PQResult, Int) -> FinishOutcome
    ) {
        runPlanned(sql, params, plan: Self.jobsPlan) { [self] r in
            switch r {
            case .failure(let e):
                completion(.failure(storeError(e)))
            case .success(let rows):
                var outcomes: [LeaseKey: FinishOutcome] = [:]
                var finished: [(queue: String, state: String, runMs: Int64)] = []
                let tokenColumn = rows.columnCount - 1
                let queueColumn = rows.column("queue")
                let runColumn = rows.column("run_ms")
                for row in 0..<rows.rowCount {
                    if let id = rows.int(row, 0), let token = rows.string(row, tokenColumn) {
                        let outcome = done(rows, row)
                        outcomes[LeaseKey(id: id, token: token)] = outcome
                        if case .done(let state, _, _) = outcome, let q = queueColumn, let queue = rows.string(row, q) {
                            finished.append((queue, state, runColumn.flatMap { rows.int(row, $0) } ?? 0))
                        }
                    }
                }
                if !finished.isEmpty { jobsObserver?.jobsFinished(finished) }
                let answered = items.map { outcomes[LeaseKey(id: $0.id, token: $0.token)] }
                if !answered.contains(nil) { return completion(.success(answered.map { $0! })) }
                let refused = zip(items, answered).filter { $0.1 == nil }.map(\.0)
                self.rows(
                    JobSQL.leaseStates, [PGArray.ints(refused.map(\.id))],
                    { (r: Result<[Int64: (String?, String?)], StoreError>) in
                        completion(
                            r.map { current in
                                zip(items, answered).map { item, answer in
                                    if let o = answer { return o }
                                    guard let (state, token) = current[item.id] else { return .refused(.notFound) }
                                    if completes && token == item.token && state == "completed" {
                                        return .done(state: "completed", nextRunAtMs: nil)
                                    }
                                    return .refused(Self.leaseRefusal(state: state, tokenMatches: token == item.token))
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
    /// worker held. Completion gets every job moved.
    public func releaseJobs(
        held: [(id: Int64, token: String)]?, reason: String, retention: RetentionPolicy,
        _ completion: @escaping (Result<[ReleasedJob], StoreError>) -> Void
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
        let reason = held == nil ? "lease_expired" : reason
        rows(sql, params, completion) { [self] rows throws(StoreError) in
            let moved = try (0..<rows.rowCount).map { (i) throws(StoreError) in
                guard let id = rows.int(i, 0), let queue = rows.string(i, 1), let state = rows.string(i, 2) else {
                    throw .internalError
                }
                return ReleasedJob(id: id, queue: queue, state: state)
            }
            if !moved.isEmpty { jobsObserver?.jobsReleased(moved, reason: reason) }
            return moved
        }
    }

    /// Cancels an unfinished job.
    public func cancel(
        id: Int64, retention: RetentionPolicy, _ completion: @escaping (Result<CancelOutcome, StoreError>) -> Void
    ) {
        rows(
            JobSQL.cancel, [String(id), String(retention.completedMs)],
            { [self] (r: Result<String?, StoreError>) in
                switch r {
                case .success(let queue?): completion(.success(.cancelled(queue: queue)))
                case .success(nil):
                    currentState(id) { completion($0.map { $0.map { .unchanged(state: $0) } ?? .notFound }) }
                case .failure(let e): completion(.failure(e))
                }
            }
        ) { rows in rows.rowCount > 0 ? rows.string(0, 1) ?? "" : nil }
    }

    /// Makes a dead or cancelled job available again.
    public func retry(id: Int64, _ completion: @escaping (Result<RetryOutcome, StoreError>) -> Void) {
        pool.query(JobSQL.retry, [String(id)]) { [self] r in
            switch r {
            case .success(let rows) where rows.rowCount > 0: completion(.success(.retried))
            case .success: currentState(id) { completion($0.map { $0.map { .notRetryable(state: $0) } ?? .notFound }) }
            case .failure(let e) where e.sqlState == "23505": completion(.success(.uniqueKeyTaken))
            case .failure(let e): completion(.failure(storeError(e)))
            }
        }
    }

    /// A job's state, nil when there is no such job.
    private func currentState(_ id: Int64, _ completion: @escaping (Result<String?, StoreError>) -> Void) {
        rows(JobSQL.stateOf, [String(id)], completion) { rows in rows.rowCount > 0 ? rows.string(0, 0) : nil }
    }

    /// A job with its attempt history; nil when there is no such job.
    public func job(id: Int64, _ completion: @escaping (Result<JobRecord?, StoreError>) -> Void) {
        rows(JobSQL.get, [String(id)], completion) { rows in
            rows.rowCount > 0 ? JobRow.record(rows, 0, attemptsColumn: JobRow.columnCount) : nil
        }
    }

    /// A page of jobs newest first before id `beforeID`: at most `limit`, and past the first job at
    /// most `maxBytes` of reply.
    public func listJobs(
        queue: String?, state: String?, kind: String?, tag: String?, createdFromMs: Int64? = nil,
        createdBeforeMs: Int64? = nil, beforeID: Int64?, limit: Int, maxBytes: Int,
        _ completion: @escaping (Result<JobPage, StoreError>) -> Void
    ) {
        let params: [String?] = [
            queue, state, kind, tag, beforeID.map(String.init), String(limit), String(maxBytes),
            createdFromMs.map(String.init), createdBeforeMs.map(String.init),
        ]
        rows(JobSQL.list, params, completion) { rows in
            JobPage(
                jobs: (0..<rows.rowCount).map { JobRow.record(rows, $0) },
                cutByBytes: rows.rowCount > 0 && rows.bool(0, JobRow.columnCount) == true)
        }
    }

    /// The unfinished job holding `uniqueKey`, if any.
    public func job(uniqueKey: String, _ completion: @escaping (Result<JobRecord?, StoreError>) -> Void) {
        rows(JobSQL.byUniqueKey, [uniqueKey], completion) { rows in rows.rowCount > 0 ? JobRow.record(rows, 0) : nil }
    }

    /// Deletes one batch of at most `batch` finished jobs past retention; returns how many.
    public func pruneJobs(
        retention: RetentionPolicy, batch: Int, _ completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        rows(JobSQL.prune, [String(retention.completedMs), String(retention.deadMs), String(batch)], completion) {
            $0.affectedRows
        }
    }
}
