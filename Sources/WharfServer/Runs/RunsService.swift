import WharfCore
import WharfRPC
import WharfStore

/// Workflows on one replica (Protocol/workflows.md): a step's completion with `next`, enqueues with
/// dependencies or as a batch, and the `runs.*` and `batches.*` methods. It keeps no state of its own:
/// runs, batches and dependencies live in the database, and the SQL of migrations v0020, v0022 and
/// v0023 moves them (`wharf.complete_steps` moves a run to its next step; the trigger that ends runs,
/// counts batches and fires their callbacks, and releases waiting jobs fires only for their jobs).
final class RunsService {
    let context: ServiceContext
    let jobs: JobsService
    var store: Store { context.store }
    /// The step completions of one loop turn share one statement; a bad value fails only its own call.
    private var stepBatcher: IsolatingBatcher<(id: Int64, token: String, result: JSON?, next: NextStep), StepOutcome>!

    /// Made once per server; `jobs.*` calls that take a workflow param come here (`jobs.workflows`).
    init(_ context: ServiceContext, jobs: JobsService) {
        self.context = context
        self.jobs = jobs
        stepBatcher = IsolatingBatcher(schedule: context.batchSchedule) { [unowned self] items, done in
            self.store.completeSteps(items, retention: self.jobs.retention) { done($0.mapError(\.rpcError)) }
        }
        jobs.workflows = self
    }

    /// The params of `jobs.enqueue` and of a `jobs.enqueueBatch` job that lead here.
    static let workflowFields: Set<String> = ["dependsOn", "onDependencyFailure"]

    /// Whether a `jobs.enqueue` call is a workflow enqueue (it names dependencies, even as null).
    static func isWorkflowJob(_ p: Params) -> Bool { workflowFields.contains { p.object[$0] != nil } }

    /// Whether a `jobs.enqueueBatch` call is a workflow enqueue (a batch, or a job with dependencies).
    static func isWorkflowBatch(_ p: Params) -> Bool {
        if p.object["batch"] != nil { return true }
        guard case .array(let items)? = p["jobs"] else { return false }
        return items.contains { item in
            guard case .object(let o) = item else { return false }
            return workflowFields.contains { o[$0] != nil }
        }
    }

    /// `jobs.complete {id, leaseToken, result?, next}`: the step's completion and the next step's
    /// enqueue in one transaction.
    func completeStep(_ call: Call) throws {
        let p = call.params
        try p.onlyKnown(["id", "leaseToken", "result", "next"])
        let id = try JobsService.jobID(p)
        let token = try p.string("leaseToken")
        guard let n = try p.optionalObject("next") else {
            throw RPCError.invalidParams(field: "next", "must be an object {payload, kind?, queue?, runAt?|delayMs?, ...}")
        }
        let next = try Self.parseNext(Params(object: n))
        stepBatcher.add((id, token, p["result"], next)) { [unowned self] r in
            jobs.untrack(id, session: call.session)
            if case .success(.continued(_, _, _, let queue)) = r {
                if let q = next.queue { jobs.wake(queue: q) }
                context.raiseStepCompleted(id, queue: queue)
            }
            call.finish(r.flatMap { RunReplies.stepCompleted(id, $0) })
        }
    }

    static func parseNext(_ p: Params) throws(RPCError) -> NextStep {
        do throws(RPCError) {
            try p.onlyKnown(["payload", "kind", "queue", "runAt", "delayMs", "priority", "maxAttempts", "retry", "timeoutMs"])
            var next = NextStep()
            next.payload = p["payload"] ?? .null
            next.kind = try p.optionalName("kind")
            next.queue = try p.optionalName("queue")
            if p.has("runAt") && p.has("delayMs") {
                throw RPCError.invalidParams(field: "delayMs", "cannot be combined with runAt")
            }
            if let runAt = try p.optionalString("runAt") {
                guard let ms = Timestamp.parse(runAt) else {
                    throw RPCError.invalidParams(field: "runAt", "must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z")
                }
                next.runAtMs = ms
            }
            if let delay = try p.optionalInt("delayMs", in: 0...315_360_000_000) {
                next.runAtMs = Timestamp.nowMs() + delay
            }
            next.priority = try p.optionalInt("priority", in: -1000...1000)
            next.maxAttempts = try p.optionalInt("maxAttempts", in: 1...1000)
            if let retry = try p.optionalObject("retry") { next.retry = try JobSpec.parseRetry(retry) }
            next.timeoutMs = try p.optionalInt("timeoutMs", in: 1...86_400_000)
            return next
        } catch {
            throw RPCError.invalidParams(
                field: "next." + (error.data?["field"]?.stringValue ?? ""), error.data?["detail"]?.stringValue ?? "")
        }
    }

    /// `jobs.enqueue {..., dependsOn, onDependencyFailure?}`.
    func enqueue(_ call: Call) throws {
        let job = try Self.parseJob(call.params.object, path: "")
        store.enqueueWorkflow([job], batch: nil) { [unowned self] r in
            if case .success(let made) = r, let first = made.jobs.first, !first.duplicate, !first.replayed,
                first.state == "available"
            {
                jobs.wake(queue: job.spec.queue)
            }
            let single = { (made: EnqueuedWorkflow) in
                RunReplies.enqueued(made, path: { _ in "" }, batch: false)
                    .map { $0["jobs"]?.arrayValue?.first ?? .null }
            }
            call.finish(r.mapError(\.rpcError).flatMap(single))
        }
    }

