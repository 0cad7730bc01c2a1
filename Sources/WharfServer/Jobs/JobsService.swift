import Logging
import WharfRPC
import WharfStore
import WharfUV

/// The jobs family's moving parts on one replica: write batchers, long-poll lease waiters, the
/// jobs each session holds (released at once when its connection drops), and the background chores
/// (lease reaper, retention pruning). Loop thread only.
final class JobsService {
    let context: ServiceContext
    /// Where `jobs.enqueue {webhook}` sends.
    let webhooks: WebhooksService
    /// Runs, batches and dependencies (`Runs/RunsService`, which sets itself here).
    weak var workflows: RunsService?
    var store: Store { context.store }
    var retryDefaults: RetryPolicy { context.config.retry }
    /// How long finished jobs are kept when their queue sets no retention.
    var retention: RetentionPolicy { context.config.retention }
    /// Bytes of jobs one lease reply may carry (past the first job).
    var maxReplyBytes: Int { context.config.limits.maxReplyBytes }
    /// Rows one pruning statement deletes: small enough that a batch is a short statement holding few
    /// row locks, large enough that back-to-back batches delete tens of thousands of rows a second.
    static let pruneBatch = 2_000

    /// Single enqueues, completions and failures of one loop turn share one statement each; each call
    /// gets its own outcome, and a bad value fails only its own call (`IsolatingBatcher`).
    private var enqueueBatcher: IsolatingBatcher<JobSpec, Result<EnqueuedJob, RPCError>>!
    private(set) var completeBatcher: IsolatingBatcher<(id: Int64, token: String, result: JSON?), FinishOutcome>!
    private(set) var failBatcher:
        IsolatingBatcher<(id: Int64, token: String, error: JSON, retryable: Bool, retryInMs: Int64?), FinishOutcome>!

    private var waiters: [LeaseWaiter] = []
    private var wokenQueues: [String: Int] = [:]
    private var wakeGeneration = 0
    /// The waiter whose lease statement is in flight, if any.
    private var pumpingFor: LeaseWaiter?
    /// Jobs leased through each open session: session id → job id → lease token.
    private var held: [String: [Int64: String]] = [:]
    /// Keeps dead entries from piling up at the head of the claim index.
    private let vacuum: JobsVacuum

    init(_ context: ServiceContext, webhooks: WebhooksService) {
        self.context = context
        self.webhooks = webhooks
        vacuum = JobsVacuum(context, threshold: context.config.vacuumJobsAfterDeadRows)
        let schedule = context.batchSchedule
        enqueueBatcher = IsolatingBatcher(schedule: schedule) { [unowned self] specs, done in
            self.insert(specs) { result in done(result.mapError(\.rpcError).map { $0.map(JobReplies.enqueueOutcome) }) }
        }
        completeBatcher = IsolatingBatcher(schedule: schedule) { [unowned self] items, done in
            self.store.complete(items, retention: self.retention) { r in
                if case .success(let outcomes) = r { self.context.raiseFinished(items.map(\.id), outcomes) }
                done(r.mapError(\.rpcError))
            }
        }
        failBatcher = IsolatingBatcher(schedule: schedule) { [unowned self] items, done in
            self.store.fail(items, defaults: self.retryDefaults, retention: self.retention) { r in
                if case .success(let outcomes) = r { self.context.raiseFinished(items.map(\.id), outcomes) }
                done(r.mapError(\.rpcError))
            }
        }
    }

    /// Enqueues one job, in the statement this loop turn's enqueues share: how other features (cron's
    /// `cron.trigger`) make a job.
    func enqueue(_ spec: JobSpec, _ done: @escaping (Result<EnqueuedJob, RPCError>) -> Void) {
        enqueueBatcher.add(spec) { done($0.flatMap { $0 }) }
    }

