import CLibPQ

/// The rows of one statement's result, read lazily from libpq's `PGresult` (freed on deinit).
///
/// Values are in PostgreSQL's text format. Not thread-safe; used on the loop thread.
public final class PQResult {
    let res: OpaquePointer

    init(_ res: OpaquePointer) { self.res = res }
    deinit { PQclear(res) }

    public var rowCount: Int { Int(PQntuples(res)) }
    public var columnCount: Int { Int(PQnfields(res)) }
    /// Rows affected by INSERT/UPDATE/DELETE, 0 if not applicable.
    public var affectedRows: Int { Int(String(cString: PQcmdTuples(res))) ?? 0 }

    public func columnName(_ col: Int) -> String { String(cString: PQfname(res, Int32(col))) }

    /// The column's index, or nil if the result has no such column.
    public func column(_ name: String) -> Int? {
        let n = PQfnumber(res, name)
        return n < 0 ? nil : Int(n)
    }

    public func isNull(_ row: Int, _ col: Int) -> Bool { PQgetisnull(res, Int32(row), Int32(col)) == 1 }

    public func string(_ row: Int, _ col: Int) -> String? {
        if isNull(row, col) { return nil }
        return String(cString: PQgetvalue(res, Int32(row), Int32(col)))
    }

    /// The raw text bytes of a value (no copy; valid while this result lives).
    public func withBytes<T>(_ row: Int, _ col: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T? {
        if isNull(row, col) { return nil }
        let p = PQgetvalue(res, Int32(row), Int32(col))!
        let n = Int(PQgetlength(res, Int32(row), Int32(col)))
        return try body(UnsafeRawBufferPointer(start: p, count: n))
    }

    public func int(_ row: Int, _ col: Int) -> Int64? {
        withBytes(row, col) { b -> Int64? in
            var v: Int64 = 0
            var neg = false
            for (k, c) in b.enumerated() {
                if k == 0 && c == UInt8(ascii: "-") {
                    neg = true
                    continue
                }
                guard c >= 48 && c <= 57 else { return nil }
                v = v &* 10 &+ Int64(c - 48)
            }
            return neg ? -v : v
        } ?? nil
    }

    public func bool(_ row: Int, _ col: Int) -> Bool? {
        withBytes(row, col) { $0.first == UInt8(ascii: "t") }
    }

    public func double(_ row: Int, _ col: Int) -> Double? {
        string(row, col).flatMap(Double.init)
    }
}

/// A failure talking to PostgreSQL.
public struct PQError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No usable connection (connect failed, connection lost, pool not ready), and the statement
        /// never reached PostgreSQL in full: it did not run. Safe to retry.
        case unavailable
        /// The connection was lost after the statement was sent and before its outcome arrived: it may
        /// or may not have committed. Retrying is safe only for an idempotent statement.
        case outcomeUnknown
        /// The server rejected the statement (`sqlState` tells why).
        case server
        /// The statement was not run because an earlier one in its pipeline segment failed.
        case aborted
    }

    public let kind: Kind
    public let message: String
    /// The SQLSTATE code for server errors (e.g. `23505` unique violation).
    public let sqlState: String?
    public let constraint: String?
    /// The server's severity, not localized (`ERROR`, `FATAL`, `PANIC`), for server errors.
    public let severity: String?

    public init(
        kind: Kind, message: String, sqlState: String? = nil, constraint: String? = nil, severity: String? = nil
    ) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.constraint = constraint
        self.severity = severity
    }

    public var description: String { "\(kind) \(sqlState ?? "") \(message)" }

    static func from(result: OpaquePointer) -> PQError {
        func field(_ code: Int32) -> String? {
            guard let p = PQresultErrorField(result, code) else { return nil }
            return String(cString: p)
        }
        let message = field(Int32(UInt8(ascii: "M"))) ?? String(cString: PQresultErrorMessage(result))
        return PQError(
            kind: .server, message: message, sqlState: field(Int32(UInt8(ascii: "C"))),
            constraint: field(Int32(UInt8(ascii: "n"))), severity: field(Int32(UInt8(ascii: "V"))))
    }
}
