import WharfJSON
import WharfPQ

/// What `jobs.enqueue` asks for, already validated.
public struct JobSpec: Sendable {
    public var queue: String
    public var kind: String
    public var payload: JSON = .null
    public var priority: Int64 = 0
    /// Epoch milliseconds; nil means now.
    public var runAtMs: Int64?
    public var maxAttempts: Int64 = 20
    public var retry: JSON?
    public var timeoutMs: Int64?
    public var uniqueKey: String?
    public var lockKey: String?
    public var tags: [String] = []
    public var meta: JSON?
    public var scheduleName: String?
    public var scheduleFireMs: Int64?
    /// Makes a retry of the same call safe: a later enqueue with this key makes nothing and answers
    /// with the job the first one came to (kept `Store.idempotencyRetentionMs`).
    public var idempotencyKey: String?

    public init(queue: String, kind: String) {
        self.queue = queue
        self.kind = kind
    }
}

/// The job one enqueue came to.
public struct EnqueuedJob: Sendable, Equatable {
    public var id: Int64
    /// Its state now (`unknown` when a replayed key's job has been pruned).
    public var state: String
    /// An unfinished job with the same uniqueKey existed, so this enqueue made nothing.
    public var duplicate: Bool
    /// True when an earlier call with the same idempotency key made (or found) the job, and this one
    /// only repeats its answer.
    public var replayed = false

    public init(id: Int64, state: String, duplicate: Bool, replayed: Bool = false) {
        self.id = id
        self.state = state
        self.duplicate = duplicate
        self.replayed = replayed
    }
}

/// Why one enqueue of a batch made no job and found none.
public enum EnqueueRefusal: Error, Sendable, Equatable {
    /// An equal job exists (a cron fire that was made already).
    case equalJobExists
    /// A concurrent enqueue took the uniqueKey, and its job changed before this one could read it.
    case uniqueKeyHolderChanged
    /// Looking up the job holding the uniqueKey failed; the row's own job was not made.
    case lookupFailed(StoreError)
}

/// One outcome per job of an enqueue statement, in input order.
public typealias EnqueueOutcomes = [Result<EnqueuedJob, EnqueueRefusal>]

extension Store {
    /// How long idempotency keys are kept at least (pruned after that).
    public static let idempotencyRetentionMs: Int64 = 24 * 3_600_000

    /// Inserts a batch of jobs in one statement (`wharf.enqueue_batch`), outcomes in input order: all or
    /// nothing (merged single enqueues are kept apart by the caller's `IsolatingBatcher`). A statement
    /// aborted because two calls recorded the same new idempotency key at once (`busy`) is run again
    /// (it changed nothing).
    public func enqueue(
        _ specs: [JobSpec],
        _ completion: @escaping (Result<EnqueueOutcomes, StoreError>) -> Void
    ) {
        enqueue(specs, handingTo: nil) { r, _ in completion(r) }
    }

    /// `enqueue(_:)`, and with `lease` a lease for a waiting worker in the same transaction, after the
    /// insert: the worker's jobs (the new ones among them) commit with the enqueue, one commit instead
    /// of two before the worker has them. `leased` is nil when no lease was asked or it failed; a
    /// failed lease costs the enqueue nothing (it runs again alone).
    public func enqueue(
        _ specs: [JobSpec], handingTo lease: LeaseRequest?,
        _ completion: @escaping (Result<EnqueueOutcomes, StoreError>, _ leased: [JobRecord]?) -> Void
    ) {
        let alone = { [self] (done: @escaping (Result<EnqueueOutcomes, StoreError>) -> Void) in
            enqueueStatement(specs, lease: nil) { r, _ in done(r.mapError { self.storeError($0) }) }
        }
        guard let lease else { return retryingWhenBusy(alone, then: { completion($0, nil) }) }
        enqueueStatement(specs, lease: lease) { [self] r, leased in
            // The transaction rolled back, so nothing was made: the enqueue runs again alone.
            if case .failure(let e) = r, e.kind == .server {
                return retryingWhenBusy(alone, then: { completion($0, nil) })
            }
            completion(r.mapError { storeError($0) }, leased)
        }
    }

