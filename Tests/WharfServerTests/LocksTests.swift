import Foundation
import Testing
import WharfClient
import WharfCore
import WharfRPC

/// `locks.*` against real servers on loopback TCP and a real PostgreSQL, one fresh database per test.
@Suite struct LocksTests {
    func acquire(
        _ c: BlockingConnection, _ name: String, holder: String, ttlMs: Int = 30_000, extra: JSONObject = [:]
    ) throws -> JSON {
        var p: JSONObject = ["name": .string(name), "holder": .string(holder), "ttlMs": .from(ttlMs)]
        for e in extra.pairs { p[e.key] = e.value }
        return try c.call("locks.acquire", .object(p))
    }

    @Test func grantDenyRenewReleaseWithCompareAndSet() throws {
        let s = try TestServer()
        let c = try s.connect()
        let a = try acquire(c, "res", holder: "a")
        #expect(a["granted"] == true)
        #expect(a["fencingToken"] == 1)
        let token = try #require(a["token"])
        let b = try acquire(c, "res", holder: "b")
        #expect(b["granted"] == false)
        #expect(b["heldBy"] == "a")
        #expect(b["expiresAt"] == a["expiresAt"])

        // Someone else's token changes nothing.
        let before = try s.database.sql("select holder, token, expires_at, fencing_token from wharf.locks")
        let wrongRelease = try c.expectError("locks.release", ["name": "res", "token": "not-mine"])
        #expect(wrongRelease.code == -32009)
        #expect(wrongRelease.reason == "lease_lost")
        let wrongRenew = try c.expectError("locks.renew", ["name": "res", "token": "not-mine", "ttlMs": 90_000])
        #expect(wrongRenew.code == -32009)
        #expect(wrongRenew.reason == "lease_lost")
        #expect(try s.database.sql("select holder, token, expires_at, fencing_token from wharf.locks") == before)
        #expect(try c.call("locks.get", ["name": "res"])["holder"] == "a")

        let renewed = try c.call("locks.renew", ["name": "res", "token": token, "ttlMs": 60_000])
        #expect(renewed["fencingToken"] == a["fencingToken"])
        #expect(renewed["expiresAt"]!.stringValue! > a["expiresAt"]!.stringValue!)
        #expect(try c.call("locks.release", ["name": "res", "token": token])["released"] == true)
        let after = try c.call("locks.get", ["name": "res"])
        #expect(after["held"] == false)
        #expect(after["stats"]?["releases"] == 1)
        // A released token is spent.
        #expect(try c.expectError("locks.release", ["name": "res", "token": token]).code == -32009)
        #expect(try c.expectError("locks.renew", ["name": "res", "token": token, "ttlMs": 1000]).code == -32009)
        #expect(try acquire(c, "res", holder: "b")["granted"] == true)
    }