    /// `jobs.enqueueBatch {jobs, batch?}` with a batch or dependencies: one statement, all or nothing.
    func enqueueBatch(_ call: Call) throws {
        let p = call.params
        try p.onlyKnown(["jobs", "batch"])
        guard case .array(let items)? = p["jobs"] else {
            throw RPCError.invalidParams(field: "jobs", "must be an array of job objects")
        }
        if items.isEmpty { throw RPCError.invalidParams(field: "jobs", "must not be empty") }
        if items.count > 10_000 { throw RPCError.invalidParams(field: "jobs", "must have at most 10000 jobs") }
        var specs: [WorkflowJob] = []
        for (i, item) in items.enumerated() {
            guard case .object(let o) = item else { throw RPCError.invalidParams(field: "jobs[\(i)]", "must be an object") }
            specs.append(try Self.parseJob(o, path: "jobs[\(i)]."))
        }
        var callbacks: JSON?
        if p.object["batch"] != nil {
            guard let b = try p.optionalObject("batch") else {
                throw RPCError.invalidParams(field: "batch", "must be an object {onSuccess?, onFailure?, onFinish?}")
            }
            callbacks = try Self.parseCallbacks(Params(object: b))
        }
        store.enqueueWorkflow(specs, batch: callbacks) { [unowned self] r in
            if case .success(let made) = r {
                let woken = zip(specs, made.jobs).filter { _, job in
                    !job.duplicate && !job.replayed && job.state == "available"
                }
                for q in Set(woken.map { $0.0.spec.queue }) {
                    jobs.wake(queue: q)
                }
            }
            call.finish(
                r.mapError(\.rpcError).flatMap {
                    RunReplies.enqueued($0, path: { "jobs[\($0)]." }, batch: callbacks != nil)
                })
        }
    }

    /// A job object with `dependsOn`/`onDependencyFailure` (the rest as `jobs.enqueue` takes it).
    static func parseJob(_ object: JSONObject, path: String) throws(RPCError) -> WorkflowJob {
        var rest = object
        let deps = rest["dependsOn"]
        let policy = rest["onDependencyFailure"]
        rest["dependsOn"] = nil
        rest["onDependencyFailure"] = nil
        var job = WorkflowJob(spec: try JobSpec.parse(Params(object: rest), path: path))
        if let deps, deps != JSON.null {
            guard case .array(let list) = deps, list.count <= 100 else {
                throw RPCError.invalidParams(field: path + "dependsOn", "must be an array of at most 100 job ids")
            }
            for v in list {
                let id: Int64? = v.stringValue.flatMap { Int64($0) } ?? v.intValue
                guard let id, id > 0 else {
                    throw RPCError.invalidParams(field: path + "dependsOn", "must hold job ids (strings of digits)")
                }
                job.dependsOn.append(id)
            }
        }
        if let policy, policy != JSON.null {
            guard let s = policy.stringValue, s == "cancel" || s == "run" else {
                throw RPCError.invalidParams(field: path + "onDependencyFailure", "must be \"cancel\" or \"run\"")
            }
            job.onDependencyFailure = s
        }
        return job
    }

    /// `{onSuccess?, onFailure?, onFinish?}`, each a job template `{queue, kind, payload?, priority?,
    /// maxAttempts?}` or a webhook target `{webhook: {endpointId, event?, payload?}}`, validated here so
    /// that the callback (made inside the transaction that finishes the batch's last job) cannot be
    /// refused. Whether a webhook's endpoint exists is asked by the enqueue's statement.
    static func parseCallbacks(_ p: Params) throws(RPCError) -> JSON {
        try p.onlyKnown(["onSuccess", "onFailure", "onFinish"])
        var out = JSONObject()
        for key in ["onSuccess", "onFailure", "onFinish"] {
            guard let o = try p.optionalObject(key) else { continue }
            do throws(RPCError) {
                let t = Params(object: o)
                out[key] = try o["webhook"] != nil ? webhookCallback(t) : jobCallback(t)
            } catch {
                throw RPCError.invalidParams(
                    field: "batch.\(key)." + (error.data?["field"]?.stringValue ?? ""),
                    error.data?["detail"]?.stringValue ?? "")
            }
        }
        return .object(out)
    }

    private static func jobCallback(_ t: Params) throws(RPCError) -> JSON {
        try t.onlyKnown(["queue", "kind", "payload", "priority", "maxAttempts"])
        var template: JSONObject = ["queue": .string(try t.name("queue")), "kind": .string(try t.name("kind"))]
        if let v = t["payload"] { template["payload"] = v }
        if let v = try t.optionalInt("priority", in: -1000...1000) { template["priority"] = .int(v) }
        if let v = try t.optionalInt("maxAttempts", in: 1...1000) { template["maxAttempts"] = .int(v) }
        return .object(template)
    }

    /// `{webhook: {endpointId, event?, payload?}}`, stored with the endpoint id as a string.
    private static func webhookCallback(_ t: Params) throws(RPCError) -> JSON {
        try t.onlyKnown(["webhook"])
        guard let w = try t.optionalObject("webhook") else {
            throw RPCError.invalidParams(field: "webhook", "must be {endpointId, event?, payload?}")
        }
        let wp = Params(object: w)
        do throws(RPCError) {
            try wp.onlyKnown(["endpointId", "event", "payload"])
            var target: JSONObject = ["endpointId": .string(String(try wp.numericID("endpointId")))]
            if let event = try wp.optionalName("event", maxLength: 200) { target["event"] = .string(event) }
            if let v = wp["payload"] { target["payload"] = v }
            return ["webhook": .object(target)]
        } catch {
            throw RPCError.invalidParams(
                field: "webhook." + (error.data?["field"]?.stringValue ?? ""), error.data?["detail"]?.stringValue ?? "")
        }
    }
}
