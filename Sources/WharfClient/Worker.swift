import Foundation
import WharfRPC

/// What a job handler can throw to steer the outcome.
public enum JobControl: Error, Sendable {
    /// Fail this attempt and retry after the given delay (instead of the backoff schedule).
    case retry(afterMs: Int)
    /// Fail for good: the job becomes dead without further attempts.
    case discard(reason: String)
}

/// Runs jobs leased from a Wharf server: a long-poll lease loop with a concurrency limit,
/// heartbeats at a third of the lease, complete on return and fail on throw.
///
/// `stop()` stops leasing; `run()` returns once the jobs in hand have finished.
public final class Worker: @unchecked Sendable {  // handlers and flags guarded by `lock`
    public typealias Handler = @Sendable (LeasedJob) async throws -> JSON?

    public let client: WharfClient
    public let queues: [String]
    public let concurrency: Int
    public let leaseMs: Int
    public let name: String
    private let lock = NSLock()
    private var handlers: [String: Handler] = [:]
    private var stopped = false
    private var running = 0

    public init(
        client: WharfClient, queues: [String], concurrency: Int = 10, leaseMs: Int = 30_000, name: String? = nil
    ) {
        self.client = client
        self.queues = queues
        self.concurrency = max(1, concurrency)
        self.leaseMs = leaseMs
        self.name = name ?? "swift-\(ProcessInfo.processInfo.hostName)-\(getpid())"
    }

    /// Registers the handler for jobs of `kind`.
    public func handle(_ kind: String, _ handler: @escaping Handler) {
        lock.withLock { handlers[kind] = handler }
    }

    public func stop() { lock.withLock { stopped = true } }

    private var isStopped: Bool { lock.withLock { stopped } }
    private var freeSlots: Int { lock.withLock { concurrency - running } }

    /// Leases and runs jobs until `stop()`.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            while !isStopped {
                let free = freeSlots
                if free == 0 {
                    await group.next()
                    continue
                }
                let jobs: [LeasedJob]
                do {
                    jobs = try await client.lease(
                        queues: queues, max: free, leaseMs: leaseMs, waitMs: 1_000, worker: name)
                } catch {
                    try? await Task.sleep(nanoseconds: 200_000_000)
                    continue
                }
                for job in jobs {
                    lock.withLock { running += 1 }
                    group.addTask { [self] in
                        await execute(job)
                        lock.withLock { running -= 1 }
                    }
                }
            }
            await group.waitForAll()
        }
    }

    private func execute(_ job: LeasedJob) async {
        guard let handler = lock.withLock({ handlers[job.kind] }) else {
            _ = try? await client.fail(job, error: "no handler for kind \(job.kind)", retryable: false)
            return
        }
        let beat = Task { [client, leaseMs] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(leaseMs / 3) * 1_000_000)
                if Task.isCancelled { return }
                do { try await client.heartbeat(job, extendMs: leaseMs) } catch let e as RPCError
                    where e.code == RPCError.Code.conflict
                {
                    return
                } catch {}
            }
        }
        defer { beat.cancel() }
        do {
            let result = try await handler(job)
            try? await client.complete(job, result: result)
        } catch JobControl.retry(let after) {
            _ = try? await client.fail(job, error: "retry requested", retryable: true, retryInMs: after)
        } catch JobControl.discard(let reason) {
            _ = try? await client.fail(job, error: reason, retryable: false)
        } catch {
            _ = try? await client.fail(job, error: String(describing: error))
        }
    }
}
