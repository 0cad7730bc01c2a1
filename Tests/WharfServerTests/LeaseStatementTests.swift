import Foundation
import Testing
import WharfClient
import WharfRPC

@testable import WharfStore

/// Most leases run `JobSQL.leaseWithoutKeys`, which leaves out the keyed-job statements; a lease whose
/// queues have a runnable keyed job must still be served as `JobSQL.lease` serves it.
@Suite struct LeaseStatementTests {
    /// Runs `leaseWithoutKeys` for queue `q` (max 10) and returns its rows: `id,state` or `,` for the
    /// row of nulls that says a keyed job is due.
    func leaseWithoutKeys(_ db: TestDatabase, queue: String) throws -> [String] {
        let sql = try #require(Store.allQueries.first { $0.name == "jobs.leaseWithoutKeys" }?.sql)
        let out = try db.sql(
            """
            prepare l(text[], int, bigint, text, bigint, bool) as \(sql);
            execute l('{\(queue)}', 10, 30000, 'w', 1048576, true);
            """)
        return out.split(separator: "\n").map { line in
            let f = line.split(separator: "|", omittingEmptySubsequences: false)
            return "\(f[0]),\(f.count > 4 ? String(f[4]) : "")"
        }
    }

    @Test func theLeaseWithoutKeysTakesNothingAndSaysSoWhenAKeyedJobIsDue() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(
            """
            insert into wharf.jobs (id, queue, kind, state) values (1, 'plain', 'k', 'available');
            insert into wharf.jobs (id, queue, kind, state) values (2, 'mixed', 'k', 'available');
            insert into wharf.jobs (id, queue, kind, state, lock_key) values (3, 'mixed', 'k', 'available', 'n');
            insert into wharf.jobs (id, queue, kind, state, lock_key, run_at)
                values (4, 'later', 'k', 'scheduled', 'n', now() + interval '1 hour');
            insert into wharf.jobs (id, queue, kind, state) values (5, 'later', 'k', 'available');
            """)
        #expect(try leaseWithoutKeys(db, queue: "plain") == ["1,running"])
        // A keyed job is due: nothing is taken (not even the plain job), one row of nulls answers.
        #expect(try leaseWithoutKeys(db, queue: "mixed") == [","])
        #expect(
            try db.sql("select string_agg(id || state, ' ' order by id) from wharf.jobs where queue = 'mixed'")
                == "2available 3available")
        // A keyed job that is not due yet does not count.
        #expect(try leaseWithoutKeys(db, queue: "later") == ["5,running"])
    }

    @Test func aKeyedJobIsLeasedInClaimOrderBeforeAPlainOne() throws {
        let s = try TestServer()
        let c = try s.connect()
        let plain = try #require(try c.call("jobs.enqueue", ["queue": "q", "kind": "k"])["id"]?.stringValue)
        let keyed = try #require(
            try c.call("jobs.enqueue", ["queue": "q", "kind": "k", "lockKey": "account-1", "priority": 5])["id"]?
                .stringValue)
        func leaseOne() throws -> JSON? {
            try c.call("jobs.lease", ["queues": ["q"], "max": 1, "worker": "w"])["jobs"]?.arrayValue?.first
        }
        let first = try #require(try leaseOne())
        #expect(first["id"]?.stringValue == keyed)
        #expect(first["fencingToken"] != nil)
        #expect(try leaseOne()?["id"]?.stringValue == plain)
        #expect(try leaseOne() == nil)
    }

    @Test func aWaitingWorkerGetsAKeyedJobEnqueuedForIt() throws {
        let s = try TestServer()
        let worker = try s.connect()
        let producer = try s.connect()
        try worker.sendLine(
            #"{"jsonrpc":"2.0","id":1,"method":"jobs.lease","params":{"queues":["w"],"waitMs":10000,"worker":"w"}}"#)
        Thread.sleep(forTimeInterval: 0.2)
        let id = try #require(
            try producer.call("jobs.enqueue", ["queue": "w", "kind": "k", "lockKey": "account-2"])["id"]?.stringValue)
        let reply = try worker.readMessage()
        let job = try #require(reply["result"]?["jobs"]?.arrayValue?.first)
        #expect(job["id"]?.stringValue == id)
        #expect(job["fencingToken"] != nil)
        #expect(try producer.call("locks.get", ["name": "account-2"])["holder"]?.stringValue == "job \(id)")
    }
}
