import WharfPQ
import WharfRPC

/// Turns rows selected with `JobSQL.columns` into the wire's job objects.
enum JobRow {
    /// The lease token only goes to the worker that leased the job (`withLeaseToken`): anyone else who
    /// read it could complete or fail the job in its holder's place.
    /// Columns in `JobSQL.columns`; a statement may return more after them.
    static let columnCount = 26

    static func json(
        _ r: PQResult, _ row: Int, withAttempts: Bool = false, withLeaseToken: Bool = false,
        fencingTokenColumn: Int? = nil
    ) -> JSON {
        var o = JSONObject()
        o["id"] = .from(r.string(row, 0))
        o["queue"] = .from(r.string(row, 1))
        o["kind"] = .from(r.string(row, 2))
        o["payload"] = parsed(r, row, 3) ?? .null
        o["state"] = .from(r.string(row, 4))
        o["priority"] = .from(r.int(row, 5))
        o["attempt"] = .from(r.int(row, 6))
        o["maxAttempts"] = .from(r.int(row, 7))
        o["runAt"] = .from(r.string(row, 8))
        o["createdAt"] = .from(r.string(row, 9))
        optional(&o, "leasedAt", r.string(row, 10).map(JSON.string))
        optional(&o, "leaseExpiresAt", r.string(row, 11).map(JSON.string))
        optional(&o, "finishedAt", r.string(row, 12).map(JSON.string))
        optional(&o, "worker", r.string(row, 13).map(JSON.string))
        if withLeaseToken { optional(&o, "leaseToken", r.string(row, 14).map(JSON.string)) }
        optional(&o, "uniqueKey", r.string(row, 15).map(JSON.string))
        optional(&o, "lockKey", r.string(row, 16).map(JSON.string))
        o["tags"] = parsed(r, row, 17) ?? .array([])
        o["meta"] = parsed(r, row, 18) ?? .object([:])
        optional(&o, "progress", parsed(r, row, 19))
        optional(&o, "result", parsed(r, row, 20))
        optional(&o, "lastError", parsed(r, row, 21))
        optional(&o, "timeoutMs", r.int(row, 22).map(JSON.int))
        if let name = r.string(row, 23) {
            o["schedule"] = ["name": .string(name), "fireAt": .from(r.string(row, 24))]
        }
        optional(&o, "retry", parsed(r, row, 25))
        if let c = fencingTokenColumn { optional(&o, "fencingToken", r.int(row, c).map(JSON.int)) }
        if withAttempts {
            // Failed and lost attempts are recorded as they end; the successful one is the row itself.
            var attempts = parsed(r, row, 26)?.arrayValue ?? []
            if o["state"] == "completed" {
                attempts.append([
                    "attempt": o["attempt"] ?? .null, "worker": o["worker"] ?? .null,
                    "leasedAt": o["leasedAt"] ?? .null,
                    "finishedAt": o["finishedAt"] ?? .null, "outcome": "completed",
                ])
            }
            o["attempts"] = .array(attempts)
        }
        return .object(o)
    }

    static func optional(_ o: inout JSONObject, _ key: String, _ value: JSON?) {
        if let value, value != .null { o[key] = value }
    }

    /// Parses a json/jsonb column; PostgreSQL only ever hands back valid JSON.
    static func parsed(_ r: PQResult, _ row: Int, _ col: Int) -> JSON? {
        r.withBytes(row, col) { try? JSONParser.parse($0) } ?? nil
    }
}
