import Foundation
import Testing
import WharfClient
import WharfRPC

/// What clients learn when PostgreSQL misbehaves: a lost outcome, a read-only database.
@Suite struct DatabaseFaultTests {
    /// Sends `calls` as pipelined requests in one write (one loop turn on the server).
    func send(_ c: BlockingConnection, _ calls: [(id: Int, method: String, params: JSON)]) throws {
        var bytes: [UInt8] = []
        for call in calls {
            let request: JSON = [
                "jsonrpc": "2.0", "id": .from(call.id), "method": .string(call.method), "params": call.params,
            ]
            bytes += Array(request.text.utf8) + [0x0A]
        }
        try c.sendRaw(bytes)
    }

    func replies(_ c: BlockingConnection, count: Int) throws -> [Int64: JSON] {
        var out: [Int64: JSON] = [:]
        while out.count < count {
            let m = try c.readMessage()
            if let id = m["id"]?.intValue { out[id] = m }
        }
        return out
    }

    func waitUntilSleeping(_ s: TestServer) throws {
        let base = try TestEnvironment.databaseURL()
        for _ in 0..<200 {
            let n = try TestDatabase.psql(
                base,
                "select count(*) from pg_stat_activity where datname = '\(s.database.name)' and wait_event = 'PgSleep'")
            if n != "0" { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestFailure("the server's statement never started sleeping")
    }

    func terminateBackends(_ s: TestServer) throws {
        try TestDatabase.psql(
            try TestEnvironment.databaseURL(),
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '\(s.database.name)'")
    }

    /// The connection breaks while a statement commits (a deferred trigger is still running), with
    /// more statements sent behind it: every such call may have taken effect, so each is reported
    /// as `outcome_unknown`, retryable only with an idempotency key. The keyed call, repeated, then
    /// makes its job exactly once. (Before, all were `store_unavailable`, `retryable: true`.)
    @Test func aCallWhoseOutcomeIsLostSaysSoAndIsRetryableOnlyWithAKey() throws {
        let s = try TestServer { $0.poolSize = 1 }
        try s.database.sql(
            """
            create function slow_commit() returns trigger language plpgsql as
                $$ begin perform pg_sleep(30); return null; end $$;
            create constraint trigger jobs_slow_commit after insert on wharf.jobs deferrable initially deferred
                for each row when (new.kind = 'slow') execute function slow_commit();
            """)
        let c = try s.connect()
        try send(c, [(1, "jobs.enqueue", ["queue": "lost", "kind": "slow"])])
        try waitUntilSleeping(s)
        try send(
            c,
            [
                (2, "jobs.enqueue", ["queue": "lost", "kind": "k", "idempotencyKey": "lost-1"]),
                (3, "jobs.enqueue", ["queue": "lost", "kind": "k"]),
                (4, "jobs.enqueueBatch", ["jobs": [["queue": "lost", "kind": "k", "idempotencyKey": "lost-2"]]]),
            ])
        // The server sends them at once, on the one connection, behind the sleeping commit.
        Thread.sleep(forTimeInterval: 0.3)
        try terminateBackends(s)
        let got = try replies(c, count: 4)
        for id: Int64 in 1...4 {
            let error = try #require(got[id]?["error"].flatMap(RPCError.init(json:)), "call \(id): \(got[id]?.text ?? "")")
            #expect(error.code == -32003)
            #expect(error.reason == "outcome_unknown", "call \(id): \(error)")
            #expect(error.isRetryable == (id == 2 || id == 4), "call \(id): \(error)")
        }
        // Retried as told: the keyed calls make their jobs once, however often they are repeated.
        var ids: [String] = []
        let deadline = Date().addingTimeInterval(15)
        while ids.count < 3 && Date() < deadline {
            do {
                let r = try c.call("jobs.enqueue", ["queue": "lost", "kind": "k", "idempotencyKey": "lost-1"])
                ids.append(try #require(r["id"]?.stringValue))
            } catch let e as RPCError where e.isRetryable {
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        #expect(ids.count == 3 && Set(ids).count == 1, "\(ids)")
        #expect(try s.database.sql("select count(*) from wharf.jobs where queue = 'lost'") == "1")
    }

    /// A database that refuses writes (`default_transaction_read_only`, as a standby after a
    /// failover): writes fail with -32003 `store_read_only` (retryable), and `server.health` says
    /// so. Before, they failed with -32603 and health said `ok`.
    @Test func aReadOnlyDatabaseIsReportedAsSuch() throws {
        let s = try TestServer()
        let c = try s.connect()
        #expect(try c.call("server.health")["status"] == "ok")
        let base = try TestEnvironment.databaseURL()
        try TestDatabase.psql(base, "alter database \(s.database.name) set default_transaction_read_only = on")
        // Only new sessions see it.
        try terminateBackends(s)
        var enqueueError: RPCError?
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            do {
                _ = try c.call("jobs.enqueue", ["queue": "ro", "kind": "k"])
                Issue.record("an enqueue succeeded on a read-only database")
                break
            } catch let e as RPCError where e.reason == "store_read_only" {
                enqueueError = e
                break
            } catch let e as RPCError where e.code == -32003 {
                Thread.sleep(forTimeInterval: 0.1)  // still reconnecting
            }
        }
        let e = try #require(enqueueError)
        #expect(e.code == -32003)
        #expect(e.isRetryable)
        let lease = try c.expectError("jobs.lease", ["queues": ["ro"], "worker": "w"])
        #expect(lease.reason == "store_read_only")
        let acquire = try c.expectError("locks.acquire", ["name": "ro", "holder": "h", "ttlMs": 10_000])
        #expect(acquire.reason == "store_read_only")
        let health = try c.call("server.health")
        #expect(health["status"] == "read_only")
        #expect(health["database"]?["readOnly"] == true)
        #expect(health["database"]?["reachable"] == true)
        #expect(try c.call("jobs.list", ["queue": "ro"])["jobs"] == [], "reads still work")

        try TestDatabase.psql(base, "alter database \(s.database.name) reset default_transaction_read_only")
        try terminateBackends(s)
        var recovered = false
        let until = Date().addingTimeInterval(15)
        while !recovered && Date() < until {
            recovered = (try? c.call("jobs.enqueue", ["queue": "ro", "kind": "k"])) != nil
            if !recovered { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(recovered)
    }
}
