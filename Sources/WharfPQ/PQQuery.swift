/// One statement with text-format parameters (`$1...$n`).
public struct PQStatement: Sendable {
    public var sql: String
    public var params: [String?]

    public init(_ sql: String, _ params: [String?] = []) {
        self.sql = sql
        self.params = params
    }
}

/// What the pool runs as one unit: statements that share one pipeline Sync segment, and therefore
/// one implicit transaction. Independent client requests never share a segment.
public struct PQSegment: Sendable {
    public var statements: [PQStatement]

    public init(_ statements: [PQStatement]) { self.statements = statements }
    public init(_ sql: String, _ params: [String?] = []) { statements = [PQStatement(sql, params)] }
}