    @Test func postgresClockDecidesExpiry() throws {
        let s = try TestServer()
        let c = try s.connect()
        let a = try acquire(c, "clock", holder: "a", ttlMs: 60_000)
        // The lease ends ttlMs after PostgreSQL's now(), whatever this process's clock says.
        let pgNowMs = Int64(try s.database.sql("select (extract(epoch from now()) * 1000)::bigint"))!
        let expiresMs = try #require(Timestamp.parse(a["expiresAt"]!.stringValue!))
        #expect(abs(expiresMs - pgNowMs - 60_000) < 5_000)
        // Move the lease's end into PostgreSQL's past: the lock is free at once for the database, though
        // the server itself granted a minute-long lease a moment ago.
        try s.database.sql("update wharf.locks set expires_at = now() - interval '1 millisecond' where name = 'clock'")
        #expect(try c.call("locks.get", ["name": "clock"])["held"] == false)
        #expect(try c.expectError("locks.renew", ["name": "clock", "token": a["token"]!, "ttlMs": 60_000]).reason
            == "lease_lost")
        let b = try acquire(c, "clock", holder: "b")
        #expect(b["granted"] == true)
        #expect(b["fencingToken"] == 2)
        #expect(try c.call("locks.get", ["name": "clock"])["stats"]?["expiriesWithoutRelease"] == 1)
        // The old holder's release after a takeover is refused and changes nothing.
        #expect(try c.expectError("locks.release", ["name": "clock", "token": a["token"]!]).code == -32009)
        #expect(try c.call("locks.get", ["name": "clock"])["holder"] == "b")
    }

    @Test func fencingTokensGrowAcrossReleaseExpiryDeleteAndRestart() throws {
        let s = try TestServer()
        let c = try s.connect()
        var seen: [Int64] = []
        let first = try acquire(c, "f", holder: "h")
        seen.append(first["fencingToken"]!.intValue!)
        _ = try c.call("locks.release", ["name": "f", "token": first["token"]!])
        seen.append(try acquire(c, "f", holder: "h", ttlMs: 200)["fencingToken"]!.intValue!)
        Thread.sleep(forTimeInterval: 0.3)
        let afterExpiry = try acquire(c, "f", holder: "h2")
        #expect(afterExpiry["granted"] == true)
        seen.append(afterExpiry["fencingToken"]!.intValue!)
        // The row that carries the counter cannot be deleted (that would restart the tokens at 1).
        #expect(throws: (any Error).self) { try s.database.sql("delete from wharf.locks where name = 'f'") }
        #expect(throws: (any Error).self) { try s.database.sql("truncate wharf.locks") }
        s.stop()
        let restarted = try TestServer(database: s.database)
        let c2 = try restarted.connect()
        _ = try c2.call("locks.release", ["name": "f", "token": afterExpiry["token"]!])
        seen.append(try acquire(c2, "f", holder: "h3")["fencingToken"]!.intValue!)
        #expect(seen == [1, 2, 3, 4], "\(seen)")
        let stats = try c2.call("locks.get", ["name": "f"])["stats"]
        #expect(stats?["expiriesWithoutRelease"] == 1)
        #expect(stats?["grants"] == 4)
        #expect(stats?["releases"] == 2)
    }

    @Test func requestIdMakesARetriedAcquireIdempotent() throws {
        let s = try TestServer()
        let c = try s.connect()
        let one = try acquire(c, "r", holder: "h", extra: ["requestId": "req-1"])
        // The reply was "lost": the same request again, on another connection, gets the same grant.
        let again = try acquire(try s.connect(), "r", holder: "h", extra: ["requestId": "req-1"])
        #expect(again["granted"] == true)
        #expect(again["token"] == one["token"])
        #expect(again["fencingToken"] == one["fencingToken"])
        #expect(try acquire(c, "r", holder: "h", extra: ["requestId": "req-2"])["granted"] == false)
        #expect(try acquire(c, "r", holder: "other", extra: ["requestId": "req-1"])["granted"] == false)
        #expect(try c.call("locks.get", ["name": "r"])["stats"]?["grants"] == 1)
    }

    @Test func sessionBoundLockIsReleasedWhenTheConnectionCloses() throws {
        let s = try TestServer()
        var holder: BlockingConnection? = try s.connect()
        #expect(try acquire(holder!, "b", holder: "h", extra: ["bindToSession": true])["granted"] == true)
        let waiting = Background(try s.connect()) {
            try $0.call("locks.acquire", ["name": "b", "holder": "o", "ttlMs": 30_000, "waitMs": 10_000])
        }
        try waitForWaiters(s, "b", 1)
        let closedAt = Date()
        holder = nil
        let r = try waiting.result(timeout: 5)
        #expect(r["granted"] == true)
        #expect(r["fencingToken"] == 2)
        #expect(Date().timeIntervalSince(closedAt) < 2)
        // Without bindToSession a lock outlives its connection.
        var other: BlockingConnection? = try s.connect()
        #expect(try acquire(other!, "unbound", holder: "h")["granted"] == true)
        other = nil
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try s.connect().call("locks.get", ["name": "unbound"])["held"] == true)
    }

    @Test func lockDelayKeepsAnExpiredLockUngrantable() throws {
        let s = try TestServer()
        let c = try s.connect()
        #expect(try acquire(c, "d", holder: "h", ttlMs: 200, extra: ["lockDelayMs": 1500])["granted"] == true)
        Thread.sleep(forTimeInterval: 0.4)
        let during = try acquire(c, "d", holder: "x")
        #expect(during["granted"] == false)
        #expect(during["heldBy"] == "h")
        #expect(try c.call("locks.get", ["name": "d"])["lockDelayUntil"] != nil)
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try acquire(c, "d", holder: "x")["granted"] == true)
        // A released lock is free at once: the lock-delay is only for holders that vanished.
        let e = try acquire(c, "e", holder: "h", ttlMs: 200, extra: ["lockDelayMs": 60_000])
        _ = try c.call("locks.release", ["name": "e", "token": e["token"]!])
        #expect(try acquire(c, "e", holder: "x")["granted"] == true)
    }

    @Test func waitersAreServedInArrivalOrder() throws {
        let s = try TestServer()
        let c = try s.connect()
        let first = try acquire(c, "fifo", holder: "owner")
        let order = Box<[String]>([])
        let lock = NSLock()
        var waiters: [Background] = []
        for (k, name) in ["w1", "w2", "w3"].enumerated() {
            waiters.append(
                Background(try s.connect()) { conn in
                    let r = try conn.call(
                        "locks.acquire", ["name": "fifo", "holder": .string(name), "ttlMs": 30_000, "waitMs": 20_000])
                    if r["granted"] == true {
                        lock.withLock { order.value.append(name) }
                        Thread.sleep(forTimeInterval: 0.1)
                        _ = try conn.call("locks.release", ["name": "fifo", "token": r["token"]!])
                    }
                    return r
                })
            try waitForWaiters(s, "fifo", k + 1)
        }
        _ = try c.call("locks.release", ["name": "fifo", "token": first["token"]!])
        let tokens = try waiters.map { try $0.result(timeout: 15)["fencingToken"]!.intValue! }
        #expect(order.value == ["w1", "w2", "w3"])
        #expect(tokens == [2, 3, 4])
        let stats = try c.call("locks.get", ["name": "fifo"])
        #expect(stats["stats"]?["waits"] == 3)
        #expect(stats["waiters"] == 0)
        #expect(try s.database.sql("select count(*) from wharf.lock_waiters") == "0")
    }

    @Test func aWaiterThatGivesUpIsToldWhoHoldsTheLock() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try acquire(c, "busy", holder: "owner")
        let started = Date()
        let r = try acquire(try s.connect(), "busy", holder: "w", extra: ["waitMs": 300])
        #expect(r["granted"] == false)
        #expect(r["heldBy"] == "owner")
        #expect(Date().timeIntervalSince(started) >= 0.29)
        #expect(try s.database.sql("select count(*) from wharf.lock_waiters") == "0")
    }

    @Test func aWaiterIsWokenAtTheHoldersExpiry() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try acquire(c, "exp", holder: "gone", ttlMs: 700)
        let started = Date()
        let r = try acquire(try s.connect(), "exp", holder: "next", extra: ["waitMs": 10_000])
        let waited = Date().timeIntervalSince(started)
        #expect(r["granted"] == true)
        // Woken by a timer at the expiry, not by the periodic sweep (every 5 s).
        #expect(waited > 0.5 && waited < 1.5, "waited \(waited) s")
        #expect(try c.call("locks.get", ["name": "exp"])["stats"]?["expiriesWithoutRelease"] == 1)
    }

    @Test func waiterOnAnotherReplicaIsWokenByRelease() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let ca = try a.connect()
        let held = try acquire(ca, "x", holder: "a")
        let got = Background(try b.connect()) {
            try $0.call("locks.acquire", ["name": "x", "holder": "b", "ttlMs": 30_000, "waitMs": 20_000])
        }
        try waitForWaiters(a, "x", 1)
        let releasedAt = Date()
        _ = try ca.call("locks.release", ["name": "x", "token": held["token"]!])
        #expect(try got.result(timeout: 5)["granted"] == true)
        #expect(Date().timeIntervalSince(releasedAt) < 1.5)
    }

    /// The line is durable and shared: a waiter that queued first on replica B gets the lock before a
    /// later waiter on replica A, even though A is where the lock is released.
    @Test func fifoHoldsAcrossReplicas() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let ca = try a.connect()
        let held = try acquire(ca, "shared", holder: "owner")
        let order = Box<[String]>([])
        let lock = NSLock()
        func waiter(_ server: TestServer, _ name: String) throws -> Background {
            Background(try server.connect()) { conn in
                let r = try conn.call(
                    "locks.acquire", ["name": "shared", "holder": .string(name), "ttlMs": 30_000, "waitMs": 20_000])
                if r["granted"] == true {
                    lock.withLock { order.value.append(name) }
                    Thread.sleep(forTimeInterval: 0.1)
                    _ = try conn.call("locks.release", ["name": "shared", "token": r["token"]!])
                }
                return r
            }
        }
        let onB = try waiter(b, "b1")
        try waitForWaiters(a, "shared", 1)
        let onA = try waiter(a, "a1")
        try waitForWaiters(a, "shared", 2)
        let onB2 = try waiter(b, "b2")
        try waitForWaiters(a, "shared", 3)
        _ = try ca.call("locks.release", ["name": "shared", "token": held["token"]!])
        for w in [onB, onA, onB2] { #expect(try w.result(timeout: 10)["granted"] == true) }
        #expect(order.value == ["b1", "a1", "b2"])
    }

    /// A replica that dies with waiters queued holds up the line only until their rows stop counting.
    @Test func waitersOfADeadReplicaStopCounting() throws {
        let s = try TestServer()
        let c = try s.connect()
        let held = try acquire(c, "orphan", holder: "owner")
        try s.database.sql(
            """
            insert into wharf.lock_waiters (name, holder, replica_id, deadline, alive_until)
            values ('orphan', 'ghost', 'r-dead', now() + interval '1 minute', now() + interval '1 second');
            update wharf.locks set waiters_until = now() + interval '1 minute' where name = 'orphan'
            """)
        _ = try c.call("locks.release", ["name": "orphan", "token": held["token"]!])
        #expect(try acquire(c, "orphan", holder: "impatient")["granted"] == false)
        let started = Date()
        let r = try acquire(c, "orphan", holder: "patient", extra: ["waitMs": 10_000])
        #expect(r["granted"] == true)
        #expect(Date().timeIntervalSince(started) < 3)
    }

    @Test func neverGrantsWithoutTheDatabase() throws {
        let s = try TestServer()
        let c = try s.connect()
        let base = try TestEnvironment.databaseURL()
        try TestDatabase.psql(base, "alter database \(s.database.name) allow_connections false")
        defer { _ = try? TestDatabase.psql(base, "alter database \(s.database.name) allow_connections true") }
        try TestDatabase.psql(
            base, "select pg_terminate_backend(pid) from pg_stat_activity where datname = '\(s.database.name)'")
        var error: RPCError?
        for _ in 0..<20 where error == nil {
            // With a requestId, even an acquire whose outcome the outage hid is safe to repeat.
            do { _ = try acquire(c, "down", holder: "h", extra: ["requestId": "down-1"]) } catch let e as RPCError {
                error = e
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(error?.code == -32003)
        #expect(error?.isRetryable == true)
        for _ in 0..<5 {
            let e = try c.expectError("locks.acquire", ["name": "down", "holder": "h", "ttlMs": 1000])
            #expect(e.code == -32003)
        }
        try TestDatabase.psql(base, "alter database \(s.database.name) allow_connections true")
        #expect(try s.database.sql("select count(*) from wharf.locks where name = 'down'") == "0")
    }

    @Test func listAndGetShowCounters() throws {
        let s = try TestServer()
        let c = try s.connect()
        for n in ["app/a", "app/b", "other"] { _ = try acquire(c, n, holder: "h") }
        _ = try acquire(c, "app/a", holder: "x")
        let list = try c.call("locks.list", ["prefix": "app/"])["locks"]?.arrayValue ?? []
        #expect(list.map { $0["name"] } == ["app/a", "app/b"])
        #expect(list[0]["stats"]?["waits"] == 1)
        #expect(list[0]["stats"]?["grants"] == 1)
        #expect(list[0]["held"] == true)
        let page = try c.call("locks.list", ["limit": 2])
        #expect(page["nextCursor"] == "app/b")
        #expect(try c.call("locks.list", ["cursor": "app/b"])["locks"]?.arrayValue?.count == 1)
        let never = try c.call("locks.get", ["name": "never"])
        #expect(never["held"] == false)
        #expect(never["fencingToken"] == 0)
        #expect(try c.expectError("locks.acquire", ["name": "x", "holder": "h"]).code == -32602)
        #expect(try c.expectError("locks.acquire", ["name": "x", "holder": "h", "ttlMs": 10]).reason == "invalid_params")
    }

    /// Polls until `count` waiters are queued for `name` (across replicas).
}

/// Waits until `count` waiters are queued for lock `name`.
func waitForWaiters(_ s: TestServer, _ name: String, _ count: Int) throws {
    let deadline = Date().addingTimeInterval(10)
    let c = try s.connect()
    while Date() < deadline {
        if try c.call("locks.get", ["name": .string(name)])["waiters"] == .int(Int64(count)) { return }
        Thread.sleep(forTimeInterval: 0.02)
    }
    throw TestFailure("\(name) did not get \(count) waiters")
}

/// A call made on its own thread (a blocking connection per thread), awaited later.
final class Background: @unchecked Sendable {  // `outcome` is written before `done` is signalled, read after
    private let done = DispatchSemaphore(value: 0)
    private var outcome: Result<JSON, Error> = .failure(TestFailure("not finished"))

    init(_ connection: BlockingConnection, _ body: @escaping @Sendable (BlockingConnection) throws -> JSON) {
        let conn = Box(connection)
        Thread { [self] in
            outcome = Result { try body(conn.value) }
            done.signal()
        }.start()
    }

    func result(timeout: Double) throws -> JSON {
        guard done.wait(timeout: .now() + timeout) == .success else { throw TestFailure("timed out") }
        return try outcome.get()
    }
}

/// `wharf lock run` against a real server: the command's status passes through, a second run while
/// the lock is held fails fast with 75 naming the holder, and `--wait` waits its turn.
@Suite struct LockRunTests {
    @Test func lockRunGuardsACommand() throws {
        let s = try TestServer()
        let bin = TestEnvironment.wharfBinary
        try #require(FileManager.default.isExecutableFile(atPath: bin))
        let server = "127.0.0.1:\(s.port)"
        let first = try TestDatabase.run([
            bin, "lock", "run", "nightly", "--server", server, "--ttl", "3s", "--", "sh", "-c",
            "echo fencing=$WHARF_FENCING_TOKEN; exit 3",
        ])
        #expect(first.0 == 3)
        #expect(first.1.contains("fencing=1"))
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: bin)
        holder.arguments = [
            "lock", "run", "nightly", "--server", server, "--ttl", "600ms", "--holder", "the-holder", "--", "sleep",
            "1.5",
        ]
        try holder.run()
        var held = false
        for _ in 0..<40 where !held {
            Thread.sleep(forTimeInterval: 0.05)
            held = (try? s.connect().call("locks.get", ["name": "nightly"])["held"]) == true
        }
        #expect(held)
        let second = try TestDatabase.run([bin, "lock", "run", "nightly", "--server", server, "--", "echo", "ran"])
        #expect(second.0 == 75)
        #expect(!second.1.contains("ran"))
        #expect(second.2.contains("the-holder"))
        // The holder's TTL (600 ms) is shorter than its command (1.5 s): renewals keep the lock.
        let waited = try TestDatabase.run([
            bin, "lock", "run", "nightly", "--server", server, "--wait", "10s", "--", "echo", "ran",
        ])
        #expect(waited.0 == 0)
        #expect(waited.1.contains("ran"))
        holder.waitUntilExit()
        #expect(holder.terminationStatus == 0)
        let stats = try s.connect().call("locks.get", ["name": "nightly"])["stats"]
        #expect(stats?["grants"] == 3)
        #expect(stats?["expiriesWithoutRelease"] == 0)
    }
}
