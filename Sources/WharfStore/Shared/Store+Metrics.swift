import WharfPQ

/// One row of the metrics snapshot: a measurement `name`, up to two label values, and its value.
public struct MetricsRow: Sendable, Equatable {
    public var name: String
    public var label: String
    public var label2: String
    public var value: Double
}

extension Store {
    /// Counts for `GET /metrics` in one statement (`MetricsSQL.snapshot` says what it reads).
    public func metricsSnapshot(_ completion: @escaping (Result<[MetricsRow], StoreError>) -> Void) {
        rows(MetricsSQL.snapshot, [], completion) { rows in
            (0..<rows.rowCount).map { i in
                MetricsRow(
                    name: rows.string(i, 0) ?? "", label: rows.string(i, 1) ?? "", label2: rows.string(i, 2) ?? "",
                    value: rows.double(i, 3) ?? 0)
            }
        }
    }
}
