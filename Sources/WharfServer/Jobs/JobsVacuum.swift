import WharfPQ
import WharfStore
import WharfUV

/// Vacuums `wharf.jobs` once PostgreSQL counts `threshold` dead row versions in it.
///
/// Every lease and every completion leaves a dead version of the job's row, and the claim index keeps
/// an entry for each leased job until VACUUM removes it. A lease scans its queue in claim order from the
/// start, so it steps over the entries of every job leased since the last vacuum, page by page: the
/// claim scan read 52 index pages (0.26 ms) early in a 200,000-job drain and 1,577 (3.1 ms) near its end
/// (BENCHMARKS.md, "Dead entries at the head of a queue"). Autovacuum comes when dead rows reach a fifth
/// of the table, which for a table that keeps a day of finished jobs is hours of work apart. So each
/// replica checks the count every second and vacuums when it passes `threshold`: on a connection of its
/// own (a long vacuum holds up no pipelined statement), skipping when another replica or autovacuum is
/// at it, and for at most a twentieth of the time (it waits 19 times as long as the last vacuum took,
/// and at least a second): a vacuum reads every index of the table whole, 87-178 ms for a table of
/// 600,000 rows. Loop thread only.
final class JobsVacuum {
    let context: ServiceContext
    /// Dead row versions that start a vacuum (`--vacuum-jobs-after`; 0: never).
    let threshold: Int64
    private var busy = false
    /// The loop's clock (ms) before which no vacuum starts.
    private var notBeforeMs: UInt64 = 0
    /// The vacuum's connection while one runs (kept until the next, so that it is not freed from its
    /// own callback); closed when the server drains.
    private var connection: PQConnection?
    static let minimumGapMs: UInt64 = 1_000
    static let retryAfterFailureMs: UInt64 = 60_000

    init(_ context: ServiceContext, threshold: Int64) {
        self.context = context
        self.threshold = threshold
    }

    func start() {
        guard threshold > 0 else { return }
        context.addChore(everyMs: 1_000) { [unowned self] in self.check() }
    }

    func drain() { connection?.close() }

    private func check() {
        let loop = context.loop
        guard !busy, !context.draining, context.pool.isAvailable, loop.nowMs >= notBeforeMs else { return }
        busy = true
        context.store.deadJobRows { [unowned self] r in
            guard case .success(let dead) = r else {
                self.busy = false
                return
            }
            self.context.metrics.jobs.deadRows.set(dead)
            guard dead >= self.threshold, !self.context.draining else {
                self.busy = false
                return
            }
            let started = loop.nowMs
            self.connection = self.context.store.vacuumJobs { [unowned self] r in
                self.busy = false
                let tookMs = loop.nowMs - started
                self.notBeforeMs = loop.nowMs + max(Self.minimumGapMs, 19 * tookMs)
                switch r {
                case .success:
                    self.context.metrics.jobs.vacuums.increment()
                    self.context.logger.debug(
                        "vacuumed wharf.jobs", metadata: ["deadRows": "\(dead)", "ms": "\(tookMs)"])
                case .failure(let e):
                    // Not again for a minute (a database out of connections would log this every second).
                    self.notBeforeMs = loop.nowMs + Self.retryAfterFailureMs
                    if !self.context.draining {
                        self.context.logger.warning("vacuuming wharf.jobs failed", metadata: ["error": "\(e)"])
                    }
                }
            }
        }
    }
}
