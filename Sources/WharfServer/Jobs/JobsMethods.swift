import WharfCore
import WharfRPC
import WharfStore

extension JobsService {
    func register(in methods: MethodTable) {

        methods.register("jobs.enqueue") { [unowned self] call in
            if call.params.has("webhook") { return try enqueueWebhook(call) }
            if RunsService.isWorkflowJob(call.params) { return try workflows!.enqueue(call) }
            self.enqueue(try JobSpec.parse(call.params)) { result in call.finish(result.map(JobReplies.enqueued)) }
        }

        methods.register("jobs.enqueueBatch") { [unowned self] call in
            if RunsService.isWorkflowBatch(call.params) { return try workflows!.enqueueBatch(call) }
            try call.params.onlyKnown(["jobs"])
            guard case .array(let items)? = call.params["jobs"] else {
                throw RPCError.invalidParams(field: "jobs", "must be an array of job objects")
            }
            if items.isEmpty { throw RPCError.invalidParams(field: "jobs", "must not be empty") }
            if items.count > 10_000 { throw RPCError.invalidParams(field: "jobs", "must have at most 10000 jobs") }
            var specs: [JobSpec] = []
            for (i, item) in items.enumerated() {
                guard case .object(let o) = item else {
                    throw RPCError.invalidParams(field: "jobs[\(i)]", "must be an object")
                }
                specs.append(try JobSpec.parse(Params(object: o), path: "jobs[\(i)]."))
            }
            // Its own statement: all or nothing, never mixed with other clients' enqueues.
            self.insert(specs) { result in
                // All or nothing: the statement's outcome is one for the whole call.
                let outcomes = result.mapError(\.rpcError).flatMap(JobReplies.enqueuedBatch)
                call.finish(outcomes.map { ["jobs": .array($0.map(JobReplies.enqueued))] })
            }
        }

        methods.register("jobs.lease") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["queues", "max", "leaseMs", "waitMs", "worker"])
            guard let queues = try p.stringArray("queues", maxCount: 100), !queues.isEmpty else {
                throw RPCError.invalidParams(field: "queues", "must be a non-empty array of queue names")
            }
            let max = try p.optionalInt("max", in: 1...1000) ?? 1
            let leaseMs = try p.optionalInt("leaseMs", in: 1000...86_400_000) ?? 30_000
            let waitMs = try p.optionalInt("waitMs", in: 0...300_000) ?? 0
            let worker = try p.name("worker")
            self.lease(call: call, queues: queues, max: Int(max), leaseMs: leaseMs, waitMs: waitMs, worker: worker)
        }

        methods.register("jobs.heartbeat") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["id", "leaseToken", "extendMs", "progress"])
            let id = try Self.jobID(p)
            let token = try p.string("leaseToken")
            let extend = try p.optionalInt("extendMs", in: 1000...86_400_000) ?? 30_000
            store.heartbeat(id: id, token: token, extendMs: extend, progress: p["progress"]) { result in
                let reply = result.mapError(\.rpcError).flatMap { JobReplies.heartbeat(id, $0) }
                if case .failure = reply { self.untrack(id, session: call.session) }
                call.finish(reply)
            }
        }

        methods.register("jobs.complete") { [unowned self] call in
            if call.params.object["next"] != nil { return try workflows!.completeStep(call) }
            let p = call.params
            try p.onlyKnown(["id", "leaseToken", "result", "schedulePatch"])
            let id = try Self.jobID(p)
            let token = try p.string("leaseToken")
            if let patch = try p.optionalObject("schedulePatch") {
                // Not batched: the completion and the template change commit together or not at all.
                let pp = Params(object: patch)
                try pp.onlyKnown(["name", "payload"])
                let schedule = try pp.name("name")
                guard case .object? = pp["payload"] else {
                    throw RPCError.invalidParams(field: "schedulePatch.payload", "must be an object to merge")
                }
                store.complete(
                    id: id, token: token, result: p["result"], schedulePatch: schedule, payload: pp["payload"]!
                ) {
                    r in
                    self.untrack(id, session: call.session)
                    if case .success(let done) = r { self.context.raiseFinished([id], [done.0]) }
                    call.finish(
                        JobReplies.finished(id, r.mapError(\.rpcError).map(\.0)).map { reply in
                            guard case .object(var o) = reply, case .success(let done) = r else { return reply }
                            o["schedulePatched"] = .bool(done.patched)
                            return .object(o)
                        })
                }
                return
            }
            self.completeBatcher.add((id, token, p["result"])) { result in
                self.untrack(id, session: call.session)
                call.finish(JobReplies.finished(id, result))
            }
        }

        methods.register("jobs.fail") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["id", "leaseToken", "error", "retryable", "retryInMs"])
            let id = try Self.jobID(p)
            let token = try p.string("leaseToken")
            guard let errorValue = p["error"] else { throw RPCError.invalidParams(field: "error", "is required") }
            let error: JSON = errorValue.stringValue != nil ? ["message": errorValue] : errorValue
            let retryable = try p.bool("retryable", default: true)
            let retryIn = try p.optionalInt("retryInMs", in: 0...2_592_000_000)
            self.failBatcher.add((id, token, error, retryable, retryIn)) { result in
                self.untrack(id, session: call.session)
                call.finish(JobReplies.finished(id, result))
            }
        }

        methods.register("jobs.cancel") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.jobID(call.params)
            store.cancel(id: id, retention: context.config.retention) { r in
                if case .success(let outcome) = r { self.context.raiseCancelled(id, outcome) }
                call.finish(r.mapError(\.rpcError).flatMap { JobReplies.cancel(id, $0) })
            }
        }

        methods.register("jobs.retry") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.jobID(call.params)
            store.retry(id: id) { r in call.finish(r.mapError(\.rpcError).flatMap { JobReplies.retry(id, $0) }) }
        }

        methods.register("jobs.get") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.jobID(call.params)
            store.job(id: id) { r in call.finish(r.mapError(\.rpcError).flatMap { JobReplies.get(id, $0) }) }
        }

        methods.register("jobs.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown([
                "queue", "state", "kind", "tag", "createdFrom", "createdBefore", "uniqueKey", "limit", "cursor",
            ])
            // A uniqueKey names at most one unfinished job: a one-job page, found through its index.
            if let key = try p.optionalString("uniqueKey") {
                guard p.object.pairs.count == 1 else {
                    throw RPCError.invalidParams(field: "uniqueKey", "cannot be combined with other filters")
                }
                return store.job(uniqueKey: key) { r in
                    call.finish(
                        r.mapError(\.rpcError).map {
                            ["jobs": .array($0.map { [JobReplies.job($0)] } ?? []), "nextCursor": .null]
                        })
                }
            }
            func instant(_ field: String) throws(RPCError) -> Int64? {
                guard let text = try p.optionalString(field) else { return nil }
                guard let ms = Timestamp.parse(text) else {
                    throw RPCError.invalidParams(field: field, "is not an RFC 3339 time")
                }
                return ms
            }
            let createdFrom = try instant("createdFrom")
            let createdBefore = try instant("createdBefore")
            let state = try p.optionalString("state")
            if let state, !Self.jobStates.contains(state) {
                throw RPCError.invalidParams(field: "state", "must be one of \(Self.jobStates.joined(separator: ", "))")
            }
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 50)
            var before: Int64?
            if let cursor = try p.optionalString("cursor") {
                guard let c = Int64(cursor), c > 0 else {
                    throw RPCError.invalidParams(field: "cursor", "is not a cursor from self.list")
                }
                before = c
            }
            store.listJobs(
                queue: try p.optionalString("queue"), state: state, kind: try p.optionalString("kind"),
                tag: try p.optionalString("tag"), createdFromMs: createdFrom, createdBeforeMs: createdBefore,
                beforeID: before, limit: limit,
                maxBytes: context.config.limits.maxReplyBytes
            ) { r in call.finish(r.mapError(\.rpcError).map { JobReplies.page($0, limit: limit) }) }
        }

        methods.register("queues.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["limit", "cursor"])
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 1000)
            let after = try p.optionalName("cursor")
            store.listQueues(after: after, limit: limit) { r in
                call.finish(r.mapError(\.rpcError).map { JobReplies.queues($0, limit: limit) })
            }
        }

        methods.register("queues.stats") { [unowned self] call in
            try call.params.onlyKnown(["queue"])
            store.queueStats(try call.params.name("queue")) {
                call.finish($0.mapError(\.rpcError).map(JobReplies.stats))
            }
        }

        methods.register("queues.configure") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["queue", "retry", "retention"])
            let queue = try p.name("queue")
            guard p.object["retry"] != nil || p.object["retention"] != nil else {
                throw RPCError.invalidParams(field: "retry", "retry or retention is required (null clears one)")
            }
            var retry = Store.Setting<JSON>.keep
            if p.object["retry"] != nil {
                retry = .set(try p.optionalObject("retry").map { o throws(RPCError) in try JobSpec.parseRetry(o) })
            }
            var completed = Store.Setting<Int64>.keep
            var dead = Store.Setting<Int64>.keep
            if p.object["retention"] != nil {
                if let r = try p.optionalObject("retention") {
                    (completed, dead) = try JobSpec.parseRetention(r)
                } else {
                    (completed, dead) = (.set(nil), .set(nil))
                }
            }
            store.configureQueue(queue, retry: retry, completedRetentionMs: completed, deadRetentionMs: dead) {
                call.finish($0.mapError(\.rpcError).map(JobReplies.settings))
            }
        }

        for (method, paused) in [("queues.pause", true), ("queues.resume", false)] {
            methods.register(method) { [unowned self] call in
                try call.params.onlyKnown(["queue"])
                let queue = try call.params.name("queue")
                store.setQueuePaused(queue, paused: paused) { r in
                    if !paused, case .success = r { self.wake(queue: queue) }
                    call.finish(r.mapError(\.rpcError).map { JobReplies.paused(queue, $0) })
                }
            }
        }
    }

    static let jobStates = [
        "scheduled", "available", "running", "retryable", "completed", "dead", "cancelled", "waiting",
    ]

    static func jobID(_ p: Params) throws(RPCError) -> Int64 {
        let text = try p.string("id")
        guard let id = Int64(text), id > 0 else { throw RPCError.invalidParams(field: "id", "is not a job id") }
        return id
    }

    /// `jobs.enqueue {webhook: {endpointId, event?, payload}, runAt? | delayMs?, uniqueKey?}`: a job whose
    /// work is one signed delivery, run by the webhook dispatcher (retries, health) instead of a worker.
    private func enqueueWebhook(_ call: Call) throws {
        let p = call.params
        try p.onlyKnown(["webhook", "runAt", "delayMs", "uniqueKey"])
        guard let w = try p.optionalObject("webhook") else {
            throw RPCError.invalidParams(field: "webhook", "must be {endpointId, event?, payload}")
        }
        let wp = Params(object: w)
        let endpoint: Int64
        let event: String
        do throws(RPCError) {
            try wp.onlyKnown(["endpointId", "event", "payload"])
            endpoint = try wp.numericID("endpointId")
            event = try wp.optionalName("event", maxLength: 200) ?? "job"
        } catch {
            throw RPCError.invalidParams(
                field: "webhook." + (error.data?["field"]?.stringValue ?? ""), error.data?["detail"]?.stringValue ?? "")
        }
        if p.has("runAt") && p.has("delayMs") {
            throw RPCError.invalidParams(field: "delayMs", "cannot be combined with runAt")
        }
        var delay = try p.optionalInt("delayMs", in: 0...315_360_000_000)
        if let runAt = try p.optionalString("runAt") {
            guard let ms = Timestamp.parse(runAt) else {
                throw RPCError.invalidParams(
                    field: "runAt", "must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z")
            }
            delay = max(0, ms - Timestamp.nowMs())
        }
        let key = try p.optionalName("uniqueKey", maxLength: 400)
        let data = wp["payload"] ?? .null
        webhooks.send(endpointID: endpoint, event: event, data: data, idempotencyKey: key, delayMs: delay) { r in
            call.finish(
                r.flatMap { sent in
                    guard let d = sent.first else {
                        return .failure(.notFound("webhook endpoint", id: String(endpoint)))
                    }
                    return .success([
                        "deliveryId": .string(String(d.deliveryID)), "state": "pending", "duplicate": .bool(!d.new),
                    ])
                })
        }
    }
}
