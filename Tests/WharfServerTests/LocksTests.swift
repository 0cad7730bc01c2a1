import Foundation
import Testing
import WharfClient
import WharfRPC

@Suite struct LocksTests {
    func acquire(_ c: BlockingConnection, _ name: String, holder: String, ttlMs: Int = 30_000, extra: JSONObject = [:])
        throws -> JSON
    {
        var p: JSONObject = ["name": .string(name), "holder": .string(holder), "ttlMs": .from(ttlMs)]
        for e in extra.pairs { p[e.key] = e.value }
        return try c.call("locks.acquire", .object(p))
    }

    @Test func grantDenyRenewReleaseWithCompareAndSet() throws {
        let s = try TestServer()
        let c = try s.connect()
        let a = try acquire(c, "res", holder: "a")
        #expect(a["granted"] == true)
        let token = try #require(a["token"])
        let b = try acquire(c, "res", holder: "b")
        #expect(b["granted"] == false)
        #expect(b["heldBy"] == "a")
        #expect(try c.expectError("locks.release", ["name": "res", "token": "not-mine"]).reason == "lease_lost")
        #expect(
            try c.expectError("locks.renew", ["name": "res", "token": "not-mine", "ttlMs": 1000]).reason == "lease_lost"
        )
        #expect(try c.call("locks.get", ["name": "res"])["holder"] == "a")
        let renewed = try c.call("locks.renew", ["name": "res", "token": token, "ttlMs": 60_000])
        #expect(renewed["fencingToken"] == a["fencingToken"])
        #expect(try c.call("locks.release", ["name": "res", "token": token])["released"] == true)
        #expect(try c.call("locks.get", ["name": "res"])["held"] == false)
        #expect(try c.expectError("locks.release", ["name": "res", "token": token]).code == -32009)
    }

    @Test func fencingTokensGrowAcrossReleaseExpiryAndRestart() throws {
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
        s.stop()
        let restarted = try TestServer(database: s.database)
        let c2 = try restarted.connect()
        _ = try c2.call("locks.release", ["name": "f", "token": afterExpiry["token"]!])
        seen.append(try acquire(c2, "f", holder: "h3")["fencingToken"]!.intValue!)
        #expect(seen == seen.sorted() && Set(seen).count == seen.count, "\(seen)")
        let stats = try c2.call("locks.get", ["name": "f"])["stats"]
        #expect(stats?["expiriesWithoutRelease"] == 1)
        #expect(stats?["grants"] == 4)
    }

    @Test func requestIdMakesARetriedAcquireIdempotent() throws {
        let s = try TestServer()
        let c = try s.connect()
        let one = try acquire(c, "r", holder: "h", extra: ["requestId": "req-1"])
        let again = try acquire(c, "r", holder: "h", extra: ["requestId": "req-1"])
        #expect(again["granted"] == true)
        #expect(again["token"] == one["token"])
        #expect(again["fencingToken"] == one["fencingToken"])
        #expect(try acquire(c, "r", holder: "h", extra: ["requestId": "req-2"])["granted"] == false)
    }

    @Test func sessionBoundLockIsReleasedWhenTheConnectionCloses() throws {
        let s = try TestServer()
        var holder: BlockingConnection? = try s.connect()
        #expect(try acquire(holder!, "b", holder: "h", extra: ["bindToSession": true])["granted"] == true)
        let other = try s.connect()
        let waiting = Box<JSON?>(nil)
        let done = DispatchSemaphore(value: 0)
        let o = Box(other)
        Thread {
            waiting.value = try? o.value.call(
                "locks.acquire", ["name": "b", "holder": "o", "ttlMs": 30_000, "waitMs": 10_000])
            done.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.3)
        let closedAt = Date()
        holder = nil
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(waiting.value?["granted"] == true)
        #expect(Date().timeIntervalSince(closedAt) < 2)
    }

    @Test func lockDelayKeepsAnExpiredLockUngrantable() throws {
        let s = try TestServer()
        let c = try s.connect()
        #expect(try acquire(c, "d", holder: "h", ttlMs: 200, extra: ["lockDelayMs": 1500])["granted"] == true)
        Thread.sleep(forTimeInterval: 0.4)
        #expect(try acquire(c, "d", holder: "x")["granted"] == false)
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try acquire(c, "d", holder: "x")["granted"] == true)
    }

    @Test func waitersAreServedInArrivalOrder() throws {
        let s = try TestServer()
        let c = try s.connect()
        let first = try acquire(c, "fifo", holder: "owner")
        let order = Box<[String]>([])
        let lock = NSLock()
        let group = DispatchGroup()
        for name in ["w1", "w2", "w3"] {
            group.enter()
            let conn = Box(try s.connect())
            Thread {
                if let r = try? conn.value.call(
                    "locks.acquire", ["name": "fifo", "holder": .string(name), "ttlMs": 30_000, "waitMs": 20_000]),
                    r["granted"] == true
                {
                    lock.withLock { order.value.append(name) }
                    Thread.sleep(forTimeInterval: 0.1)
                    _ = try? conn.value.call("locks.release", ["name": "fifo", "token": r["token"]!])
                }
                group.leave()
            }.start()
            Thread.sleep(forTimeInterval: 0.2)
        }
        _ = try c.call("locks.release", ["name": "fifo", "token": first["token"]!])
        #expect(group.wait(timeout: .now() + 15) == .success)
        #expect(order.value == ["w1", "w2", "w3"])
        #expect(try c.call("locks.get", ["name": "fifo"])["stats"]?["waits"] == 3)
    }

    @Test func waiterOnAnotherReplicaIsWokenByRelease() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let ca = try a.connect()
        let held = try acquire(ca, "x", holder: "a")
        let got = Box<JSON?>(nil)
        let done = DispatchSemaphore(value: 0)
        let cb = Box(try b.connect())
        Thread {
            got.value = try? cb.value.call(
                "locks.acquire", ["name": "x", "holder": "b", "ttlMs": 30_000, "waitMs": 20_000])
            done.signal()
        }.start()
        Thread.sleep(forTimeInterval: 0.3)
        let releasedAt = Date()
        _ = try ca.call("locks.release", ["name": "x", "token": held["token"]!])
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(got.value?["granted"] == true)
        #expect(Date().timeIntervalSince(releasedAt) < 1.5)
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
            do { _ = try acquire(c, "down", holder: "h") } catch let e as RPCError { error = e }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(error?.code == -32003)
        #expect(error?.isRetryable == true)
    }
}

/// `wharf lock run` against a real server: the command's status passes through, a second run while
/// the lock is held fails fast with 75, and `--wait` waits its turn.
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
        holder.arguments = ["lock", "run", "nightly", "--server", server, "--ttl", "3s", "--", "sleep", "1.5"]
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
        let waited = try TestDatabase.run([
            bin, "lock", "run", "nightly", "--server", server, "--wait", "10s", "--", "echo", "ran",
        ])
        #expect(waited.0 == 0)
        #expect(waited.1.contains("ran"))
        holder.waitUntilExit()
        #expect(holder.terminationStatus == 0)
    }
}
