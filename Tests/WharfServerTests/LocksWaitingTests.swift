import Foundation
import Testing
import WharfClient
import WharfRPC

/// Waiting for locks under load, and `requestId` retries, against a real server and PostgreSQL.
@Suite struct LocksWaitingTests {
    func acquire(_ c: BlockingConnection, _ name: String, holder: String, _ extra: JSONObject = [:]) throws -> JSON {
        var p: JSONObject = ["name": .string(name), "holder": .string(holder), "ttlMs": 30_000]
        for e in extra.pairs { p[e.key] = e.value }
        return try c.call("locks.acquire", .object(p))
    }

    /// `count` acquires of `name` with `waitMs`, pipelined in one write (fewer than a connection may have
    /// in flight, 1,024: past that the server stops reading the connection until replies go out).
    func pipelineWaiters(_ c: BlockingConnection, _ name: String, count: Int, prefix: String) throws {
        var text = ""
        for k in 0..<count {
            text += """
                {"jsonrpc":"2.0","id":\(k),"method":"locks.acquire","params":{"name":"\(name)","holder":"\(prefix)\(k)",\
                "ttlMs":30000,"waitMs":120000}}

                """
        }
        try c.sendRaw(Array(text.utf8))
    }

    func waits(_ c: BlockingConnection, _ name: String) throws -> Int64 {
        try c.call("locks.get", ["name": .string(name)])["stats"]?["waits"]?.intValue ?? -1
    }

    /// A release goes to the first waiter at once, although thousands of new waiters are still being
    /// queued behind it; and those thousands are queued within seconds (a statement per many, not one
    /// each).
    @Test func aReleaseIsHandedOnAheadOfABacklogOfNewWaiters() throws {
        let s = try TestServer()
        let c = try s.connect()
        let held = try acquire(c, "hot", holder: "owner")
        let first = Background(try s.connect()) {
            try $0.call("locks.acquire", ["name": "hot", "holder": "first", "ttlMs": 30_000, "waitMs": 60_000])
        }
        try waitForWaiters(s, "hot", 1)
        let crowd = try (0..<3).map { _ in try s.connect() }
        for (k, conn) in crowd.enumerated() { try pipelineWaiters(conn, "hot", count: 1_000, prefix: "c\(k)-") }
        let releasedAt = Date()
        #expect(try c.call("locks.release", ["name": "hot", "token": held["token"]!])["released"] == true)
        let r = try first.result(timeout: 20)
        let handoff = Date().timeIntervalSince(releasedAt)
        #expect(r["granted"] == true)
        #expect(r["fencingToken"] == 2)
        #expect(handoff < 1, "the first waiter got the lock \(handoff) s after its release")
        try waitForWaiters(s, "hot", 3_000)
        #expect(try s.database.sql("select count(*) from wharf.lock_waiters where name = 'hot'") == "3000")
    }

