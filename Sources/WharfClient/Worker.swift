import Foundation
import WharfRPC

/// What a job handler can throw to steer the outcome.
public enum JobControl: Error, Sendable {
    /// Fail this attempt and retry after the given delay (instead of the backoff schedule).
    case retry(afterMs: Int)
    /// Fail for good: the job becomes dead without further attempts.
    case discard(reason: String)
}

/// Runs jobs leased from a Wharf server with a concurrency limit: heartbeats at a third of the lease,
/// complete on return and fail on throw.
///
/// Outcomes travel in batches: those of the jobs that finish while a batch is on its way go out
/// together as the next JSON-RPC batch (one write, one round trip), and while enough slots are free
/// the next `jobs.lease` rides in it. A lease asks for at most half the slots, so that while one
/// lease's jobs run, the next is already on its way. When no outcome is due, a lease goes out on its
/// own and long-polls.
///
/// `stop()` stops leasing; `run()` returns once the jobs in hand have finished and their outcomes
/// have been answered.
public final class Worker: @unchecked Sendable {  // mutable state guarded by `lock`
    public typealias Handler = @Sendable (LeasedJob) async throws -> JSON?

    public let client: WharfClient
    public let queues: [String]
    public let concurrency: Int
    public let leaseMs: Int
    public let name: String
    /// The most jobs one lease asks for: half the slots.
    private let lane: Int
    private let lock = NSLock()
    private var handlers: [String: Handler] = [:]
    private var stopped = false
    /// Jobs whose handler runs, or whose outcome has not been sent yet.
    private var running = 0
    /// Jobs asked for by the leases in flight, and those leases.
    private var requested = 0
    private var leases = 0
    /// Outcomes waiting for the next batch, and whether a batch is on its way.
    private var outbox: [(method: String, params: JSON)] = []
    private var sending = false
    /// Counters since the worker started.
    private var counts = Stats()
    private var finished: CheckedContinuation<Void, Never>?
    /// The jobs whose handler runs, by id, with when their lease was last extended (uptime ns).
    private var inHand: [String: (job: LeasedJob, extendedAt: UInt64)] = [:]

    /// What a worker has done: jobs leased, outcomes the server acknowledged, and batches sent.
    public struct Stats: Sendable, Equatable {
        public var leased = 0
        public var completed = 0
        public var failed = 0
        public var batches = 0
    }

    public init(
        client: WharfClient, queues: [String], concurrency: Int = 10, leaseMs: Int = 30_000, name: String? = nil
    ) {
        self.client = client
        self.queues = queues
        self.concurrency = max(1, concurrency)
        self.lane = max(1, min(1_000, (self.concurrency + 1) / 2))
        self.leaseMs = leaseMs
        self.name = name ?? "swift-\(ProcessInfo.processInfo.hostName)-\(getpid())"
    }

    /// Registers the handler for jobs of `kind`.
    public func handle(_ kind: String, _ handler: @escaping Handler) {
        lock.withLock { handlers[kind] = handler }
    }

    public func stop() {
        lock.withLock { stopped = true }
        pump()
    }

    public var stats: Stats { lock.withLock { counts } }

    /// Leases and runs jobs until `stop()`.
    public func run() async {
        let beats = Task { await heartbeats() }
        await withCheckedContinuation { continuation in
            lock.withLock { finished = continuation }
            pump()
        }
        beats.cancel()
    }

