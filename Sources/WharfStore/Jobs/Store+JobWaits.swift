import WharfCore
import WharfPQ

extension Store {
    /// The jobs among `ids` that exist, as `jobs.get` reads them (without their attempt history), for
    /// `jobs.wait`: one statement for every waiting call of a loop turn.
    public func jobs(ids: [Int64], _ completion: @escaping (Result<[JobRecord], StoreError>) -> Void) {
        rows(JobSQL.byIDs, ["{" + ids.map(String.init).joined(separator: ",") + "}"], completion) { rows in
            (0..<rows.rowCount).map { JobRow.record(rows, $0) }
        }
    }
}

extension JobSQL {
    static let byIDs = "select \(columns) from wharf.jobs j where j.id = any($1::bigint[])"
}
