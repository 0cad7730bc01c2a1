import Foundation
import Testing
import WharfClient
import WharfRPC

/// Jobs over real TCP against real servers and PostgreSQL.
@Suite struct JobsTests {
    func enqueue(_ c: BlockingConnection, _ fields: JSONObject) throws -> String {
        try #require(c.call("jobs.enqueue", .object(fields))["id"]?.stringValue)
    }

    func leaseOne(_ c: BlockingConnection, queue: String, leaseMs: Int = 30_000, waitMs: Int = 0) throws -> JSON? {
        try c.call(
            "jobs.lease",
            ["queues": [.string(queue)], "leaseMs": .from(leaseMs), "waitMs": .from(waitMs), "worker": "t"]
        )["jobs"]?.arrayValue?.first
    }

    func state(_ c: BlockingConnection, _ id: String) throws -> String? {
        try c.call("jobs.get", ["id": .string(id)])["state"]?.stringValue
    }

    @Test func lifecycleToCompleted() throws {
        let s = try TestServer()
        let c = try s.connect()
        let id = try enqueue(c, ["queue": "q", "kind": "email", "payload": ["to": "a@example.com"], "tags": ["t1"]])
        #expect(try state(c, id) == "available")
        let job = try #require(try leaseOne(c, queue: "q"))
        #expect(job["id"]?.stringValue == id)
        #expect(job["state"] == "running")
        #expect(job["attempt"] == 1)
        #expect(job["payload"]?["to"] == "a@example.com")
        let token = try #require(job["leaseToken"])
        // Only the leasing worker sees the token; a reader could otherwise finish the job in its place.
        #expect(try c.call("jobs.get", ["id": .string(id)])["leaseToken"] == nil)
        #expect(try c.call("jobs.list", ["queue": "q"])["jobs"]?.arrayValue?.first?["leaseToken"] == nil)
        let hb = try c.call(
            "jobs.heartbeat", ["id": .string(id), "leaseToken": token, "extendMs": 60_000, "progress": ["pct": 50]])
        #expect(hb["leaseExpiresAt"]?.stringValue != nil)
        let done = try c.call("jobs.complete", ["id": .string(id), "leaseToken": token, "result": ["ok": true]])
        #expect(done["state"] == "completed")
        // A retried complete by the same holder is idempotent.
        #expect(try c.call("jobs.complete", ["id": .string(id), "leaseToken": token])["state"] == "completed")
        let got = try c.call("jobs.get", ["id": .string(id)])
        #expect(got["state"] == "completed")
        #expect(got["result"]?["ok"] == true)
        #expect(got["attempts"]?.arrayValue?.last?["outcome"] == "completed")
        #expect(try leaseOne(c, queue: "q") == nil)
    }

