import WharfRPC
import WharfStore

/// Every reply and refusal of runs, batches and workflow enqueues.
enum RunReplies {
    /// `jobs.complete {next}`: `{id, state: "completed", runId, step, nextJobId}`.
    static func stepCompleted(_ id: Int64, _ outcome: StepOutcome) -> Result<JSON, RPCError> {
        switch outcome {
        case .refused(let refusal):
            return .failure(JobReplies.error(refusal, id: id))
        case .continued(let run, let step, let next, _):
            return .success([
                "id": .string(String(id)), "state": "completed", "runId": .string(String(run)), "step": .int(step),
                "nextJobId": .string(String(next)),
            ])
        }
    }

    /// `jobs.enqueueBatch` with a batch or dependencies: `{jobs, batchId?}` (`batchId` when a batch was
    /// asked for, null when the call made no job and replayed none of a batch); `path` names job `i` in
    /// an error (`jobs[i].`, or nothing for `jobs.enqueue`).
    static func enqueued(_ made: EnqueuedWorkflow, path: (Int) -> String, batch: Bool) -> Result<JSON, RPCError> {
        if let (index, id) = made.missingDependency {
            return .failure(.invalidParams(field: path(index) + "dependsOn", "job \(id) not found"))
        }
        if let (callback, id) = made.missingEndpoint {
            return .failure(
                .invalidParams(field: "batch.\(callback).webhook.endpointId", "webhook endpoint \(id) not found"))
        }
        var o: JSONObject = ["jobs": .array(made.jobs.map(JobReplies.enqueued))]
        if batch { o["batchId"] = made.batchID.map { .string(String($0)) } ?? .null }
        return .success(.object(o))
    }

    static func run(_ r: RunRecord) -> JSON {
        var o: JSONObject = [
            "id": .string(String(r.id)), "state": .string(r.state), "step": .int(r.step),
            "currentJobId": .string(String(r.currentJobID)), "queue": .string(r.queue), "kind": .string(r.kind),
            "createdAt": .time(epochMs: r.createdAtMs), "updatedAt": .time(epochMs: r.updatedAtMs),
            "finishedAt": .time(epochMs: r.finishedAtMs),
        ]
        if let outputs = r.outputs { o["outputs"] = outputs }
        if let steps = r.steps { o["steps"] = steps }
        return .object(o)
    }

    static func get(_ id: Int64, _ record: RunRecord?) -> Result<JSON, RPCError> {
        guard let record else { return .failure(.notFound("run", id: String(id))) }
        return .success(run(record))
    }

    /// `runs.list`: `{runs, nextCursor}` (null on the last page).
    static func page(_ runs: [RunRecord], limit: Int) -> JSON {
        let next: JSON = runs.count == limit ? .string(String(runs.last!.id)) : .null
        return ["runs": .array(runs.map(run)), "nextCursor": next]
    }

    static func cancel(_ id: Int64, _ outcome: RunCancelOutcome) -> Result<JSON, RPCError> {
        switch outcome {
        case .cancelled(let job):
            return .success([
                "id": .string(String(id)), "state": "cancelled", "cancelled": true,
                "cancelledJobId": job.map { .string(String($0)) } ?? .null,
            ])
        case .unchanged(let state):
            return .success(["id": .string(String(id)), "state": .string(state), "cancelled": false])
        case .notFound:
            return .failure(.notFound("run", id: String(id)))
        }
    }

    static func batch(_ id: Int64, _ record: BatchRecord?) -> Result<JSON, RPCError> {
        guard let b = record else { return .failure(.notFound("batch", id: String(id))) }
        let finished = b.completed + b.dead + b.cancelled
        return .success([
            "id": .string(String(b.id)), "state": b.finishedAtMs == nil ? "running" : "finished",
            "total": .int(b.total), "completed": .int(b.completed), "dead": .int(b.dead),
            "cancelled": .int(b.cancelled), "pending": .int(b.total - finished), "failedIds": b.failedIDs,
            "callbacks": b.callbacks, "callbackJobs": callbackJobs(b.callbackJobs),
            "callbackDeliveries": callbackDeliveries(b.callbackJobs),
            "createdAt": .time(epochMs: b.createdAtMs), "finishedAt": .time(epochMs: b.finishedAtMs),
        ])
    }

    /// `{onSuccess: jobId, ...}`: what the job callbacks made (null until the batch finished).
    static func callbackJobs(_ made: JSON?) -> JSON {
        guard case .object(let o)? = made else { return .null }
        return .object(JSONObject(o.pairs.filter { $0.value.stringValue != nil }))
    }

    /// `{onFinish: {endpointId, deliveryId, skipped?}, ...}`: what the webhook callbacks made (null until
    /// the batch finished).
    static func callbackDeliveries(_ made: JSON?) -> JSON {
        guard case .object(let o)? = made else { return .null }
        return .object(JSONObject(o.pairs.filter { $0.value.stringValue == nil }))
    }
}