    /// Inserts `specs` in one statement and wakes the waiters of the queues that got jobs. The first
    /// worker waiting on one of those queues takes its lease in the enqueue's own transaction, so a new
    /// job reaches it one commit sooner (Protocol/jobs.md, "Throughput").
    func insert(_ specs: [JobSpec], _ done: @escaping (Result<EnqueueOutcomes, StoreError>) -> Void) {
        let waiter = handoffWaiter(for: specs)
        if let waiter { pumpingFor = waiter }
        store.enqueue(specs, handingTo: waiter?.request) { [unowned self] result, leased in
            if let waiter {
                self.pumpingFor = nil
                self.leaseTaken(leased ?? [], for: waiter)
            }
            if case .success(let outcomes) = result {
                var queues = Set<String>()
                for (spec, o) in zip(specs, outcomes) {
                    if case .success(let o) = o, !o.duplicate, !o.replayed { queues.insert(spec.queue) }
                }
                for q in queues { self.wake(queue: q) }
            }
            // Wakes that came while the handover ran wait for this.
            if waiter != nil { self.pump() }
            done(result)
        }
    }

    /// The first waiting worker that wants one of the queues of `specs` that run now, unless a lease
    /// for a waiter is in flight already (waiters are served one lease at a time, in arrival order).
    private func handoffWaiter(for specs: [JobSpec]) -> LeaseWaiter? {
        guard pumpingFor == nil, !waiters.isEmpty, !context.draining else { return nil }
        let queues = Set(specs.lazy.filter { $0.runAtMs == nil }.map(\.queue))
        return waiters.first { w in w.call.session.isOpen && w.queues.contains(where: queues.contains) }
    }

    func start() {
        context.onWake(.jobs) { [unowned self] queue in self.wake(queue: queue) }
        context.addChore(everyMs: 1_000) { [unowned self] in self.reapExpiredLeases() }
        context.addChore(everyMs: 500) { [unowned self] in
            // Scheduled and retryable jobs become due without any enqueue; waiters re-check.
            if !self.waiters.isEmpty { for w in self.waiters { for q in w.queues { self.wake(queue: q) } } }
        }
        context.addChore(everyMs: 1_000) { [unowned self] in self.prune() }
        context.addChore(everyMs: 60_000) { [unowned self] in self.pruneIdempotencyKeys() }
        vacuum.start()
    }

    // MARK: Held jobs

    func track(_ jobs: [JobRecord], session: Session) {
        guard !jobs.isEmpty else { return }
        watch(session)
        // Taken out and put back: the session's id is hashed twice per lease, not once per job.
        var mine = held.removeValue(forKey: session.id) ?? [:]
        for j in jobs {
            if let token = j.leaseToken { mine[j.id] = token }
        }
        held[session.id] = mine
    }

    /// The (id, lease token) of leased jobs, to give them back.
    private static func leases(_ jobs: [JobRecord]) -> [(id: Int64, token: String)] {
        jobs.compactMap { j in j.leaseToken.map { (j.id, $0) } }
    }

    /// Makes sure this service hears when `session` closes: it then releases the session's jobs and
    /// drops its long polls, so a job is never leased to a connection that is gone.
    private func watch(_ session: Session) {
        guard held[session.id] == nil else { return }
        held[session.id] = [:]
        session.onClose("jobs") { [unowned self, unowned session] in self.sessionClosed(session) }
    }

    func untrack(_ id: Int64, session: Session) { held[session.id]?[id] = nil }

    private func sessionClosed(_ session: Session) {
        waiters.removeAll { w in
            guard w.call.session === session else { return false }
            w.timer?.close()
            return true
        }
        guard let jobs = held.removeValue(forKey: session.id), !jobs.isEmpty else { return }
        // Draining: the worker keeps its jobs and reports them through another replica with the same
        // lease tokens; a worker that never comes back loses them when their leases expire.
        guard !context.draining else { return }
        release(jobs.map { ($0.key, $0.value) }, reason: "worker_lost")
    }

    private func release(_ jobs: [(id: Int64, token: String)], reason: String) {
        store.releaseJobs(held: jobs, reason: reason, retention: retention) { [unowned self] result in
            switch result {
            case .success(let moved):
                if !moved.isEmpty {
                    self.context.logger.info("released jobs of a lost worker", metadata: ["count": "\(moved.count)"])
                }
                self.context.raiseReleased(moved, reason: reason)
                for m in moved where m.state == "available" { self.wake(queue: m.queue) }
            case .failure(let e):
                // The lease reaper returns them when their leases expire.
                self.context.logger.warning("releasing jobs failed", metadata: ["error": "\(e)"])
            }
        }
    }