    /// Extends the lease of every job in hand a third of the lease after its last extension: the
    /// heartbeats that are due go out together, as one batch. A job whose heartbeat is refused (its
    /// lease was lost, or it was cancelled) is not extended again; its outcome will be refused too.
    private func heartbeats() async {
        let third = UInt64(leaseMs / 3) * 1_000_000
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: third / 4)
            let now = DispatchTime.now().uptimeNanoseconds
            let due: [LeasedJob] = lock.withLock {
                let jobs = inHand.values.filter { now - $0.extendedAt >= third }.map(\.job)
                for j in jobs { inHand[j.id]?.extendedAt = now }
                return jobs
            }
            if due.isEmpty { continue }
            let calls = due.map { j -> (method: String, params: JSON?) in
                (
                    "jobs.heartbeat",
                    ["id": .string(j.id), "leaseToken": .string(j.leaseToken), "extendMs": .from(leaseMs)]
                )
            }
            guard let outcomes = try? await client.callBatch(calls) else { continue }
            lock.withLock {
                for (job, outcome) in zip(due, outcomes) {
                    if case .failure(let e as RPCError) = outcome, e.code == RPCError.Code.conflict {
                        inHand[job.id] = nil
                    }
                }
            }
        }
    }

    // MARK: What goes out next

    /// A lease for free slots, when one may go out now (counted as in flight); `riding` is one that
    /// travels with outcomes.
    private func leaseLocked(riding: Bool) -> (method: String, params: JSON)? {
        let free = concurrency - running - requested
        guard !stopped, leases < 2, free > 0 else { return nil }
        // Alone, a lease goes out when none is in flight; with outcomes, when it fills a lane (or the
        // worker would otherwise be left with nothing to run).
        if riding ? (free < lane && running + requested > 0) : leases > 0 { return nil }
        let max = min(free, lane)
        leases += 1
        requested += max
        // A lease alone long-polls; one riding with outcomes must not hold their replies back.
        let params: JSON = [
            "queues": .array(queues.map(JSON.string)), "max": .from(max), "leaseMs": .from(leaseMs),
            "waitMs": .from(riding ? 0 : 1_000), "worker": .string(name),
        ]
        return ("jobs.lease", params)
    }

    /// Sends what is due: the outbox as one batch (with a lease riding in it when slots are free), or
    /// a lease on its own. Resumes `run()` once stopped with nothing left in hand.
    private func pump() {
        let (batch, outcomes, done): ([(method: String, params: JSON)], Bool, CheckedContinuation<Void, Never>?) =
            lock.withLock {
                if !sending && !outbox.isEmpty {
                    var calls = outbox
                    outbox = []
                    if let lease = leaseLocked(riding: true) { calls.append(lease) }
                    sending = true
                    counts.batches += 1
                    return (calls, true, nil)
                }
                if let lease = leaseLocked(riding: false) { return ([lease], false, nil) }
                if stopped && running == 0 && leases == 0 && !sending, let f = finished {
                    finished = nil
                    return ([], false, f)
                }
                return ([], false, nil)
            }
        done?.resume()
        guard !batch.isEmpty else { return }
        Task { await send(batch, outbox: outcomes) }
    }

    /// Sends one batch and takes in its replies; `outbox` says it carries outcomes.
    private func send(_ calls: [(method: String, params: JSON)], outbox: Bool) async {
        let outcomes: [Result<JSON, Error>]
        do {
            outcomes = try await client.callBatch(calls)
        } catch {
            outcomes = calls.map { _ in .failure(error) }
        }
        var leased: [LeasedJob] = []
        // A lease that failed, or that a draining server answered at once, is not repeated straight away.
        var pause = false
        lock.withLock {
            for (call, outcome) in zip(calls, outcomes) {
                switch call.method {
                case "jobs.lease":
                    leases -= 1
                    requested -= call.params["max"]?.intValue.map { Int($0) } ?? 0
                    guard case .success(let r) = outcome else {
                        pause = true
                        continue
                    }
                    leased += (r["jobs"]?.arrayValue ?? []).compactMap(LeasedJob.init)
                    if r["draining"]?.boolValue == true { pause = true }
                case "jobs.complete":
                    running -= 1
                    if case .success = outcome { counts.completed += 1 }
                default:
                    running -= 1
                    if case .success = outcome { counts.failed += 1 }
                }
            }
            if outbox { sending = false }
            running += leased.count
            counts.leased += leased.count
        }
        for job in leased { Task { await execute(job) } }
        if pause { try? await Task.sleep(nanoseconds: 200_000_000) }
        pump()
    }

    // MARK: Running one job

    private func execute(_ job: LeasedJob) async {
        guard let handler = lock.withLock({ handlers[job.kind] }) else {
            finish(job, "jobs.fail", ["error": .string("no handler for kind \(job.kind)"), "retryable": false])
            return
        }
        lock.withLock { inHand[job.id] = (job, DispatchTime.now().uptimeNanoseconds) }
        defer { _ = lock.withLock { inHand.removeValue(forKey: job.id) } }
        do {
            let result = try await handler(job)
            finish(job, "jobs.complete", result.map { ["result": $0] } ?? [:])
        } catch JobControl.retry(let after) {
            finish(job, "jobs.fail", ["error": "retry requested", "retryable": true, "retryInMs": .from(after)])
        } catch JobControl.discard(let reason) {
            finish(job, "jobs.fail", ["error": .string(reason), "retryable": false])
        } catch {
            finish(job, "jobs.fail", ["error": .string(String(describing: error))])
        }
    }

    /// Puts the job's outcome in the outbox; it leaves with the next batch.
    private func finish(_ job: LeasedJob, _ method: String, _ fields: JSONObject) {
        var params = fields
        params["id"] = .string(job.id)
        params["leaseToken"] = .string(job.leaseToken)
        lock.withLock { outbox.append((method, .object(params))) }
        pump()
    }
}