    @Test func longPollOfAClosedConnectionGetsNoJob() throws {
        let s = try TestServer()
        do {
            let gone = try s.connect()
            try gone.sendLine(#"{"jsonrpc":"2.0","id":1,"method":"jobs.lease","params":{"queues":["lp"],"waitMs":10000,"worker":"w","leaseMs":30000}}"#)
            Thread.sleep(forTimeInterval: 0.2)
        }  // closes the socket with the long poll still waiting
        Thread.sleep(forTimeInterval: 0.3)
        let c = try s.connect()
        let id = try enqueue(c, ["queue": "lp", "kind": "k"])
        Thread.sleep(forTimeInterval: 0.3)
        let job = try #require(try leaseOne(c, queue: "lp"))
        #expect(job["id"]?.stringValue == id)
        // Not taken by the closed connection's waiter and handed back: no attempt was spent.
        #expect(job["attempt"] == 1)
    }

    @Test func nulInAnyStringIsRefusedAloneAndClearly() throws {
        let s = try TestServer()
        let c = try s.connect()
        // Pipelined so that both land in one loop turn and would share one batched statement.
        try c.sendLine(
            #"{"jsonrpc":"2.0","id":1,"method":"jobs.enqueue","params":{"queue":"n","kind":"k","payload":{"a":["x\u0000y"]}}}"#)
        try c.sendLine(#"{"jsonrpc":"2.0","id":2,"method":"jobs.enqueue","params":{"queue":"n","kind":"k"}}"#)
        var replies: [Int64: JSON] = [:]
        for _ in 0..<2 {
            let m = try c.readMessage()
            replies[try #require(m["id"]?.intValue)] = m
        }
        let bad = try #require(replies[1]?["error"])
        #expect(bad["code"] == -32602)
        #expect(bad["data"]?["field"] == "payload.a[0]")
        #expect(replies[2]?["result"]?["id"]?.stringValue != nil)
        #expect(
            try c.expectError("locks.acquire", ["name": "a\u{0}b", "holder": "h", "ttlMs": 1000]).code == -32602)
    }

    @Test func staleAndWrongTokensAreRefusedAndChangeNothing() throws {
        let s = try TestServer()
        let c = try s.connect()
        let id = try enqueue(c, ["queue": "q", "kind": "k"])
        let job = try #require(try leaseOne(c, queue: "q"))
        let e = try c.expectError("jobs.complete", ["id": .string(id), "leaseToken": "forged"])
        #expect(e.code == -32009)
        #expect(e.reason == "lease_lost")
        #expect(
            try c.expectError("jobs.fail", ["id": .string(id), "leaseToken": "forged", "error": "x"]).reason
                == "lease_lost")
        #expect(
            try c.expectError("jobs.heartbeat", ["id": .string(id), "leaseToken": "forged"]).reason == "lease_lost")
        #expect(try state(c, id) == "running")
        #expect(try c.expectError("jobs.complete", ["id": "999999", "leaseToken": "x"]).code == -32004)
        _ = try c.call("jobs.complete", ["id": .string(id), "leaseToken": job["leaseToken"]!])
    }

    /// A JSON-RPC batch lands in one statement: a forged and the real token for one job must still
    /// get different answers.
    @Test func forgedAndRealTokenInOneStatement() throws {
        let s = try TestServer()
        let c = try s.connect()
        let id = try enqueue(c, ["queue": "q", "kind": "k"])
        let job = try #require(try leaseOne(c, queue: "q"))
        let token = try #require(job["leaseToken"]?.stringValue)
        try c.sendLine(
            #"[{"jsonrpc":"2.0","id":"forged","method":"jobs.complete","params":{"id":"\#(id)","leaseToken":"forged"}},"#
                + #"{"jsonrpc":"2.0","id":"real","method":"jobs.complete","params":{"id":"\#(id)","leaseToken":"\#(token)"}}]"#
        )
        let replies = try #require(c.readMessage().arrayValue)
        let forged = try #require(replies.first { $0["id"] == "forged" })
        let real = try #require(replies.first { $0["id"] == "real" })
        #expect(forged["error"]?["data"]?["reason"] == "lease_lost")
        #expect(real["result"]?["state"] == "completed")
    }

    @Test func expiredLeaseReturnsJobAndFencesOldHolder() throws {
        let s = try TestServer()
        let c = try s.connect()
        let id = try enqueue(c, ["queue": "q", "kind": "k"])
        let first = try #require(try leaseOne(c, queue: "q", leaseMs: 1_000))
        // The reaper runs every second; allow a couple of rounds.
        var again: JSON?
        let deadline = Date().addingTimeInterval(5)
        while again == nil && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            again = try leaseOne(c, queue: "q")
        }
        let second = try #require(again)
        #expect(second["attempt"] == 2)
        #expect(second["leaseToken"] != first["leaseToken"])
        let stale = try c.expectError("jobs.complete", ["id": .string(id), "leaseToken": first["leaseToken"]!])
        #expect(stale.reason == "lease_lost")
        _ = try c.call("jobs.complete", ["id": .string(id), "leaseToken": second["leaseToken"]!])
        let history = try c.call("jobs.get", ["id": .string(id)])["attempts"]?.arrayValue ?? []
        #expect(history.map { $0["outcome"] } == ["lease_expired", "completed"])
    }

