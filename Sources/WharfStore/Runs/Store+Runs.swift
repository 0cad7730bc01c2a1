import WharfJSON
import WharfPQ

/// The next step of a run, as `jobs.complete {next}` asks for it (nil: the completed step's value).
public struct NextStep: Sendable {
    public var payload: JSON = .null
    public var queue: String?
    public var kind: String?
    /// Epoch milliseconds; nil means now.
    public var runAtMs: Int64?
    public var priority: Int64?
    public var maxAttempts: Int64?
    public var retry: JSON?
    public var timeoutMs: Int64?
    public init() {}
}

/// The outcome of a step's completion.
public enum StepOutcome: Sendable, Equatable {
    /// Step `step` of run `runID` completed and `nextJobID` is the next step's job.
    case continued(runID: Int64, step: Int64, nextJobID: Int64, queue: String = "")
    case refused(LeaseRefusal)
}

/// A job of `jobs.enqueue` or `jobs.enqueueBatch` with dependencies or in a batch.
public struct WorkflowJob: Sendable {
    public var spec: JobSpec
    /// Job ids (may be empty).
    public var dependsOn: [Int64] = []
    /// `cancel` or `run`.
    public var onDependencyFailure: String = "cancel"
    public init(spec: JobSpec) { self.spec = spec }
}

/// What a workflow enqueue made: the jobs in input order and the batch, if one was asked for.
public struct EnqueuedWorkflow: Sendable {
    /// Each job the call came to: made, found by its uniqueKey (`duplicate`), or a replay of its
    /// idempotencyKey (`replayed`).
    public var jobs: [EnqueuedJob]
    /// The batch the call made (of the jobs it made), or, when it made none, the batch of its first
    /// replayed job that has one; nil otherwise.
    public var batchID: Int64?
    /// Set when nothing was made because job `index` (0-based) depends on job `id`, which does not exist.
    public var missingDependency: (index: Int, id: Int64)?
    /// Set when nothing was made because webhook callback `callback` (`onFinish`...) names endpoint
    /// `id`, which does not exist.
    public var missingEndpoint: (callback: String, id: Int64)?
}

public struct RunRecord: Sendable {
    public var id: Int64
    public var state: String
    public var step: Int64
    public var currentJobID: Int64
    public var queue: String
    public var kind: String
    public var createdAtMs: Int64
    public var updatedAtMs: Int64
    public var finishedAtMs: Int64?
    /// Only in `runs.get`: each completed step's output, and the steps' jobs.
    public var outputs: JSON?
    public var steps: JSON?
}

public struct BatchRecord: Sendable {
    public var id: Int64
    public var total: Int64
    public var completed: Int64
    public var dead: Int64
    public var cancelled: Int64
    /// Job ids as strings.
    public var failedIDs: JSON
    public var callbacks: JSON
    /// What each callback made once the batch finished: `{onSuccess: jobId, ...}` for job callbacks,
    /// `{onFinish: {endpointId, deliveryId, skipped?}}` for webhook callbacks (`wharf.fire_batch_callbacks`).
    public var callbackJobs: JSON?
    public var createdAtMs: Int64
    public var finishedAtMs: Int64?
}

/// The outcome of `runs.cancel`.
public enum RunCancelOutcome: Sendable, Equatable {
    /// The run is cancelled, and with it its current step's job (nil when that job was already final).
    case cancelled(jobID: Int64?)
    /// The run had already ended, in `state`.
    case unchanged(state: String)
    case notFound
}

extension Store {
    /// Completes running steps and enqueues each one's next step, all in one statement and transaction;
    /// outcomes in item order. A repeat of a completion that committed (same token) answers the same.
    public func completeSteps(
        _ items: [(id: Int64, token: String, result: JSON?, next: NextStep)], retention: RetentionPolicy,
        _ completion: @escaping (Result<[StepOutcome], StoreError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.ints(items.map(\.id)), PGArray.text(items.map(\.token)),
            PGArray.text(items.map { $0.result?.text ?? "null" }), String(retention.completedMs),
            PGArray.text(items.map(\.next.queue)), PGArray.text(items.map(\.next.kind)),
            PGArray.text(items.map { $0.next.payload.text }), PGArray.ints(items.map(\.next.runAtMs)),
            PGArray.ints(items.map(\.next.priority)), PGArray.ints(items.map(\.next.maxAttempts)),
            PGArray.text(items.map { $0.next.retry?.text }), PGArray.ints(items.map(\.next.timeoutMs)),
        ]
        // Generic plans: PostgreSQL otherwise plans the statements inside `wharf.complete_steps` again at
        // every call (their custom plans look cheaper for one-row arrays), which cost more than the step.
        rows(RunSQL.completeSteps, params, plan: .generic, completion) { [self] r in
            var finished: [(queue: String, state: String, runMs: Int64)] = []
            defer { if !finished.isEmpty { jobsObserver?.jobsFinished(finished) } }
            return (0..<r.rowCount).map { row -> StepOutcome in
                guard let outcome = r.string(row, 1) else { return .refused(.notFound) }
                if outcome == "done", let run = r.int(row, 4), let step = r.int(row, 5), let next = r.int(row, 6) {
                    let queue = r.string(row, 7) ?? ""
                    finished.append((queue, "completed", r.int(row, 8) ?? 0))
                    return .continued(runID: run, step: step, nextJobID: next, queue: queue)
                }
                return .refused(Self.leaseRefusal(state: r.string(row, 2), tokenMatches: r.bool(row, 3) ?? false))
            }
        }
    }