    /// One run of the enqueue statement (with `lease`, followed by the lease in the same transaction).
    private func enqueueStatement(
        _ specs: [JobSpec], lease: LeaseRequest?,
        _ completion: @escaping (Result<EnqueueOutcomes, PQError>, [JobRecord]?) -> Void
    ) {
        var statements = [PQStatement(JobSQL.enqueue, JobSQL.enqueueArrays(specs, nullWhenAbsent: true))]
        if let lease {
            // The lease reads the rows the insert made (same transaction, later statement); it commits
            // with the enqueue, so it is as durable.
            statements += Self.planned(
                PQStatement(leaseStatement(for: lease), lease.params(durable: true)), Self.jobsPlan)
        }
        pool.run(PQSegment(statements)) { [self] r in
            switch r {
            case .failure(let e):
                completion(.failure(e), nil)
            case .success(let results):
                let rows = results[0]
                // A keyed job due in the worker's queues: nothing leased here, the worker is served the
                // usual way (by `JobSQL.lease`).
                let leased = lease.map { leasedJobs(results[results.count - 1], for: $0) ?? [] }
                let outcomes = (0..<rows.rowCount).map { i -> EnqueuedJob? in
                    guard let id = rows.int(i, 1) else { return nil }
                    return EnqueuedJob(
                        id: id, state: rows.string(i, 2) ?? "", duplicate: !(rows.bool(i, 3) ?? false),
                        replayed: rows.bool(i, 4) ?? false)
                }
                if let observer = jobsObserver {
                    let made = zip(specs, outcomes).compactMap { spec, o in
                        o.flatMap { !$0.duplicate && !$0.replayed ? spec.queue : nil }
                    }
                    if !made.isEmpty { observer.jobsEnqueued(queues: made) }
                }
                // A row without a job and without a uniqueKey lost to another unique index (a cron
                // fire made twice).
                func made(_ spec: JobSpec, _ outcome: EnqueuedJob?) -> Result<EnqueuedJob, EnqueueRefusal>? {
                    if let outcome { return .success(outcome) }
                    if spec.uniqueKey == nil { return .failure(.equalJobExists) }
                    return nil
                }
                let missing = zip(specs, outcomes).filter { made($0.0, $0.1) == nil }.compactMap { $0.0.uniqueKey }
                if missing.isEmpty { return completion(.success(zip(specs, outcomes).map { made($0, $1)! }), leased) }
                // A concurrent enqueue won the unique key after this statement's snapshot was taken.
                // The rows made here have committed: whatever happens to this lookup, they are
                // reported as made; a row it cannot explain made nothing, so its call may retry.
                resolveUniqueKeys(missing) { found in
                    completion(
                        .success(
                            zip(specs, outcomes).map { spec, outcome -> Result<EnqueuedJob, EnqueueRefusal> in
                                if let done = made(spec, outcome) { return done }
                                switch found {
                                case .failure(let e): return .failure(.lookupFailed(e))
                                case .success(let byKey):
                                    guard let o = byKey[spec.uniqueKey ?? ""] else {
                                        return .failure(.uniqueKeyHolderChanged)
                                    }
                                    return .success(o)
                                }
                            }), leased)
                }
            }
        }
    }

    private func resolveUniqueKeys(
        _ keys: [String], _ completion: @escaping (Result<[String: EnqueuedJob], StoreError>) -> Void
    ) {
        rows(JobSQL.byUniqueKeys, [PGArray.text(keys)], completion) { rows throws(StoreError) in
            var out: [String: EnqueuedJob] = [:]
            for i in 0..<rows.rowCount {
                guard let key = rows.string(i, 0), let id = rows.int(i, 1), let state = rows.string(i, 2) else {
                    throw .internalError
                }
                out[key] = EnqueuedJob(id: id, state: state, duplicate: true)
            }
            return out
        }
    }
}
