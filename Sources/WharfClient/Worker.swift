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
/// An outcome that does not reach the server (the connection dropped, or the replica is draining or
/// cannot reach its database) is sent again after a pause, for as long as the job's lease could still
/// be held; it is not left for the lease to run out, which would run the job again. With a client of
/// several replicas (`WharfClient(addresses:)`) the worker moves to the next one when its replica
/// drains or cannot be reached.
///
/// `stop()` stops leasing; `run()` returns once the jobs in hand have finished and their outcomes
/// have been answered (or given up, a lease's length after they first failed).
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
    private var outbox: [Outcome] = []
    private var sending = false
    /// Counters since the worker started.
    private var counts = Stats()
    private var finished: CheckedContinuation<Void, Never>?
    /// The jobs whose handler runs, by id, with when their lease was last extended (uptime ns).
    private var inHand: [String: (job: LeasedJob, extendedAt: UInt64)] = [:]

    /// What a worker has done: jobs leased, outcomes the server acknowledged, batches sent, outcomes
    /// sent again after a transient failure, and moves to the client's next address.
    public struct Stats: Sendable, Equatable {
        public var leased = 0
        public var completed = 0
        public var failed = 0
        public var batches = 0
        public var resent = 0
        public var moves = 0
    }

    /// A job's outcome on its way: `jobs.complete` or `jobs.fail` with its params, and since when it has
    /// failed to reach the server (uptime ns), if it has.
    private struct Outcome {
        var method: String
        var params: JSON
        var failingSince: UInt64?
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
        let (outcomes, lease, done): ([Outcome], (method: String, params: JSON)?, CheckedContinuation<Void, Never>?) =
            lock.withLock {
                if !sending && !outbox.isEmpty {
                    let sent = outbox
                    outbox = []
                    sending = true
                    counts.batches += 1
                    return (sent, leaseLocked(riding: true), nil)
                }
                if let lease = leaseLocked(riding: false) { return ([], lease, nil) }
                if stopped && running == 0 && leases == 0 && !sending, let f = finished {
                    finished = nil
                    return ([], nil, f)
                }
                return ([], nil, nil)
            }
        done?.resume()
        guard !outcomes.isEmpty || lease != nil else { return }
        Task { await send(outcomes, lease: lease) }
    }

    /// A failure that may pass: the connection, or a replica that is draining or cannot reach its
    /// database (`data.retryable`).
    private static func isTransient(_ error: Error) -> Bool {
        if error is ClientError { return true }
        return (error as? RPCError)?.isRetryable ?? false
    }

    /// Sends one batch (the outcomes, then the lease) and takes in its replies.
    private func send(_ sent: [Outcome], lease: (method: String, params: JSON)?) async {
        var calls: [(method: String, params: JSON?)] = sent.map { ($0.method, $0.params) }
        if let lease { calls.append((lease.method, lease.params)) }
        let from = client.address
        let replies: [Result<JSON, Error>]
        do {
            replies = try await client.callBatch(calls)
        } catch {
            replies = calls.map { _ in .failure(error) }
        }
        var leased: [LeasedJob] = []
        // A lease that failed, or that a draining server answered at once, is not repeated straight
        // away; nor is an outcome that has to be sent again.
        var pause = false
        var move = false
        let now = DispatchTime.now().uptimeNanoseconds
        let patience = UInt64(leaseMs) * 1_000_000
        lock.withLock {
            var again: [Outcome] = []
            for (outcome, reply) in zip(sent, replies) {
                if case .failure(let error) = reply, Self.isTransient(error) {
                    move = true
                    var o = outcome
                    let since = o.failingSince ?? now
                    o.failingSince = since
                    if now - since < patience {
                        again.append(o)
                        continue
                    }
                }
                running -= 1
                guard case .success = reply else { continue }
                if outcome.method == "jobs.complete" { counts.completed += 1 } else { counts.failed += 1 }
            }
            if !again.isEmpty {
                pause = true
                counts.resent += again.count
                outbox = again + outbox
            }
            if let lease {
                leases -= 1
                requested -= lease.params["max"]?.intValue.map { Int($0) } ?? 0
                switch replies[replies.count - 1] {
                case .success(let r):
                    leased += (r["jobs"]?.arrayValue ?? []).compactMap(LeasedJob.init)
                    if r["draining"]?.boolValue == true { (pause, move) = (true, true) }
                case .failure(let error):
                    pause = true
                    if error is ClientError { move = true }
                }
            }
            if !sent.isEmpty { sending = false }
            running += leased.count
            counts.leased += leased.count
        }
        for job in leased { Task { await execute(job) } }
        if move, client.moveOn(from: from) { lock.withLock { counts.moves += 1 } }
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
        lock.withLock { outbox.append(Outcome(method: method, params: .object(params))) }
        pump()
    }
}
