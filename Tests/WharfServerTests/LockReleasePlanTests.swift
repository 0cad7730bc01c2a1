import Testing

@testable import WharfStore

/// A release of a few locks finds their rows by key however many names `wharf.locks` holds (`PlanChoice
/// .byKey`); left to itself, PostgreSQL hashes the whole table for a dozen names.
@Suite struct LockReleasePlanTests {
    @Test func aReleaseProbesItsNamesInsteadOfReadingEveryLock() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(
            "insert into wharf.locks (name) select 'n' || g from generate_series(1, 1000) g; analyze wharf.locks")
        let sql = try #require(Store.allQueries.first { $0.name == "locks.release" }?.sql)
        let names = "{" + (1...12).map { "n\($0)" }.joined(separator: ",") + "}"
        let tokens = "{" + Array(repeating: "t", count: 12).joined(separator: ",") + "}"
        func plan(_ settings: String) throws -> String {
            try db.plan(
                sql, types: "text[], text[], text[]", arguments: "'\(names)', '\(tokens)', '{}'", settings: [settings])
        }
        let keyed = try plan(Store.forceKeyedPlan)
        #expect(keyed.contains("locks_pkey"), "\(keyed)")
        #expect(!keyed.contains("Seq Scan on locks"), "\(keyed)")
        // What the settings are for: without them the plan reads every lock.
        let own = try plan("select 1")
        #expect(own.contains("Seq Scan on locks"), "\(own)")
    }
}
