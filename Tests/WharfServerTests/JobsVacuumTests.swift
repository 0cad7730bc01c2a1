import Foundation
import Testing
import WharfClient
import WharfRPC

@testable import WharfServer

/// A replica vacuums `wharf.jobs` once PostgreSQL counts `--vacuum-jobs-after` dead row versions in it
/// (`JobsVacuum`), which clears the claim index of the entries leased jobs left at the head of a queue.
@Suite struct JobsVacuumTests {
    /// Enqueues `count` jobs on `queue`, leases and completes them all.
    static func passThrough(_ c: BlockingConnection, queue: String, count: Int) throws {
        for start in stride(from: 0, to: count, by: 500) {
            let jobs = (start..<min(count, start + 500)).map { _ in JSON.object(["queue": .string(queue), "kind": "k"])
            }
            _ = try c.call("jobs.enqueueBatch", ["jobs": .array(jobs)])
        }
        var done = 0
        while done < count {
            let leased = try #require(
                try c.call("jobs.lease", ["queues": [.string(queue)], "max": 100, "leaseMs": 60_000, "worker": "w"])[
                    "jobs"]?.arrayValue)
            #expect(!leased.isEmpty)
            for j in leased {
                _ = try c.call("jobs.complete", ["id": j["id"] ?? .null, "leaseToken": j["leaseToken"] ?? .null])
            }
            done += leased.count
        }
    }

    /// Index pages a lease's claim scan of `queue` reads (`EXPLAIN (ANALYZE, BUFFERS)`).
    static func claimScanPages(_ db: TestDatabase, queue: String) throws -> Int {
        let plan = try db.sql(
            """
            set enable_seqscan = off;
            explain (analyze, buffers, costs off, timing off)
            select id from wharf.jobs j
            where queue = '\(queue)' and state in ('available', 'scheduled', 'retryable') and lock_key is null
              and run_at <= now()
            order by priority desc, run_at, id limit 100;
            """)
        let line = try #require(plan.split(separator: "\n").first { $0.contains("Buffers: shared") })
        return line.split(separator: " ").compactMap { word -> Int? in
            let parts = word.split(separator: "=")
            return parts.count == 2 && ["hit", "read"].contains(parts[0]) ? Int(parts[1]) : nil
        }.reduce(0, +)
    }

    @Test func vacuumsOnceDeadRowsPassTheThreshold() throws {
        let s = try TestServer { $0.vacuumJobsAfterDeadRows = 500 }
        let c = try s.connect()
        try Self.passThrough(c, queue: "vac", count: 3_000)
        // PostgreSQL reports an idle backend's counts up to 10 s late; the replica checks every second.
        // A vacuum may come before the last leases, and another once their dead rows are counted.
        var vacuums = 0
        var pages = Int.max
        let deadline = Date().addingTimeInterval(40)
        while (vacuums == 0 || pages > 4) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.5)
            vacuums =
                Int(
                    try s.database.sql(
                        "select vacuum_count from pg_stat_user_tables where relid = 'wharf.jobs'::regclass"))
                ?? 0
            pages = try Self.claimScanPages(s.database, queue: "vac")
        }
        #expect(vacuums >= 1)
        // The entries the 3,000 leases left (about 20 index pages) are gone: the scan reads the root and a
        // leaf or two.
        #expect(pages <= 4)
    }

    @Test func zeroLeavesItToAutovacuum() throws {
        let s = try TestServer { $0.vacuumJobsAfterDeadRows = 0 }
        // Autovacuum stays out of it: its visit, due any time on a table this full of dead rows, would
        // clear the entries whatever the replica does.
        _ = try s.database.sql("alter table wharf.jobs set (autovacuum_enabled = off)")
        let c = try s.connect()
        try Self.passThrough(c, queue: "novac", count: 1_000)
        // The entries are still there (no vacuum ran: this scan reads past them).
        #expect(try Self.claimScanPages(s.database, queue: "novac") > 4)
        #expect(
            try s.database.sql("select vacuum_count from pg_stat_user_tables where relid = 'wharf.jobs'::regclass")
                == "0")
    }
}
