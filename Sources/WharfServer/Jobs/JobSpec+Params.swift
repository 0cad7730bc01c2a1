import WharfCore
import WharfRPC
import WharfStore

extension JobSpec {
    static let fields: Set<String> = [
        "queue", "kind", "payload", "priority", "runAt", "delayMs", "maxAttempts", "retry", "timeoutMs", "uniqueKey",
        "lockKey", "tags", "meta", "idempotencyKey",
    ]

    /// Validates a job object from `jobs.enqueue` (or one element of `jobs.enqueueBatch`, with `path`
    /// prefixed to the field names in errors).
    static func parse(_ p: Params, path: String = "") throws(RPCError) -> JobSpec {
        do {
            return try parseUnprefixed(p)
        } catch {
            guard !path.isEmpty, let field = error.data?["field"]?.stringValue,
                let detail = error.data?["detail"]?.stringValue
            else { throw error }
            throw RPCError.invalidParams(field: path + field, detail)
        }
    }

    /// Validates a retry policy object `{initialMs, maxMs, coefficient, jitter}` (all optional).
    static func parseRetry(_ retry: JSONObject) throws(RPCError) -> JSON {
        let r = Params(object: retry)
        do {
            try r.onlyKnown(["initialMs", "maxMs", "coefficient", "jitter"])
            var o = JSONObject()
            if let v = try r.double("initialMs", in: 0...86_400_000) { o["initialMs"] = .double(v) }
            if let v = try r.double("maxMs", in: 0...2_592_000_000) { o["maxMs"] = .double(v) }
            if let v = try r.double("coefficient", in: 1...100) { o["coefficient"] = .double(v) }
            if let v = try r.double("jitter", in: 0...1) { o["jitter"] = .double(v) }
            return .object(o)
        } catch {
            throw RPCError.invalidParams(
                field: "retry." + (error.data?["field"]?.stringValue ?? ""), error.data?["detail"]?.stringValue ?? "")
        }
    }

    /// Validates a retention object `{completedMs, deadMs}` of `queues.configure`: a field that is
    /// given is set (null clears it back to the server's), one that is absent is left as it was.
    static func parseRetention(
        _ retention: JSONObject
    ) throws(RPCError) -> (completed: Store.Setting<Int64>, dead: Store.Setting<Int64>) {
        let r = Params(object: retention)
        do {
            try r.onlyKnown(["completedMs", "deadMs"])
            func setting(_ key: String) throws(RPCError) -> Store.Setting<Int64> {
                guard let v = retention[key] else { return .keep }
                if v == .null { return .set(nil) }
                return .set(try r.int(key, in: 0...maxRetentionMs))
            }
            return (try setting("completedMs"), try setting("deadMs"))
        } catch {
            throw RPCError.invalidParams(
                field: "retention." + (error.data?["field"]?.stringValue ?? ""), error.data?["detail"]?.stringValue ?? "")
        }
    }

    /// Ten years.
    static let maxRetentionMs: Int64 = 315_360_000_000

    private static func parseUnprefixed(_ p: Params) throws(RPCError) -> JobSpec {
        try p.onlyKnown(fields)
        var spec = JobSpec(queue: try p.name("queue"), kind: try p.name("kind"))
        spec.payload = p["payload"] ?? .null
        spec.priority = try p.optionalInt("priority", in: -1000...1000) ?? 0
        if p.has("runAt") && p.has("delayMs") {
            throw RPCError.invalidParams(field: "delayMs", "cannot be combined with runAt")
        }
        if let runAt = try p.optionalString("runAt") {
            guard let ms = Timestamp.parse(runAt) else {
                throw RPCError.invalidParams(
                    field: "runAt", "must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z")
            }
            spec.runAtMs = ms
        }
        if let delay = try p.optionalInt("delayMs", in: 0...315_360_000_000) {
            spec.runAtMs = delay == 0 ? nil : Timestamp.nowMs() + delay
        }
        spec.maxAttempts = try p.optionalInt("maxAttempts", in: 1...1000) ?? 20
        if let retry = try p.optionalObject("retry") { spec.retry = try Self.parseRetry(retry) }
        spec.timeoutMs = try p.optionalInt("timeoutMs", in: 1...86_400_000)
        spec.uniqueKey = try p.optionalName("uniqueKey", maxLength: 400)
        spec.lockKey = try p.optionalName("lockKey", maxLength: 400)
        spec.idempotencyKey = try p.optionalName("idempotencyKey", maxLength: 400)
        spec.tags = try p.stringArray("tags", maxCount: 50) ?? []
        if let meta = try p.optionalObject("meta") { spec.meta = .object(meta) }
        return spec
    }
}