    /// A connection that closes with thousands of acquires queued or still on their way to the
    /// database leaves nothing behind: its waiters' rows go at once, and no later statement queues more.
    @Test func aClosedConnectionsWaitersLeaveTheLineAtOnce() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try acquire(c, "gone", holder: "owner")
        var crowd = try (0..<3).map { _ in try s.connect() }
        for (k, conn) in crowd.enumerated() { try pipelineWaiters(conn, "gone", count: 1_000, prefix: "g\(k)-") }
        Thread.sleep(forTimeInterval: 0.05)
        crowd = []
        let closedAt = Date()
        var settled = false
        var last: (rows: String, waits: Int64) = ("", -1)
        while !settled && Date().timeIntervalSince(closedAt) < 3 {
            Thread.sleep(forTimeInterval: 0.25)
            let now: (rows: String, waits: Int64) = (
                try s.database.sql("select count(*) from wharf.lock_waiters"), try waits(c, "gone"))
            settled = now.rows == "0" && now.waits == last.waits
            last = now
        }
        #expect(settled, "3 s after the close: \(last.rows) rows, waits still growing (\(last.waits))")
        // And nothing comes back later.
        Thread.sleep(forTimeInterval: 1)
        #expect(try s.database.sql("select count(*) from wharf.lock_waiters") == "0")
        #expect(try waits(c, "gone") == last.waits)
        #expect(try c.call("locks.get", ["name": "gone"])["waiters"] == 0)
    }

    /// Waiting rows are not rewritten while they wait: a replica keeps them counting through one row of
    /// its own in `wharf.lock_replicas`.
    @Test func waiterRowsAreNotRewrittenWhileTheyWait() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try acquire(c, "still", holder: "owner")
        let crowd = try s.connect()
        try pipelineWaiters(crowd, "still", count: 50, prefix: "s")
        try waitForWaiters(s, "still", 50)
        let versions = "select string_agg(ctid::text || '/' || xmin::text, ',' order by seq) from wharf.lock_waiters"
        let before = try s.database.sql(versions)
        // The rows' own leases (4 s) run out meanwhile: only the replica's row keeps them counting.
        Thread.sleep(forTimeInterval: 5)
        #expect(try s.database.sql(versions) == before)
        #expect(try c.call("locks.get", ["name": "still"])["waiters"] == 50)
        #expect(try s.database.sql("select count(*) from wharf.lock_replicas where alive_until > now()") == "1")
    }

    @Test func waitersPerLockAreLimited() throws {
        let s = try TestServer { $0.limits.maxLockWaiters = 2 }
        let c = try s.connect()
        _ = try acquire(c, "full", holder: "owner")
        var crowd: BlockingConnection? = try s.connect()
        try pipelineWaiters(crowd!, "full", count: 2, prefix: "f")
        try waitForWaiters(s, "full", 2)
        let e = try c.expectError(
            "locks.acquire", ["name": "full", "holder": "late", "ttlMs": 30_000, "waitMs": 10_000])
        #expect(e.code == -32005)
        #expect(e.reason == "limit_exceeded")
        #expect(e.data?["limit"] == "lockWaiters")
        #expect(e.data?["max"] == 2)
        #expect(e.isRetryable)
        // The limit is on waiting only: a try-lock is answered as ever, and other names are not affected.
        #expect(try acquire(c, "full", holder: "try")["granted"] == false)
        #expect(try acquire(c, "other", holder: "h", ["waitMs": 1_000])["granted"] == true)
        // Once the line shortens, waiting is accepted again.
        crowd = nil
        try waitForWaiters(s, "full", 0)
        let r = try acquire(c, "full", holder: "patient", ["waitMs": 200])
        #expect(r["granted"] == false)
        #expect(r["heldBy"] == "owner")
    }

    /// A `requestId` retry with `bindToSession` from another connection (the first one broke) moves the
    /// lock's binding to the new connection: closing the first no longer releases it; closing the new one
    /// does.
    @Test func aBoundRetryFromAnotherConnectionMovesTheBinding() throws {
        let s = try TestServer()
        let observer = try s.connect()
        var first: BlockingConnection? = try s.connect()
        let bound: JSONObject = ["requestId": "req-b", "bindToSession": true]
        let one = try acquire(first!, "moved", holder: "h", bound)
        #expect(one["granted"] == true)
        var second: BlockingConnection? = try s.connect()
        let again = try acquire(second!, "moved", holder: "h", bound)
        #expect(again["token"] == one["token"])
        #expect(again["fencingToken"] == one["fencingToken"])
        first = nil
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try observer.call("locks.get", ["name": "moved"])["held"] == true)
        let renewed = try second!.call("locks.renew", ["name": "moved", "token": one["token"]!, "ttlMs": 30_000])
        #expect(renewed["fencingToken"] == one["fencingToken"])
        second = nil
        var held = true
        for _ in 0..<40 where held {
            Thread.sleep(forTimeInterval: 0.05)
            held = try observer.call("locks.get", ["name": "moved"])["held"] == true
        }
        #expect(!held, "closing the connection the lock is bound to now releases it")
        #expect(try observer.call("locks.get", ["name": "moved"])["stats"]?["grants"] == 1)
    }

    /// A `requestId` names one request: reused with another ttl, lock-delay or binding it is refused,
    /// and the grant it names is left as it was.
    @Test func aRequestIdReusedWithOtherValuesIsRefused() throws {
        let s = try TestServer()
        let c = try s.connect()
        let one = try acquire(c, "same", holder: "h", ["requestId": "req-1", "lockDelayMs": 100])
        #expect(one["granted"] == true)
        let other = try s.connect()
        for changed: JSONObject in [
            ["ttlMs": 60_000, "lockDelayMs": 100], ["lockDelayMs": 0], ["lockDelayMs": 100, "bindToSession": true],
        ] {
            var p: JSONObject = [
                "name": "same", "holder": "h", "ttlMs": 30_000, "requestId": "req-1",
            ]
            for e in changed.pairs { p[e.key] = e.value }
            let e = try other.expectError("locks.acquire", .object(p))
            #expect(e.code == -32009)
            #expect(e.reason == "request_id_reused")
            #expect(e.data?["ttlMs"] == 30_000)
            #expect(e.data?["lockDelayMs"] == 100)
            #expect(e.message.contains("req-1"))
        }
        let again = try acquire(other, "same", holder: "h", ["requestId": "req-1", "lockDelayMs": 100])
        #expect(again["token"] == one["token"])
        #expect(again["expiresAt"] == one["expiresAt"])
        let lock = try c.call("locks.get", ["name": "same"])
        #expect(lock["stats"]?["grants"] == 1)
        #expect(lock["expiresAt"] == one["expiresAt"])
    }
}