    // MARK: Leasing and long polls

    final class LeaseWaiter {
        let call: Call
        /// What its lease asks for, whichever statement takes it.
        let request: LeaseRequest
        var queues: [String] { request.queues }
        var timer: LoopTimer?
        init(call: Call, request: LeaseRequest) {
            self.call = call
            self.request = request
        }
    }

    func lease(call: Call, queues: [String], max: Int, leaseMs: Int64, waitMs: Int64, worker: String) {
        // A draining replica hands out no more work (`Server.dispatch` refuses new calls; this covers a
        // lease read in the same turn the drain began).
        if context.draining { return call.reply(JobReplies.noJobs(draining: true)) }
        let waiter = LeaseWaiter(
            call: call,
            request: LeaseRequest(queues: queues, max: max, leaseMs: leaseMs, worker: worker, maxBytes: maxReplyBytes))
        // Someone already waits on these queues: join the line rather than overtaking it.
        if waitMs > 0 && waiters.contains(where: { !Set($0.queues).isDisjoint(with: queues) }) {
            return wait(waiter, waitMs: waitMs)
        }
        store.lease(waiter.request, durable: context.config.durableLeases) { [unowned self] result in
            switch result {
            case .success(let jobs) where !jobs.isEmpty || waitMs == 0:
                self.deliver(jobs, to: waiter)
            case .success:
                self.wait(waiter, waitMs: waitMs)
            case .failure(let e):
                call.fail(e.rpcError)
            }
        }
    }

    private func wait(_ waiter: LeaseWaiter, waitMs: Int64) {
        guard waiter.call.session.isOpen, !context.draining else {
            return waiter.call.reply(JobReplies.noJobs(draining: context.draining))
        }
        watch(waiter.call.session)
        waiters.append(waiter)
        let t = try? LoopTimer(loop: context.loop)
        waiter.timer = t
        // The closure holds the waiter until the timer fires or is closed (which drops the closure).
        t?.start(timeoutMs: UInt64(waitMs)) { [unowned self, waiter] in
            waiter.timer?.close()
            waiter.timer = nil
            self.waiters.removeAll { $0 === waiter }
            // A lease taken for this waiter is in flight: its outcome answers the call, a little after
            // waitMs, rather than leased jobs going back as worker_lost with an attempt spent.
            if self.pumpingFor === waiter { return }
            if waiter.call.isPending { waiter.call.reply(JobReplies.noJobs(draining: self.context.draining)) }
        }
    }

    private func deliver(_ jobs: [JobRecord], to waiter: LeaseWaiter) {
        guard waiter.call.session.isOpen else {
            // The worker left while its lease was being taken: give the jobs straight back.
            let pairs = Self.leases(jobs)
            if !pairs.isEmpty { release(pairs, reason: "worker_lost") }
            if waiter.call.isPending { waiter.call.reply(JobReplies.noJobs(draining: context.draining)) }
            return
        }
        track(jobs, session: waiter.call.session)
        waiter.call.reply(JobReplies.leased(jobs, draining: context.draining))
    }

    /// Notes that `queue` may have runnable jobs and serves waiters in arrival order.
    func wake(queue: String) {
        guard waiters.contains(where: { $0.queues.contains(queue) }) else { return }
        wakeGeneration += 1
        wokenQueues[queue] = wakeGeneration
        pump()
    }

    /// The server began draining: every long poll is answered now, empty and `draining: true`, so its
    /// worker leases from another replica. A poll whose lease statement is in flight gets that
    /// statement's jobs (they are leased already), with `draining: true` too.
    func drain() {
        vacuum.drain()
        let waiting = waiters
        waiters.removeAll()
        for w in waiting {
            w.timer?.close()
            w.timer = nil
            if w !== pumpingFor, w.call.isPending { w.call.reply(JobReplies.noJobs(draining: true)) }
        }
    }

