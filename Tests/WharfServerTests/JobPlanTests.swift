import Testing
import WharfPQ

@testable import WharfStore

/// The lease and the complete find their jobs by key whatever the statistics say (`Store.jobsPlan`).
/// Statistics taken while the table was smaller, or while no job was running, made PostgreSQL hash or
/// scan all of `wharf.jobs` for every batch, and the plan stayed cached.
@Suite struct JobPlanTests {
    var storeSettings: [String] {
        Store.planned(PQStatement("select 1"), Store.jobsPlan).dropLast().map(\.sql)
    }

    /// 20,000 runnable jobs in queue `q`, analyzed, then 200 of them running (not analyzed).
    func grownTable() throws -> TestDatabase {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(
            """
            insert into wharf.jobs (queue, kind, state) select 'q', 'k', 'available' from generate_series(1, 20000);
            analyze wharf.jobs;
            update wharf.jobs set state = 'running', lease_token = 't' || id, lease_expires_at = now()
            where id <= 200;
            """)
        return db
    }

    @Test func theLeaseUpdatesItsJobsByKey() throws {
        let db = try grownTable()
        for name in ["jobs.leaseWithoutKeys", "jobs.lease"] {
            let sql = try #require(Store.allQueries.first { $0.name == name }?.sql)
            let p = try db.plan(
                sql, types: "text[], int, bigint, text, bigint, bool",
                arguments: "'{q}', 1000, 30000, 'w', 1048576, true", settings: storeSettings)
            // One probe per leased job.
            #expect(p.contains("Index Cond: (id = p.id)"), "\(name): \(p)")
            #expect(!p.contains("Seq Scan on jobs"), "\(name): \(p)")
        }
    }

    @Test func aCompleteFindsItsJobsByKey() throws {
        let db = try grownTable()
        let sql = try #require(Store.allQueries.first { $0.name == "jobs.complete" }?.sql)
        let ids = "'{" + (1...200).map(String.init).joined(separator: ",") + "}'"
        let tokens = "'{" + (1...200).map { "t\($0)" }.joined(separator: ",") + "}'"
        let arguments = "\(ids), \(tokens), '{}', 60000"
        let types = "bigint[], text[], jsonb[], bigint"
        let keyed = try db.plan(sql, types: types, arguments: arguments, settings: storeSettings)
        #expect(keyed.contains("Index Cond: (id = t.id)"), "\(keyed)")
        #expect(!keyed.contains("Seq Scan on jobs"), "\(keyed)")
        // What the settings are for: left to itself, PostgreSQL believes no job is running and reads them all.
        let own = try db.plan(sql, types: types, arguments: arguments, settings: [])
        #expect(own.contains("Seq Scan on jobs"), "\(own)")
    }
}
