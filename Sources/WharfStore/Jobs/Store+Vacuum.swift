import WharfPQ

/// Dead row versions of `wharf.jobs` and the VACUUM that clears them (`JobsVacuum` in the server).
enum VacuumSQL {
    /// Dead row versions PostgreSQL counts in `wharf.jobs` (its statistics, which backends report at
    /// most about once a second while busy and up to 10 s late once idle).
    static let deadRows = "select pg_stat_get_dead_tuples('wharf.jobs'::regclass)"

    /// Index entries are removed even when few heap pages have dead rows (`INDEX_CLEANUP ON`: left to
    /// itself, VACUUM skips the indexes then, and the claim index keeps its dead entries); a replica or
    /// autovacuum already at it is skipped rather than waited for; the table's end is not truncated
    /// (that takes a lock every statement on the table would wait for).
    static let vacuum = "vacuum (skip_locked, index_cleanup on, truncate off) wharf.jobs"
}

extension Store {
    /// The dead row versions PostgreSQL counts in `wharf.jobs` (`VacuumSQL.deadRows`).
    public func deadJobRows(_ completion: @escaping (Result<Int64, StoreError>) -> Void) {
        rows(VacuumSQL.deadRows, [], completion) { $0.int(0, 0) ?? 0 }
    }

    /// Runs `VacuumSQL.vacuum` on a connection of its own, opened for it and closed after: a vacuum
    /// of a large table takes long enough that the statements queued behind it on a pipelined
    /// connection would wait for it. Returns the connection, so that a drain can close it early.
    @discardableResult
    public func vacuumJobs(_ completion: @escaping (Result<Void, StoreError>) -> Void) -> PQConnection {
        let c = pool.separateConnection()
        var finished = false
        func finish(_ r: Result<Void, StoreError>) {
            guard !finished else { return }
            finished = true
            c.close()
            completion(r)
        }
        c.onStateChange = { [unowned c] state in
            switch state {
            case .ready:
                c.simpleQuery(VacuumSQL.vacuum) { r in
                    finish(r.map { _ in () }.mapError { self.storeError($0) })
                }
            case .failed(let message):
                self.logger.warning("vacuum connection failed", metadata: ["error": "\(message)"])
                finish(.failure(.unavailable))
            case .closed:
                finish(.failure(.unavailable))
            default:
                break
            }
        }
        c.connect()
        return c
    }
}