    private func pump() {
        guard pumpingFor == nil else { return }
        guard let waiter = waiters.first(where: { w in w.queues.contains { wokenQueues[$0] != nil } }) else { return }
        pumpingFor = waiter
        let generation = wakeGeneration
        store.lease(waiter.request, durable: context.config.durableLeases) { [unowned self] result in
            self.pumpingFor = nil
            switch result {
            case .success(let jobs) where jobs.isEmpty:
                // Nothing runnable in these queues unless a wake arrived while we asked.
                for q in waiter.queues where (self.wokenQueues[q] ?? 0) <= generation { self.wokenQueues[q] = nil }
            case .failure:
                for q in waiter.queues { self.wokenQueues[q] = nil }
            case .success:
                break
            }
            self.leaseTaken((try? result.get()) ?? [], for: waiter)
            self.pump()
        }
    }

    /// A lease taken for `waiter` came back with `jobs` (maybe none): they answer its call, or go back
    /// if the call was answered meanwhile. A waiter whose wait ended while the statement ran (its timer
    /// left the call to this reply) is answered now, empty; one whose wait goes on keeps waiting.
    private func leaseTaken(_ jobs: [JobRecord], for waiter: LeaseWaiter) {
        let expired = !waiters.contains { $0 === waiter }
        if !jobs.isEmpty {
            waiters.removeAll { $0 === waiter }
            waiter.timer?.close()
            waiter.timer = nil
            if waiter.call.isPending {
                deliver(jobs, to: waiter)
            } else {
                // Answered some other way meanwhile; nobody wants these now.
                release(Self.leases(jobs), reason: "worker_lost")
            }
        }
        if expired, waiter.call.isPending { waiter.call.reply(JobReplies.noJobs(draining: context.draining)) }
    }

    // MARK: Chores

    private var reaping = false

    private func reapExpiredLeases() {
        guard !reaping, context.pool.isAvailable else { return }
        reaping = true
        store.releaseJobs(held: nil, reason: "lease_expired", retention: retention) { [unowned self] result in
            self.reaping = false
            if case .success(let moved) = result {
                if !moved.isEmpty {
                    self.context.logger.info("returned jobs with expired leases", metadata: ["count": "\(moved.count)"])
                }
                self.context.raiseReleased(moved, reason: "lease_expired")
                for m in moved where m.state == "available" { self.wake(queue: m.queue) }
            }
        }
    }

    private var pruning = false

    /// Deletes finished jobs past retention, batch after batch until a batch comes back short (caught
    /// up). Each batch is one short statement; only one runs at a time on this replica, and replicas
    /// skip each other's rows. Runs every second, so a backlog never builds beyond a second's worth.
    private func prune() {
        guard !pruning, context.pool.isAvailable else { return }
        pruning = true
        pruneBatch(deletedSoFar: 0)
    }

    private func pruneBatch(deletedSoFar: Int) {
        store.pruneJobs(retention: retention, batch: Self.pruneBatch) { [unowned self] r in
            switch r {
            case .success(let n) where n >= Self.pruneBatch && !self.context.draining:
                self.pruneBatch(deletedSoFar: deletedSoFar + n)
            case .success(let n):
                self.pruning = false
                if deletedSoFar + n > 0 {
                    self.context.logger.debug("pruned finished jobs", metadata: ["count": "\(deletedSoFar + n)"])
                }
            case .failure(let e):
                self.pruning = false
                self.context.logger.warning("pruning finished jobs failed", metadata: ["error": "\(e)"])
            }
        }
    }

    /// Forgets enqueue idempotency keys past their retention (Protocol/jobs.md).
    private func pruneIdempotencyKeys() {
        guard context.pool.isAvailable else { return }
        store.pruneIdempotencyKeys(olderThanMs: Store.idempotencyRetentionMs) { [unowned self] r in
            if case .success(let n) = r, n > 0 {
                self.context.logger.info("pruned idempotency keys", metadata: ["count": "\(n)"])
            }
        }
    }
}
