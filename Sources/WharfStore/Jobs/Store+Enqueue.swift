import WharfCore
import WharfPQ
import WharfRPC

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

/// The outcome of one enqueue.
public struct EnqueueOutcome: Sendable {
    public var id: String
    public var state: String
    public var duplicate: Bool
    /// True when an earlier call with the same idempotency key made (or found) the job, and this one
    /// only repeats its answer.
    public var replayed = false
}

/// The outcome of one complete or fail, per job of a batch.
public enum FinishOutcome: Sendable {
    case done(state: String, nextRunAt: String?)
    case failure(RPCError)
}

extension Store {
    /// How long idempotency keys are kept at least (pruned after that).
    public static let idempotencyRetentionMs: Int64 = 24 * 3_600_000

    /// Inserts a batch of jobs in one statement, outcomes in input order: all or nothing (merged
    /// single enqueues are kept apart by the caller's `IsolatingBatcher`). A statement aborted because
    /// two calls recorded the same new idempotency key at once is run again (it changed nothing).
    public func enqueue(
        _ specs: [JobSpec], _ completion: @escaping (Result<[Result<EnqueueOutcome, RPCError>], RPCError>) -> Void
    ) {
        enqueueStatement(specs, attemptsLeft: 3) { [self] r in completion(r.mapError { rpcError($0) }) }
    }

    private func enqueueStatement(
        _ specs: [JobSpec], attemptsLeft: Int,
        _ completion: @escaping (Result<[Result<EnqueueOutcome, RPCError>], PQError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.text(specs.map(\.queue)),
            PGArray.text(specs.map(\.kind)),
            PGArray.text(specs.map { $0.payload.text }),
            PGArray.ints(specs.map(\.priority)),
            PGArray.ints(specs.map(\.runAtMs)),
            PGArray.ints(specs.map(\.maxAttempts)),
            PGArray.text(specs.map { $0.retry?.text }),
            PGArray.ints(specs.map(\.timeoutMs)),
            PGArray.text(specs.map(\.uniqueKey)),
            PGArray.text(specs.map(\.lockKey)),
            PGArray.text(specs.map { JSON.array($0.tags.map(JSON.string)).text }),
            PGArray.text(specs.map { $0.meta?.text }),
            PGArray.text(specs.map(\.scheduleName)),
            PGArray.ints(specs.map(\.scheduleFireMs)),
        ]
        // Without keys, the plain statement: keys cost a lookup and an insert per row.
        let keyed = specs.contains { $0.idempotencyKey != nil }
        let sql = keyed ? JobSQL.enqueueKeyed : JobSQL.enqueue
        pool.query(sql, keyed ? params + [PGArray.text(specs.map(\.idempotencyKey))] : params) { [self] r in
            switch r {
            case .failure(let e) where e.sqlState == "40001" && attemptsLeft > 1:
                enqueueStatement(specs, attemptsLeft: attemptsLeft - 1, completion)
            case .failure(let e):
                completion(.failure(e))
            case .success(let rows):
                let outcomes = (0..<rows.rowCount).map { i -> EnqueueOutcome? in
                    guard let id = rows.string(i, 1) else { return nil }
                    return EnqueueOutcome(
                        id: id, state: rows.string(i, 2) ?? "", duplicate: !(rows.bool(i, 3) ?? false),
                        replayed: rows.bool(i, 4) ?? false)
                }
                // A row without a job and without a uniqueKey lost to another unique index (a cron
                // fire made twice).
                func made(_ spec: JobSpec, _ outcome: EnqueueOutcome?) -> Result<EnqueueOutcome, RPCError>? {
                    if let outcome { return .success(outcome) }
                    if spec.uniqueKey == nil {
                        return .failure(.conflict("an equal job already exists", reason: "duplicate"))
                    }
                    return nil
                }
                let missing = zip(specs, outcomes).filter { made($0.0, $0.1) == nil }.compactMap { $0.0.uniqueKey }
                if missing.isEmpty { return completion(.success(zip(specs, outcomes).map { made($0, $1)! })) }
                // A concurrent enqueue won the unique key after this statement's snapshot was taken.
                // The rows made here have committed: whatever happens to this lookup, they are
                // reported as made; a row it cannot explain made nothing, so its call may retry.
                resolveUniqueKeys(missing) { found in
                    completion(
                        .success(
                            zip(specs, outcomes).map { spec, outcome -> Result<EnqueueOutcome, RPCError> in
                                if let done = made(spec, outcome) { return done }
                                switch found {
                                case .failure(let e): return .failure(e)
                                case .success(let byKey):
                                    guard let o = byKey[spec.uniqueKey ?? ""] else {
                                        return .failure(
                                            .unavailable(
                                                "the job holding this uniqueKey changed meanwhile, retry",
                                                reason: "store_busy"))
                                    }
                                    return .success(o)
                                }
                            }))
                }
            }
        }
    }

    private func resolveUniqueKeys(
        _ keys: [String], _ completion: @escaping (Result<[String: EnqueueOutcome], RPCError>) -> Void
    ) {
        one(JobSQL.byUniqueKeys, [PGArray.text(keys)], completion) { rows in
            var out: [String: EnqueueOutcome] = [:]
            for i in 0..<rows.rowCount {
                out[rows.string(i, 0)!] = EnqueueOutcome(
                    id: rows.string(i, 1)!, state: rows.string(i, 2)!, duplicate: true)
            }
            return out
        }
    }
}