    @Test func droppedWorkerConnectionReleasesItsJobsAtOnce() throws {
        let s = try TestServer()
        let producer = try s.connect()
        let id = try enqueue(producer, ["queue": "q", "kind": "k"])
        var worker: BlockingConnection? = try s.connect()
        let job = try #require(try leaseOne(worker!, queue: "q", leaseMs: 600_000))
        worker = nil  // closes the socket
        var st = try state(producer, id)
        let deadline = Date().addingTimeInterval(3)
        while st == "running" && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            st = try state(producer, id)
        }
        #expect(st == "available")
        let got = try producer.call("jobs.get", ["id": .string(id)])
        #expect(got["lastError"]?["reason"] == "worker_lost")
        // Reconnecting does not bring the lease back.
        let again = try s.connect()
        #expect(
            try again.expectError("jobs.complete", ["id": .string(id), "leaseToken": job["leaseToken"]!]).reason
                == "lease_lost")
    }

    @Test func failuresRetryWithBackoffThenDie() throws {
        let s = try TestServer()
        let c = try s.connect()
        let id = try enqueue(
            c,
            ["queue": "q", "kind": "k", "maxAttempts": 2, "retry": ["initialMs": 1000, "coefficient": 2, "jitter": 0]])
        let j1 = try #require(try leaseOne(c, queue: "q"))
        let before = Date()
        let f1 = try c.call("jobs.fail", ["id": .string(id), "leaseToken": j1["leaseToken"]!, "error": "boom"])
        #expect(f1["state"] == "retryable")
        let next = try #require(f1["nextRunAt"]?.stringValue.flatMap(parseTime))
        let delay = next.timeIntervalSince(before)
        #expect(delay > 0.8 && delay < 1.5, "retry in \(delay) s")
        #expect(try leaseOne(c, queue: "q") == nil)
        Thread.sleep(forTimeInterval: 1.1)
        let j2 = try #require(try leaseOne(c, queue: "q"))
        #expect(j2["attempt"] == 2)
        let f2 = try c.call(
            "jobs.fail", ["id": .string(id), "leaseToken": j2["leaseToken"]!, "error": ["message": "again"]])
        #expect(f2["state"] == "dead")
        let got = try c.call("jobs.get", ["id": .string(id)])
        #expect(got["attempts"]?.arrayValue?.count == 2)
        #expect(got["lastError"]?["message"] == "again")
        // retry brings a dead job back.
        #expect(try c.call("jobs.retry", ["id": .string(id)])["state"] == "available")
        #expect(try leaseOne(c, queue: "q")?["attempt"] == 3)
    }

    @Test func nonRetryableFailureAndRetryInMs() throws {
        let s = try TestServer()
        let c = try s.connect()
        let a = try enqueue(c, ["queue": "q", "kind": "k"])
        let ja = try #require(try leaseOne(c, queue: "q"))
        #expect(
            try c.call(
                "jobs.fail",
                ["id": .string(a), "leaseToken": ja["leaseToken"]!, "error": "bad input", "retryable": false])["state"]
                == "dead")
        let b = try enqueue(c, ["queue": "q", "kind": "k"])
        let jb = try #require(try leaseOne(c, queue: "q"))
        let before = Date()
        let f = try c.call(
            "jobs.fail", ["id": .string(b), "leaseToken": jb["leaseToken"]!, "error": "later", "retryInMs": 5000])
        let delay = try #require(f["nextRunAt"]?.stringValue.flatMap(parseTime)).timeIntervalSince(before)
        #expect(delay > 4.5 && delay < 5.6)
    }

    @Test func cancelReachesARunningJob() throws {
        let s = try TestServer()
        let c = try s.connect()
        let queued = try enqueue(c, ["queue": "q", "kind": "k", "delayMs": 60_000])
        #expect(try state(c, queued) == "scheduled")
        #expect(try c.call("jobs.cancel", ["id": .string(queued)])["state"] == "cancelled")
        let id = try enqueue(c, ["queue": "q", "kind": "k"])
        let job = try #require(try leaseOne(c, queue: "q"))
        #expect(try c.call("jobs.cancel", ["id": .string(id)])["cancelled"] == true)
        let hb = try c.expectError("jobs.heartbeat", ["id": .string(id), "leaseToken": job["leaseToken"]!])
        #expect(hb.reason == "cancelled")
        #expect(
            try c.expectError("jobs.complete", ["id": .string(id), "leaseToken": job["leaseToken"]!]).reason
                == "cancelled")
        #expect(try state(c, id) == "cancelled")
        #expect(try c.expectError("jobs.retry", ["id": .string("\(Int(id)! + 1000)")]).code == -32004)
    }

    @Test func uniqueKeyUnderConcurrentEnqueues() throws {
        let s = try TestServer()
        let ids = Box<[String]>([])
        let dups = Box(0)
        let lock = NSLock()
        let group = DispatchGroup()
        for _ in 0..<8 {
            group.enter()
            let conn = Box(try s.connect())
            Thread {
                for _ in 0..<5 {
                    if let r = try? conn.value.call(
                        "jobs.enqueue", ["queue": "q", "kind": "k", "uniqueKey": "only-one"])
                    {
                        lock.withLock {
                            ids.value.append(r["id"]?.stringValue ?? "")
                            if r["duplicate"] == true { dups.value += 1 }
                        }
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        #expect(ids.value.count == 40)
        #expect(Set(ids.value).count == 1)
        #expect(dups.value == 39)
        #expect(try s.database.sql("select count(*) from wharf.jobs where unique_key = 'only-one'") == "1")
        // Once finished, the key is free again.
        let c = try s.connect()
        let job = try #require(try leaseOne(c, queue: "q"))
        _ = try c.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        #expect(try c.call("jobs.enqueue", ["queue": "q", "kind": "k", "uniqueKey": "only-one"])["duplicate"] == false)
    }

    @Test func lockKeyRunsOneAtATime() throws {
        let s = try TestServer()
        let c = try s.connect()
        for _ in 0..<4 { _ = try enqueue(c, ["queue": "q", "kind": "k", "lockKey": "singleton"]) }
        _ = try enqueue(c, ["queue": "q", "kind": "k"])
        let workers = try (0..<3).map { _ in try s.connect() }
        var running: [JSON] = []
        for w in workers {
            running += try w.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w"])["jobs"]?.arrayValue ?? []
        }
        #expect(running.filter { $0["lockKey"] == "singleton" }.count == 1)
        #expect(running.count == 2)
        let keyed = try #require(running.first { $0["lockKey"] == "singleton" })
        _ = try c.call("jobs.complete", ["id": keyed["id"]!, "leaseToken": keyed["leaseToken"]!])
        let next = try c.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w"])["jobs"]?.arrayValue ?? []
        #expect(next.count == 1)
        #expect(next.first?["lockKey"] == "singleton")
    }

    /// A lockKey is a lock of the locks family: a client's lease on the name keeps keyed jobs waiting,
    /// a running keyed job holds the name with a fencing token, heartbeats renew it, finishing releases
    /// it (waking a queued client), and a lapsed lease loses it.
    @Test func lockKeyHoldsTheLockOfThatName() throws {
        let s = try TestServer()
        let c = try s.connect()
        let held = try c.call("locks.acquire", ["name": "report", "holder": "admin", "ttlMs": 60_000])
        #expect(held["fencingToken"] == 1)
        let keyedID = try enqueue(c, ["queue": "q", "kind": "k", "lockKey": "report"])
        _ = try enqueue(c, ["queue": "q", "kind": "k"])
        var got = try c.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w"])["jobs"]?.arrayValue ?? []
        #expect(got.count == 1)
        #expect(got.first?["lockKey"] == nil)
        #expect(got.first?["fencingToken"] == nil)

        _ = try c.call("locks.release", ["name": "report", "token": held["token"]!])
        got = try c.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w"])["jobs"]?.arrayValue ?? []
        let job = try #require(got.first)
        #expect(got.count == 1)
        #expect(job["id"] == .string(keyedID))
        #expect(job["fencingToken"] == 2)
        var lock = try c.call("locks.get", ["name": "report"])
        #expect(lock["held"] == true)
        #expect(lock["holder"] == .string("job \(keyedID)"))
        #expect(lock["fencingToken"] == 2)
        #expect(lock["expiresAt"] == job["leaseExpiresAt"])
        let refused = try c.call("locks.acquire", ["name": "report", "holder": "admin", "ttlMs": 60_000])
        #expect(refused["granted"] == false)
        #expect(refused["heldBy"] == .string("job \(keyedID)"))

        let beat = try c.call("jobs.heartbeat", ["id": job["id"]!, "leaseToken": job["leaseToken"]!, "extendMs": 90_000])
        lock = try c.call("locks.get", ["name": "report"])
        #expect(lock["expiresAt"] == beat["leaseExpiresAt"])
        #expect(lock["expiresAt"] != job["leaseExpiresAt"])

        // A client queued for the name gets it as soon as the job finishes.
        let waiting = Background(try s.connect()) { conn in
            try conn.call("locks.acquire", ["name": "report", "holder": "admin", "ttlMs": 60_000, "waitMs": 20_000])
        }
        try waitForWaiters(s, "report", 1)
        let started = Date()
        _ = try c.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        let granted = try waiting.result(timeout: 10)
        #expect(granted["granted"] == true)
        #expect(granted["fencingToken"] == 3)
        #expect(Date().timeIntervalSince(started) < 2)
        let stats = try c.call("locks.get", ["name": "report"])["stats"]
        #expect(stats?["grants"] == 3)
        #expect(stats?["releases"] == 2)
    }

    /// Keyed jobs with different keys lease together; two with one key never run at once; a lapsed
    /// lease's lock goes to the next taker (the job with that key queued in line) and the lapsed
    /// worker's heartbeat is refused.
    @Test func lockKeysAreIndependentAndLapse() throws {
        let s = try TestServer()
        let c = try s.connect()
        for key in ["a", "a", "b", "c"] { _ = try enqueue(c, ["queue": "q", "kind": "k", "lockKey": .string(key)]) }
        let got = try c.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w", "leaseMs": 1_000])["jobs"]?
            .arrayValue ?? []
        #expect(got.compactMap { $0["lockKey"]?.stringValue }.sorted() == ["a", "b", "c"])
        #expect(got.allSatisfy { $0["fencingToken"] == 1 })
        #expect(try c.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w"])["jobs"]?.arrayValue == [])

        Thread.sleep(forTimeInterval: 1.2)
        let a = try #require(got.first { $0["lockKey"] == "a" })
        // The second job with key "a" queued for the name when the lease found it held: the next taker
        // is a job with that key (LockBugTests covers clients queued behind keyed jobs).
        let again = try c.call("jobs.lease", ["queues": ["q"], "max": 10, "worker": "w"])["jobs"]?.arrayValue ?? []
        let taken = try #require(again.first { $0["lockKey"] == "a" })
        #expect(taken["fencingToken"] == 2)
        let lost = try c.expectError("jobs.heartbeat", ["id": a["id"]!, "leaseToken": a["leaseToken"]!])
        #expect(lost.data?["reason"] == "lease_lost")
        let stats = try c.call("locks.get", ["name": "a"])["stats"]
        #expect(stats?["expiriesWithoutRelease"] == 1)
    }

    @Test func pausedQueuesAreSkipped() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try enqueue(c, ["queue": "p", "kind": "k"])
        #expect(try c.call("queues.pause", ["queue": "p"])["paused"] == true)
        #expect(try leaseOne(c, queue: "p") == nil)
        let stats = try c.call("queues.stats", ["queue": "p"])
        #expect(stats["paused"] == true)
        #expect(stats["counts"]?["available"] == 1)
        let list = try c.call("queues.list")["queues"]?.arrayValue ?? []
        #expect(list.contains { $0["name"] == "p" && $0["paused"] == true })
        _ = try c.call("queues.resume", ["queue": "p"])
        #expect(try leaseOne(c, queue: "p") != nil)
    }

    @Test func longPollWakesOnEnqueueHereAndOnAnotherReplica() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let worker = try a.connect()
        let producerSame = try a.connect()
        let producerOther = try b.connect()
        for producer in [producerSame, producerOther] {
            let got = Box<(JSON?, Double)>((nil, 0))
            let started = Date()
            let w = Box(worker)
            let done = DispatchSemaphore(value: 0)
            let waiter = Thread {
                let job = try? w.value.call("jobs.lease", ["queues": ["wake"], "waitMs": 10_000, "worker": "w"])[
                    "jobs"]?.arrayValue?.first
                got.value = (job, Date().timeIntervalSince(started))
                done.signal()
            }
            waiter.start()
            Thread.sleep(forTimeInterval: 0.3)
            _ = try producer.call("jobs.enqueue", ["queue": "wake", "kind": "k"])
            #expect(done.wait(timeout: .now() + 5) == .success)
            #expect(got.value.0 != nil)
            #expect(got.value.1 < 2.0, "woke after \(got.value.1) s")
        }
        // An empty long poll ends at its deadline.
        let start = Date()
        let none = try worker.call("jobs.lease", ["queues": ["empty"], "waitMs": 300, "worker": "w"])
        #expect(none["jobs"]?.arrayValue?.isEmpty == true)
        #expect(Date().timeIntervalSince(start) >= 0.29)
    }

    @Test func twoReplicasLeaseDisjointJobs() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let c = try a.connect()
        let jobs: [JSON] = (0..<200).map { i in ["queue": "d", "kind": "k", "payload": .from(i)] }
        _ = try c.call("jobs.enqueueBatch", ["jobs": .array(jobs)])
        let leased = Box<[String]>([])
        let lock = NSLock()
        let group = DispatchGroup()
        for server in [a, b, a, b] {
            group.enter()
            let conn = Box(try server.connect())
            Thread {
                while let got = try? conn.value.call("jobs.lease", ["queues": ["d"], "max": 7, "worker": "w"])["jobs"]?
                    .arrayValue,
                    !got.isEmpty
                {
                    lock.withLock { leased.value += got.compactMap { $0["id"]?.stringValue } }
                    for j in got {
                        _ = try? conn.value.call("jobs.complete", ["id": j["id"]!, "leaseToken": j["leaseToken"]!])
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        #expect(leased.value.count == 200)
        #expect(Set(leased.value).count == 200)
        #expect(
            try a.database.sql("select count(*) from wharf.jobs where queue = 'd' and state = 'completed'") == "200")
    }

    @Test func enqueueBatchIsAllOrNothing() throws {
        let s = try TestServer()
        let c = try s.connect()
        let e = try c.expectError("jobs.enqueueBatch", ["jobs": [["queue": "b", "kind": "k"], ["queue": "b"]]])
        #expect(e.code == -32602)
        #expect(e.data?["field"] == "jobs[1].kind")
        #expect(try s.database.sql("select count(*) from wharf.jobs where queue = 'b'") == "0")
        let r = try c.call(
            "jobs.enqueueBatch", ["jobs": [["queue": "b", "kind": "k"], ["queue": "b", "kind": "k2", "priority": 5]]])
        #expect(r["jobs"]?.arrayValue?.count == 2)
        // Priority first.
        #expect(try leaseOne(c, queue: "b")?["kind"] == "k2")
    }

    @Test func listPagesInStableOrder() throws {
        let s = try TestServer()
        let c = try s.connect()
        for i in 0..<7 {
            _ = try enqueue(c, ["queue": "l", "kind": i % 2 == 0 ? "even" : "odd", "tags": [.string("t\(i % 3)")]])
        }
        var seen: [String] = []
        var cursor: JSON = .null
        repeat {
            var p: JSONObject = ["queue": "l", "limit": 3]
            if cursor != .null { p["cursor"] = cursor }
            let page = try c.call("jobs.list", .object(p))
            seen += (page["jobs"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
            cursor = page["nextCursor"] ?? .null
        } while cursor != .null
        #expect(seen.count == 7)
        #expect(seen == seen.sorted { Int($0)! > Int($1)! })
        #expect(try c.call("jobs.list", ["queue": "l", "kind": "even"])["jobs"]?.arrayValue?.count == 4)
        #expect(try c.call("jobs.list", ["queue": "l", "tag": "t0"])["jobs"]?.arrayValue?.count == 3)
        #expect(try c.expectError("jobs.list", ["state": "bogus"]).data?["field"] == "state")
    }
}

func parseTime(_ s: String) -> Date? {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.date(from: s)
}

@Suite struct RetryPolicyTests {
    /// Each field comes from the job, else the queue, else the server.
    @Test func jobThenQueueThenServerDefaults() throws {
        let s = try TestServer {
            $0.retry.initialMs = 60_000; $0.retry.jitter = 0
        }
        let c = try s.connect()
        func failDelay(_ queue: String, _ job: JSONObject = [:]) throws -> Double {
            var p: JSONObject = ["queue": .string(queue), "kind": "k"]
            for e in job.pairs { p[e.key] = e.value }
            let id = try #require(try c.call("jobs.enqueue", .object(p))["id"])
            let leased = try #require(
                try c.call("jobs.lease", ["queues": [.string(queue)], "worker": "w"])["jobs"]?.arrayValue?.first)
            let before = Date()
            let r = try c.call("jobs.fail", ["id": id, "leaseToken": leased["leaseToken"]!, "error": "x"])
            return try #require(r["nextRunAt"]?.stringValue.flatMap(parseTime)).timeIntervalSince(before)
        }
        let server = try failDelay("plain")
        #expect(server > 58 && server < 62, "server default: \(server)")
        _ = try c.call("queues.configure", ["queue": "tuned", "retry": ["initialMs": 10_000]])
        let queued = try failDelay("tuned")
        #expect(queued > 9 && queued < 11, "queue policy: \(queued)")
        let own = try failDelay("tuned", ["retry": ["initialMs": 3_000]])
        #expect(own > 2 && own < 4, "job policy: \(own)")
        _ = try c.call("queues.configure", ["queue": "tuned", "retry": nil])
        let cleared = try failDelay("tuned")
        #expect(cleared > 58, "cleared queue policy: \(cleared)")
        #expect(
            try c.expectError("queues.configure", ["queue": "tuned", "retry": ["jitter": 3]]).data?["field"]
                == "retry.jitter")
    }
}
