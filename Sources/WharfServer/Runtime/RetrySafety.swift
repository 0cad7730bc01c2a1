import WharfRPC

/// Which calls a client may safely send again when their outcome is unknown.
///
/// When the database connection breaks after a call's statement was sent, the store reports
/// `outcome_unknown` with `retryable: false`: the call may have taken effect. `Call.finish` asks this
/// table whether repeating this call could do its work twice, and marks the error retryable only
/// when it cannot. A method missing from the table is treated as unsafe, so a new method starts
/// conservative (and a test asks that every served method be placed in one of the three sets).
/// Protocol/README.md lists the same rule for clients.
enum RetrySafety {
    /// Methods whose repetition has no further effect (reads, and writes that set a state or are
    /// keyed by the caller's token or name). A repeat of some of them may answer differently (a
    /// repeated `jobs.fail` or `jobs.retry` is refused as `lease_lost` or `invalid_state` once the
    /// first one committed) but never does anything twice. A lease whose reply was lost only keeps
    /// its jobs until the lease expires; they then run, as after any lost worker.
    static let safeMethods: Set<String> = [
        "server.ping", "server.info", "server.health", "server.replicas", "session.hello",
        "jobs.lease", "jobs.heartbeat", "jobs.complete", "jobs.fail", "jobs.cancel", "jobs.retry", "jobs.get",
        "jobs.wait", "jobs.list", "queues.list", "queues.stats", "queues.configure", "queues.pause", "queues.resume",
        "cron.upsert", "cron.get", "cron.list", "cron.remove", "cron.pause", "cron.resume", "cron.preview",
        "locks.renew", "locks.release", "locks.get", "locks.list",
        "webhooks.update", "webhooks.get", "webhooks.list", "webhooks.remove", "webhooks.enable",
        "webhooks.health", "webhooks.deliveries",
        "events.subscribe", "events.unsubscribe",
        "rpc.discover",
        "runs.get", "runs.list", "runs.cancel", "batches.get",
    ]

    /// Methods that are safe to repeat only with a key the caller chose (see `isSafeToRepeat`).
    static let keyedMethods: Set<String> = ["jobs.enqueue", "jobs.enqueueBatch", "locks.acquire", "webhooks.send"]

    /// Methods whose repetition can do their work again: they make something new each time.
    static let unsafeMethods: Set<String> = [
        "cron.trigger", "webhooks.register", "webhooks.test", "webhooks.redeliver", "webhooks.rotateSecret",
        "webhooks.recover",
    ]

    /// Whether sending `method` with `params` again cannot do its work twice.
    static func isSafeToRepeat(method: String, params: Params) -> Bool {
        if safeMethods.contains(method) { return true }
        switch method {
        case "jobs.enqueue":
            // A webhook job's uniqueKey is its delivery's idempotency key (never pruned while the
            // delivery exists).
            if params.has("webhook") { return params.has("uniqueKey") }
            return params.has("idempotencyKey")
        case "jobs.enqueueBatch":
            guard case .array(let jobs)? = params["jobs"], !jobs.isEmpty else { return false }
            return jobs.allSatisfy { $0["idempotencyKey"]?.stringValue != nil }
        case "locks.acquire":
            return params.has("requestId")
        case "webhooks.send":
            return params.has("idempotencyKey")
        default:
            return false
        }
    }

    /// `error` as the caller should see it: an unknown outcome is retryable only when repeating the
    /// call is safe.
    static func adjust(_ error: RPCError, method: String, params: Params) -> RPCError {
        guard error.reason == "outcome_unknown" else { return error }
        return error.settingRetryable(isSafeToRepeat(method: method, params: params))
    }
}
