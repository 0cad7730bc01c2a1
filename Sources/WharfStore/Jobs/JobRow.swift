import WharfJSON
import WharfPQ

/// A job as stored, read from the columns of `JobSQL.columns`. Times are epoch milliseconds
/// (`SQLTime.ms`); replies format them.
public struct JobRecord: Sendable {
    public var id: Int64
    public var queue: String
    public var kind: String
    public var payload: JSON
    public var state: String
    public var priority: Int64
    public var attempt: Int64
    public var maxAttempts: Int64
    public var runAtMs: Int64
    public var createdAtMs: Int64
    public var leasedAtMs: Int64?
    public var leaseExpiresAtMs: Int64?
    public var finishedAtMs: Int64?
    public var worker: String?
    /// Only a lease hands it out (to the worker that leased the job); other readers must not show it.
    public var leaseToken: String?
    public var uniqueKey: String?
    public var lockKey: String?
    /// A JSON array of strings.
    public var tags: JSON
    public var meta: JSON
    public var progress: JSON?
    public var result: JSON?
    public var lastError: JSON?
    public var timeoutMs: Int64?
    public var scheduleName: String?
    public var scheduleFireAtMs: Int64?
    public var retry: JSON?
    /// The fencing token of the lock a lease of a job with a lockKey took (lease rows only).
    public var fencingToken: Int64?
    /// The history of failed and lost attempts (`JobSQL.get` rows only).
    public var attempts: [JSON]?
}

/// Reads rows selected with `JobSQL.columns`.
enum JobRow {
    /// Columns in `JobSQL.columns`; a statement may return more after them.
    static let columnCount = 26

    static func record(_ r: PQResult, _ row: Int, fencingTokenColumn: Int? = nil, attemptsColumn: Int? = nil)
        -> JobRecord
    {
        var j = JobRecord(
            id: r.int(row, 0) ?? 0, queue: r.string(row, 1) ?? "", kind: r.string(row, 2) ?? "",
            payload: parsed(r, row, 3) ?? .null, state: r.string(row, 4) ?? "", priority: r.int(row, 5) ?? 0,
            attempt: r.int(row, 6) ?? 0, maxAttempts: r.int(row, 7) ?? 0, runAtMs: r.int(row, 8) ?? 0,
            createdAtMs: r.int(row, 9) ?? 0, leasedAtMs: r.int(row, 10), leaseExpiresAtMs: r.int(row, 11),
            finishedAtMs: r.int(row, 12), worker: r.string(row, 13), leaseToken: r.string(row, 14),
            uniqueKey: r.string(row, 15), lockKey: r.string(row, 16), tags: parsed(r, row, 17) ?? .array([]),
            meta: parsed(r, row, 18) ?? .object([:]), progress: parsed(r, row, 19), result: parsed(r, row, 20),
            lastError: parsed(r, row, 21), timeoutMs: r.int(row, 22), scheduleName: r.string(row, 23),
            scheduleFireAtMs: r.int(row, 24), retry: parsed(r, row, 25))
        if let c = fencingTokenColumn { j.fencingToken = r.int(row, c) }
        if let c = attemptsColumn { j.attempts = parsed(r, row, c)?.arrayValue ?? [] }
        return j
    }

    /// Parses a json/jsonb column; PostgreSQL only ever hands back valid JSON.
    static func parsed(_ r: PQResult, _ row: Int, _ col: Int) -> JSON? {
        r.withBytes(row, col) { try? JSONParser.parse($0) } ?? nil
    }
}
