import Logging
import WharfCore
import WharfPQ

/// Every SQL statement Wharf runs, grouped by table in `Store+*.swift` files.
///
/// The store classifies database failures as `StoreError` (an unreachable database, a connection lost
/// after the statement was sent, a database that refuses writes, a busy one); anything else unexpected
/// is an internal error, logged here and not leaked.
/// Lives on the loop thread.
public final class Store {
    public let pool: PQPool
    let logger: Logger
    /// When a statement was last refused because the database is read-only (epoch ms; 0: never).
    /// Health reports read-only for a while after one, since the pool's connections need not all
    /// agree (only new sessions see an `ALTER DATABASE ... SET default_transaction_read_only`).
    public private(set) var lastReadOnlyRefusalMs: Int64 = 0
    /// Told what the jobs statements changed, for metrics (`JobsObserver`). Held strongly (the observer
    /// does not hold the store): a weak reference would put its every retain and release on the slow path.
    public var jobsObserver: (any JobsObserver)?
    /// Queues whose leases run `JobSQL.lease` (with keyed jobs) until the time given (epoch ms): one of
    /// them had a runnable keyed job at a recent lease (`Store.leaseStatement(for:)`).
    var keyedLeaseQueues: [String: Int64] = [:]

    public init(pool: PQPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Classifies a database failure (logging the unexpected ones, which clients see only as internal).
    public func storeError(_ e: PQError) -> StoreError {
        switch e.kind {
        case .unavailable:
            return .unavailable
        case .outcomeUnknown:
            return .outcomeUnknown
        case .aborted, .server:
            if Self.readOnlyStates.contains(e.sqlState ?? "") {
                lastReadOnlyRefusalMs = Timestamp.nowMs()
                return .readOnly
            }
            if e.sqlState == "40001" || e.sqlState == "40P01" || e.sqlState?.hasPrefix("08") == true
                || e.sqlState == "57P01"
            {
                return .busy
            }
            logger.error("database error", metadata: ["error": "\(e)"])
            return .internalError
        }
    }

    /// Runs `statement`, and again (at most `attempts` runs in all) while the database aborts it as
    /// `busy` (a serialization failure or a deadlock): it changed nothing then, so a new run is safe.
    public func retryingWhenBusy<T>(
        attempts: Int = 3, _ statement: @escaping (@escaping (Result<T, StoreError>) -> Void) -> Void,
        then done: @escaping (Result<T, StoreError>) -> Void
    ) {
        statement { [self] result in
            if case .failure(.busy) = result, attempts > 1 {
                return retryingWhenBusy(attempts: attempts - 1, statement, then: done)
            }
            done(result)
        }
    }

    /// SQLSTATEs of a database that refuses writes. PostgreSQL reports every write refused for
    /// `default_transaction_read_only`, a hot standby (`cannot execute ... during recovery`, `nextval`,
    /// `NOTIFY`, `FOR UPDATE`) as read_only_sql_transaction.
    static let readOnlyStates: Set<String> = ["25006"]

    /// Runs one statement and hands its rows to `body`, mapping failures to `StoreError`.
    ///
    /// With `plan: .generic` the statement runs with `plan_cache_mode = force_generic_plan` for its
    /// own implicit transaction (a `set_config(..., true)` in the same pipeline segment), so its
    /// prepared plan is made once per connection instead of at every execution. PostgreSQL keeps
    /// re-planning a prepared statement whose generic plan it estimates costlier than a custom one;
    /// for the lease (a dozen CTEs, estimated for ten queues when the array is a parameter) that
    /// planning took longer than running it.
    func rows<T>(
        _ sql: String, _ params: [String?], plan: PlanChoice = .auto,
        _ completion: @escaping (Result<T, StoreError>) -> Void,
        _ body: @escaping (PQResult) throws(StoreError) -> T
    ) {
        runPlanned(sql, params, plan: plan) { [self] r in
            switch r {
            case .success(let result):
                do throws(StoreError) { completion(.success(try body(result))) } catch {
                    completion(.failure(error))
                }
            case .failure(let e):
                completion(.failure(storeError(e)))
            }
        }
    }

    /// Runs `sql` planned as `plan` (after the settings `planned` puts first) and hands over its result.
    func runPlanned(
        _ sql: String, _ params: [String?], plan: PlanChoice,
        _ completion: @escaping (Result<PQResult, PQError>) -> Void
    ) {
        pool.run(PQSegment(Self.planned(PQStatement(sql, params), plan))) { r in
            completion(r.map { $0[$0.count - 1] })
        }
    }

    /// How PostgreSQL plans a prepared statement: its own choice; always the generic plan; or the
    /// generic plan made without sequential scans (`byKey`).
    ///
    /// `byKey` is for a statement that finds a few rows of a small table by primary key: the planner
    /// prices a scan of a table of a few dozen cached pages below a dozen index probes and hashes the
    /// whole table instead (a release of a dozen locks read all 1,000 rows of `wharf.locks` in the
    /// locks benchmark, 0.3-0.5 ms per statement), and a plan cached while a table is small stays so.
    /// The lease and the statements that finish jobs use it too: a plan made from statistics taken
    /// while the table was smaller, or had no running job, read all of `wharf.jobs` for every batch.
    enum PlanChoice { case auto, generic, byKey }

    static let forceGenericPlan = "select set_config('plan_cache_mode', 'force_generic_plan', true)"
    static let forceKeyedPlan = forceGenericPlan + ", set_config('enable_seqscan', 'off', true)"

    /// `statement`, preceded for `.generic` and `.byKey` by the settings that plan it so. They hold to
    /// the end of the segment's transaction, so a segment puts such a statement last.
    static func planned(_ statement: PQStatement, _ plan: PlanChoice) -> [PQStatement] {
        switch plan {
        case .auto: [statement]
        case .generic: [PQStatement(forceGenericPlan), statement]
        case .byKey: [PQStatement(forceKeyedPlan), statement]
        }
    }
}

/// A statement the store runs, listed so a test can PREPARE every one against a migrated database.
public struct StoreQuery: Sendable {
    public let name: String
    public let sql: String
}
