import Foundation
import Logging
import Testing
import WharfClient
import WharfPQ
import WharfRPC
import WharfStore

/// `idempotencyKey` on enqueues, and one bad row among merged enqueues, against a real server.
@Suite struct EnqueueIdempotencyTests {
    func jobCount(_ s: TestServer, queue: String) throws -> Int {
        Int(try s.database.sql("select count(*) from wharf.jobs where queue = '\(queue)'")) ?? -1
    }

    @Test func aRepeatedKeyAnswersWithTheFirstJobWhateverItsStateNow() throws {
        let s = try TestServer()
        let c = try s.connect()
        let first = try c.call("jobs.enqueue", ["queue": "ik", "kind": "k", "idempotencyKey": "order-1"])
        let id = try #require(first["id"]?.stringValue)
        #expect(first["duplicate"] == false)
        #expect(first["replayed"] == nil)
        let again = try c.call("jobs.enqueue", ["queue": "ik", "kind": "k", "idempotencyKey": "order-1"])
        #expect(again["id"]?.stringValue == id)
        #expect(again["replayed"] == true)
        #expect(again["duplicate"] == false, "it repeats the first call's answer")
        // Finished: a uniqueKey would let a new job in now; the idempotency key does not.
        let job = try #require(
            c.call("jobs.lease", ["queues": ["ik"], "worker": "w"])["jobs"]?.arrayValue?.first)
        _ = try c.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        let later = try c.call("jobs.enqueue", ["queue": "ik", "kind": "k", "idempotencyKey": "order-1"])
        #expect(later["id"]?.stringValue == id)
        #expect(later["state"] == "completed")
        #expect(later["replayed"] == true)
        #expect(try jobCount(s, queue: "ik") == 1)
        // Another key is another job.
        let other = try c.call("jobs.enqueue", ["queue": "ik", "kind": "k", "idempotencyKey": "order-2"])
        #expect(other["id"]?.stringValue != id)
        #expect(try jobCount(s, queue: "ik") == 2)
    }

    @Test func aKeyRemembersAUniqueKeyDuplicate() throws {
        let s = try TestServer()
        let c = try s.connect()
        let holder = try c.call("jobs.enqueue", ["queue": "iu", "kind": "k", "uniqueKey": "u"])
        let dup = try c.call(
            "jobs.enqueue", ["queue": "iu", "kind": "k", "uniqueKey": "u", "idempotencyKey": "dup-1"])
        #expect(dup["id"] == holder["id"])
        #expect(dup["duplicate"] == true)
        _ = try c.call("jobs.cancel", ["id": holder["id"]!])
        // The holder is finished, so the uniqueKey alone would make a new job; the key repeats the
        // first answer instead.
        let replay = try c.call(
            "jobs.enqueue", ["queue": "iu", "kind": "k", "uniqueKey": "u", "idempotencyKey": "dup-1"])
        #expect(replay["id"] == holder["id"])
        #expect(replay["duplicate"] == true)
        #expect(replay["replayed"] == true)
        #expect(replay["state"] == "cancelled")
        #expect(try jobCount(s, queue: "iu") == 1)
    }

    @Test func enqueueBatchKeysPerJobAndWithinTheBatch() throws {
        let s = try TestServer()
        let c = try s.connect()
        let made = try c.call(
            "jobs.enqueueBatch",
            [
                "jobs": [
                    ["queue": "ib", "kind": "k", "idempotencyKey": "b-1"],
                    ["queue": "ib", "kind": "k", "idempotencyKey": "b-2"],
                    ["queue": "ib", "kind": "k", "idempotencyKey": "b-1"],
                    ["queue": "ib", "kind": "k"],
                ]
            ])
        let jobs = try #require(made["jobs"]?.arrayValue)
        #expect(jobs.count == 4)
        #expect(jobs[0]["id"] == jobs[2]["id"], "one key in one batch is one job")
        #expect(jobs[0]["replayed"] == nil && jobs[2]["replayed"] == true)
        #expect(jobs[0]["id"] != jobs[1]["id"])
        #expect(try jobCount(s, queue: "ib") == 3)
        // The whole batch again: the keyed jobs repeat, the unkeyed one is made again.
        let again = try #require(
            c.call(
                "jobs.enqueueBatch",
                [
                    "jobs": [
                        ["queue": "ib", "kind": "k", "idempotencyKey": "b-1"],
                        ["queue": "ib", "kind": "k", "idempotencyKey": "b-2"],
                    ]
                ])["jobs"]?.arrayValue)
        #expect(again.map { $0["id"] } == [jobs[0]["id"], jobs[1]["id"]])
        #expect(again.allSatisfy { $0["replayed"] == true })
        #expect(try jobCount(s, queue: "ib") == 3)
    }

    /// Many calls with one new key at once, on separate connections (so several statements race):
    /// one job, and every call answers with it.
    @Test func concurrentCallsWithOneNewKeyMakeOneJob() throws {
        let s = try TestServer()
        let ids = Box<[String]>([])
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            guard let c = try? s.connect() else { return }
            for round in 0..<5 {
                let r = try? c.call(
                    "jobs.enqueue", ["queue": "ir", "kind": "k", "idempotencyKey": .string("race-\(round)")])
                if let id = r?["id"]?.stringValue {
                    lock.lock()
                    ids.value.append("\(round):\(id)")
                    lock.unlock()
                }
            }
        }
        #expect(ids.value.count == 80)
        #expect(Set(ids.value).count == 5, "\(Set(ids.value))")
        #expect(try jobCount(s, queue: "ir") == 5)
    }

    @Test func keyIsValidated() throws {
        let s = try TestServer()
        let c = try s.connect()
        let empty = try c.expectError("jobs.enqueue", ["queue": "iv", "kind": "k", "idempotencyKey": ""])
        #expect(empty.data?["field"] == "idempotencyKey")
        let long = try c.expectError(
            "jobs.enqueue", ["queue": "iv", "kind": "k", "idempotencyKey": .string(String(repeating: "x", count: 401))])
        #expect(long.data?["field"] == "idempotencyKey")
        let batch = try c.expectError(
            "jobs.enqueueBatch", ["jobs": [["queue": "iv", "kind": "k", "idempotencyKey": 7]]])
        #expect(batch.data?["field"] == "jobs[0].idempotencyKey")
    }

    /// Single enqueues that arrive together share one statement; a row PostgreSQL refuses (here a
    /// trigger, as a CHECK added later would) fails only its own call. Before the split every call
    /// of the statement failed with -32603.
    @Test func aBadRowFailsOnlyItsOwnCall() throws {
        let s = try TestServer()
        try s.database.sql(
            """
            create function refuse_poison_kind() returns trigger language plpgsql as
                $$ begin raise exception 'refused kind %', new.kind using errcode = 'check_violation'; end $$;
            create trigger refuse_poison before insert on wharf.jobs
                for each row when (new.kind = 'poison') execute function refuse_poison_kind();
            """)
        let c = try s.connect()
        let kinds = (0..<40).map { $0 == 17 ? "poison" : "k\($0)" }
        var lines = ""
        for (i, kind) in kinds.enumerated() {
            lines += #"{"jsonrpc":"2.0","id":\#(i + 1),"method":"jobs.enqueue","params":{"queue":"bad","kind":"\#(kind)"}}"#
            lines += "\n"
        }
        // One write: the calls arrive in one loop turn and are merged into one statement.
        try c.sendRaw(Array(lines.utf8))
        var replies: [Int64: JSON] = [:]
        while replies.count < kinds.count {
            let m = try c.readMessage()
            if let id = m["id"]?.intValue { replies[id] = m }
        }
        for (i, kind) in kinds.enumerated() {
            let reply = try #require(replies[Int64(i + 1)])
            if kind == "poison" {
                #expect(reply["error"] != nil, "the refused row's call fails")
            } else {
                #expect(reply["result"]?["id"]?.stringValue != nil, "call \(i + 1): \(reply.text)")
            }
        }
        #expect(try jobCount(s, queue: "bad") == 39)
    }

    /// The chore deletes keys past their retention and keeps younger ones.
    @Test func oldKeysArePruned() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(
            """
            insert into wharf.job_idempotency_keys (key, job_id, created, created_at) values
                ('old', 1, true, now() - interval '25 hours'), ('young', 2, true, now() - interval '23 hours')
            """)
        let pruned: Int = try onLoop { loop, finish in
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let pool = PQPool(loop: loop, conninfo: db.conninfo, size: 1, logger: logger)
            let store = Store(pool: pool, logger: logger)
            pool.start()
            pool.whenReady {
                store.pruneIdempotencyKeys(olderThanMs: Store.idempotencyRetentionMs) { r in
                    pool.close()
                    finish((try? r.get()) ?? -1)
                }
            }
        }
        #expect(pruned == 1)
        #expect(try db.sql("select string_agg(key, ',') from wharf.job_idempotency_keys") == "young")
    }
}