    /// Enqueues jobs with dependencies and/or as a batch with `callbacks` (one statement: all or nothing).
    /// A statement aborted because two calls recorded the same new idempotency key at once, or because
    /// the job holding a uniqueKey changed while it ran, is run again (twice at most; it changed nothing).
    public func enqueueWorkflow(
        _ jobs: [WorkflowJob], batch callbacks: JSON?,
        _ completion: @escaping (Result<EnqueuedWorkflow, StoreError>) -> Void
    ) {
        let all = JobSQL.enqueueArrays(jobs.map(\.spec))
        // enqueueColumns: queue, kind, payload, priority, run_at_ms, max_attempts, retry, timeout_ms,
        // unique_key, lock_key, tags, meta, idempotency_key, ...
        var params = Array(all[0..<13])
        params.append(
            PGArray.text(
                jobs.map { j in
                    j.dependsOn.isEmpty ? nil : JSON.array(j.dependsOn.map { .string(String($0)) }).text
                }))
        params.append(PGArray.text(jobs.map(\.onDependencyFailure)))
        params.append(callbacks?.text)
        retryingWhenBusy({ [self] done in enqueueWorkflowStatement(params, done) }, then: completion)
    }

    private func enqueueWorkflowStatement(
        _ params: [String?], _ completion: @escaping (Result<EnqueuedWorkflow, StoreError>) -> Void
    ) {
        rows(RunSQL.enqueueWorkflow, params, plan: .generic, completion) { r in
            if r.rowCount == 1, r.string(0, 2) == "missing_dependency" {
                return EnqueuedWorkflow(
                    jobs: [], batchID: nil, missingDependency: (Int(r.int(0, 0) ?? 1) - 1, r.int(0, 1) ?? 0))
            }
            if r.rowCount == 1, r.string(0, 2) == "missing_endpoint" {
                let names = ["onSuccess", "onFailure", "onFinish"]
                let n = Int(r.int(0, 0) ?? 1) - 1
                return EnqueuedWorkflow(
                    jobs: [], batchID: nil,
                    missingEndpoint: (names.indices.contains(n) ? names[n] : "onFinish", r.int(0, 1) ?? 0))
            }
            var made: [EnqueuedJob] = []
            var batch: Int64?
            for row in 0..<r.rowCount {
                made.append(
                    EnqueuedJob(
                        id: r.int(row, 1) ?? 0, state: r.string(row, 2) ?? "", duplicate: !(r.bool(row, 3) ?? true),
                        replayed: r.bool(row, 4) ?? false))
                batch = r.int(row, 5)
            }
            return EnqueuedWorkflow(jobs: made, batchID: batch)
        }
    }

    public func cancelRun(
        id: Int64, retention: RetentionPolicy, _ completion: @escaping (Result<RunCancelOutcome, StoreError>) -> Void
    ) {
        rows(RunSQL.cancel, [String(id), String(retention.completedMs)], completion) { r in
            guard r.rowCount > 0 else { return .notFound }
            let previous = r.string(0, 0) ?? ""
            return previous == "running" ? .cancelled(jobID: r.int(0, 1)) : .unchanged(state: previous)
        }
    }

    private static func run(_ r: PQResult, _ row: Int) -> RunRecord {
        RunRecord(
            id: r.int(row, 0) ?? 0, state: r.string(row, 1) ?? "", step: r.int(row, 2) ?? 0,
            currentJobID: r.int(row, 3) ?? 0, queue: r.string(row, 4) ?? "", kind: r.string(row, 5) ?? "",
            createdAtMs: r.int(row, 6) ?? 0, updatedAtMs: r.int(row, 7) ?? 0, finishedAtMs: r.int(row, 8))
    }

    public func run(id: Int64, _ completion: @escaping (Result<RunRecord?, StoreError>) -> Void) {
        rows(RunSQL.get, [String(id)], completion) { r in
            guard r.rowCount > 0 else { return nil }
            var run = Self.run(r, 0)
            run.outputs = JobRow.parsed(r, 0, 9)
            run.steps = JobRow.parsed(r, 0, 10)
            return run
        }
    }

    public func listRuns(
        state: String?, beforeID: Int64?, limit: Int, _ completion: @escaping (Result<[RunRecord], StoreError>) -> Void
    ) {
        rows(RunSQL.list, [state, beforeID.map(String.init), String(limit)], completion) { r in
            (0..<r.rowCount).map { Self.run(r, $0) }
        }
    }

    public func batch(id: Int64, _ completion: @escaping (Result<BatchRecord?, StoreError>) -> Void) {
        rows(RunSQL.getBatch, [String(id)], completion) { r in
            guard r.rowCount > 0 else { return nil }
            return BatchRecord(
                id: r.int(0, 0) ?? 0, total: r.int(0, 1) ?? 0, completed: r.int(0, 2) ?? 0, dead: r.int(0, 3) ?? 0,
                cancelled: r.int(0, 4) ?? 0, failedIDs: JobRow.parsed(r, 0, 5) ?? .array([]),
                callbacks: JobRow.parsed(r, 0, 6) ?? .object([:]), callbackJobs: JobRow.parsed(r, 0, 7),
                createdAtMs: r.int(0, 8) ?? 0, finishedAtMs: r.int(0, 9))
        }
    }
}
