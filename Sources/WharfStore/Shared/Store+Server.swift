import WharfPQ

extension Store {
    enum ServerSQL {
        /// Clock (epoch ms), version, standby, and whether this session's transactions are read-only (a
        /// standby's always are; `default_transaction_read_only` makes a primary's so).
        static let health = """
            select \(SQLTime.ms("now()")), current_setting('server_version'),
                   pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'
            """
        static let publish = "select pg_notify('\(WakeTopic.channel)', $1)"
    }

    /// Sends `payload` on the wake-up channel, to every replica (after the statement commits).
    public func publish(_ payload: String, _ completion: @escaping (Result<Void, StoreError>) -> Void) {
        rows(ServerSQL.publish, [payload], completion) { _ in () }
    }

    /// A round trip to the database: its clock (epoch ms), version, whether it is a standby, and
    /// whether it refuses writes.
    public func health(
        _ completion: @escaping (Result<(nowMs: Int64, version: String, standby: Bool, readOnly: Bool), StoreError>) -> Void
    ) {
        rows(ServerSQL.health, [], completion) { rows in
            (rows.int(0, 0) ?? 0, rows.string(0, 1) ?? "", rows.bool(0, 2) ?? false, rows.bool(0, 3) ?? false)
        }
    }
}
