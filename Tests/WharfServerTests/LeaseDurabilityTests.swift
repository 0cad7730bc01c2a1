import Foundation
import Logging
import Testing
import WharfClient
import WharfRPC
import WharfServer

/// A lease survives a database crash: the attempt it started is counted, so `maxAttempts` bounds how
/// often a job runs even when PostgreSQL crashes while workers run jobs.
///
/// Runs its own PostgreSQL cluster (the shared test cluster cannot be crashed under other tests), with
/// `synchronous_commit` on and the WAL writer waking only every 10 s, so that a commit that did not
/// wait for the WAL flush is still only in shared memory when `pg_ctl stop -m immediate` kills the
/// cluster right after the lease reply.
@Suite struct LeaseDurabilityTests {
    static func pgCtl(_ dataDir: String, _ args: [String]) throws {
        var tool = "pg_ctl"
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init)
            .sorted()
        if let v = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(v)/bin/pg_ctl") {
            tool = "\(root)/\(v)/bin/pg_ctl"
        }
        let command = [tool, "-D", dataDir + "/pg"] + args
        let asPostgres = geteuid() == 0 ? ["runuser", "-u", "postgres", "--"] + command : command
        let (status, _, err) = try TestDatabase.run(asPostgres)
        guard status == 0 else { throw TestFailure("pg_ctl \(args.joined(separator: " ")) failed: \(err)") }
    }

    @Test func aLeaseIsCountedAfterADatabaseCrash() throws {
        let dir = "/tmp/wharf-crash-\(UInt32.random(in: 0...UInt32.max))"
        let pg = EmbeddedPostgres(dataDir: dir, logger: Logger(label: "wharf-test-pg"))
        try pg.start()
        defer {
            pg.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        try TestDatabase.psql(pg.conninfo, "alter system set wal_writer_delay = '10s'")
        try TestDatabase.psql(pg.conninfo, "select pg_reload_conf()")
        let db = try TestDatabase(base: pg.conninfo)
        let s = try TestServer(database: db)
        let c = try s.connect()
        let id = try #require(try c.call("jobs.enqueue", ["queue": "q", "kind": "k"])["id"]?.stringValue)
        let job = try #require(try c.call("jobs.lease", ["queues": ["q"], "worker": "w"])["jobs"]?.arrayValue?.first)
        #expect(job["attempt"] == 1)
        // The worker has its job; now the database crashes (no shutdown checkpoint, shared memory lost).
        try Self.pgCtl(dir, ["-m", "immediate", "-w", "stop"])
        try pg.start()
        let row = try db.sql("select state || ',' || attempt from wharf.jobs where id = \(id)")
        #expect(row == "running,1", "after the crash the job is \(row)")
        s.stop()
    }
}

extension TestDatabase {
    /// A fresh database on the cluster at `base` (a libpq conninfo) rather than the shared test cluster.
    init(base: String) throws {
        name = "wharf_t_" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try Self.psql(base, "create database \(name)")
        conninfo = Self.replacingDBName(base, with: name)
    }
}
