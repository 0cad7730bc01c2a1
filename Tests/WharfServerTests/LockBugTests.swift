import Foundation
import Testing
import WharfClient
import WharfCore
import WharfRPC
import WharfStore

/// Locks that jobs and schedules hold: their release, how `locks.get` shows them, the runs a fire that
/// lost its lock counts, and keyed jobs in the line of lock waiters. Real servers over TCP, real
/// PostgreSQL.
@Suite struct LockBugTests {
    func upsert(_ c: BlockingConnection, _ fields: JSONObject) throws -> JSON {
        var f = fields
        if f["target"] == nil { f["target"] = ["job": ["queue": "cron", "kind": "tick"]] }
        return try c.call("cron.upsert", .object(f))
    }

    func enqueue(_ c: BlockingConnection, _ fields: JSONObject) throws -> String {
        try #require(c.call("jobs.enqueue", .object(fields))["id"]?.stringValue)
    }

    func lease(_ c: BlockingConnection, _ queue: String, waitMs: Int = 0) throws -> JSON? {
        try c.call(
            "jobs.lease", ["queues": [.string(queue)], "leaseMs": 30_000, "waitMs": .from(waitMs), "worker": "w"]
        )["jobs"]?.arrayValue?.first
    }

    /// Waits (up to 10 s) for schedule `name` to have made a job, and returns the job's id.
    func firstJob(_ db: TestDatabase, _ name: String) throws -> String {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let id = try db.sql("select min(id) from wharf.jobs where schedule_name = '\(name)'")
            if !id.isEmpty { return id }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestFailure("schedule \(name) made no job")
    }

    // MARK: A dead job releases its schedule's lock

    /// A job of an overlap "skip" schedule that fails for good (dead) lets go of `cron:<name>`, as a
    /// completed or cancelled one does; the schedule is paused, so no later fire takes the lock over.
    @Test func aDeadJobReleasesTheScheduleLock() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try upsert(c, [
            "name": "doomed", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "doomed", "kind": "k", "maxAttempts": 1]],
        ])
        let id = try firstJob(s.database, "doomed")
        _ = try c.call("cron.pause", ["name": "doomed"])
        let job = try #require(try lease(c, "doomed"))
        #expect(job["id"] == .string(id))
        var lock = try c.call("locks.get", ["name": "cron:doomed"])
        #expect(lock["held"] == true)
        #expect(lock["holder"] == .string("job \(id)"))
        _ = try c.call(
            "jobs.fail", ["id": job["id"]!, "leaseToken": job["leaseToken"]!, "error": ["message": "no"], "retryable": false])
        #expect(try c.call("jobs.get", ["id": .string(id)])["state"] == "dead")
        lock = try c.call("locks.get", ["name": "cron:doomed"])
        #expect(lock["held"] == false)
        #expect(lock["stats"]?["releases"] == 1)
        // And a client may take it at once.
        #expect(try c.call("locks.acquire", ["name": "cron:doomed", "holder": "ops", "ttlMs": 10_000])["granted"] == true)
    }

    /// The migration releases the schedule locks that jobs which died before it still hold.
    @Test func theMigrationReleasesLocksOfDeadJobs() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        // What the old trigger left behind: a dead job of a skip schedule still holding its lock.
        try db.sql(
            """
            insert into wharf.jobs (id, queue, kind, payload, state, schedule_name, schedule_fire_at, hold_token,
                                    finished_at)
            values (41, 'q', 'k', 'null', 'dead', 'leaked', now(), 'tok-41', now());
            insert into wharf.jobs (id, queue, kind, payload, state, schedule_name, schedule_fire_at, hold_token)
            values (42, 'q', 'k', 'null', 'available', 'alive', now(), 'tok-42');
            insert into wharf.locks (name, holder, token, fencing_token, acquired_at, expires_at, grants)
            values ('cron:leaked', 'job 41', 'tok-41', 3, now(), now() + interval '100 years', 3),
                   ('cron:alive', 'job 42', 'tok-42', 5, now(), now() + interval '100 years', 5);
            delete from wharf.schema_migrations where version = 14;
            """)
        let applied = try migrate(db.conninfo).get()
        #expect(applied == [14])
        #expect(try db.sql("select holder is null, fencing_token from wharf.locks where name = 'cron:leaked'") == "t|3")
        #expect(try db.sql("select holder from wharf.locks where name = 'cron:alive'") == "job 42")
    }

    // MARK: stats.runs

    /// A fire whose claim saw `cron:<name>` free, but which found it taken by a client when it came to
    /// take it (the lock row is held by a transaction between the two, which then grants it to a
    /// client), makes no job and does not count as a run.
    @Test func aFireThatLostTheLockIsNotARun() throws {
        let s = try TestServer()
        let c = try s.connect()
        try s.database.sql("insert into wharf.locks (name) values ('cron:race')")
        // Holds the lock row from before the first fire until after it, then hands the lock to a client.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", s.database.conninfo, "-c",
            """
            begin;
            select 1 from wharf.locks where name = 'cron:race' for update;
            select pg_sleep(2.5);
            update wharf.locks set holder = 'maintenance', token = 'm', fencing_token = fencing_token + 1,
                acquired_at = now(), expires_at = now() + interval '1 hour', grants = grants + 1
            where name = 'cron:race';
            commit;
            """,
        ]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        Thread.sleep(forTimeInterval: 0.3)
        _ = try upsert(c, [
            "name": "race", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "race", "kind": "k"]],
        ])
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try s.database.sql("select count(*) from wharf.jobs where schedule_name = 'race'") == "0")
        let got = try c.call("cron.get", ["name": "race"])
        #expect(got["stats"]?["runs"] == 0)
        #expect((got["stats"]?["skippedOverlap"]?.intValue ?? 0) >= 1)
        #expect(try c.call("locks.get", ["name": "cron:race"])["holder"] == "maintenance")
    }

    // MARK: locks.get on locks that jobs, deliveries and schedules hold

    /// A schedule's lock shows the job (or delivery) and schedule holding it and no expiry (it lasts
    /// until the job ends); a keyed job's lock shows the job and its lease's real expiry; a client's
    /// lock shows neither.
    @Test func locksShowWhatHoldsThem() throws {
        let s = try TestServer { $0.webhooks.allowPrivate = true }
        let c = try s.connect()
        _ = try upsert(c, [
            "name": "shown", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "shown", "kind": "k"]],
        ])
        let id = try firstJob(s.database, "shown")
        let held = try c.call("locks.get", ["name": "cron:shown"])
        #expect(held["held"] == true)
        #expect(held["holder"] == .string("job \(id)"))
        #expect(held["owner"] == ["job": .string(id), "schedule": "shown"])
        #expect(held["expiresAt"] == nil)
        #expect(held["acquiredAt"] != nil)
        let listed = try c.call("locks.list", ["prefix": "cron:shown"])["locks"]?.arrayValue?.first
        #expect(listed == held)

        // A webhook target's delivery.
        let port = try TestEnvironment.freePort()
        let endpoint = try c.call("webhooks.register", ["url": .string("http://127.0.0.1:\(port)/hook"), "events": []])
        _ = try upsert(c, [
            "name": "hooked", "expression": "* * * * * *", "overlap": "skip",
            "target": ["webhook": ["endpointId": endpoint["id"]!, "event": "tick"]],
        ])
        let deadline = Date().addingTimeInterval(10)
        var delivery = ""
        while delivery.isEmpty && Date() < deadline {
            delivery = try s.database.sql("select min(id) from wharf.webhook_deliveries where hold_lock = 'cron:hooked'")
            Thread.sleep(forTimeInterval: 0.05)
        }
        let hooked = try c.call("locks.get", ["name": "cron:hooked"])
        #expect(hooked["owner"] == ["delivery": .string(delivery), "schedule": "hooked"])
        #expect(hooked["expiresAt"] == nil)

        // A keyed job: its lease's expiry is the lock's.
        let keyed = try enqueue(c, ["queue": "keyed", "kind": "k", "lockKey": "report"])
        let job = try #require(try lease(c, "keyed"))
        let report = try c.call("locks.get", ["name": "report"])
        #expect(report["owner"] == ["job": .string(keyed)])
        #expect(report["expiresAt"] == job["leaseExpiresAt"])

        // A client's lock.
        _ = try c.call("locks.acquire", ["name": "mine", "holder": "ops", "ttlMs": 10_000])
        let mine = try c.call("locks.get", ["name": "mine"])
        #expect(mine["owner"] == nil)
        #expect(mine["expiresAt"] != nil)
    }

    // MARK: Keyed jobs in the line

    /// Lock clients that keep the name always queued (each releases after a short hold and queues again
    /// at once) do not starve a job with that lockKey: it runs within a few seconds, in its turn.
    @Test func keyedJobsAreNotStarvedByQueuedClients() throws {
        let s = try TestServer()
        let c = try s.connect()
        let stop = Box(false)
        let lock = NSLock()
        let grants = Box(0)
        for n in 0..<3 {
            let conn = Box(try s.connect())
            Thread {
                while !lock.withLock({ stop.value }) {
                    guard
                        let got = try? conn.value.call(
                            "locks.acquire",
                            ["name": "busy", "holder": .string("client \(n)"), "ttlMs": 5_000, "waitMs": 20_000]),
                        got["granted"] == true
                    else { continue }
                    lock.withLock { grants.value += 1 }
                    Thread.sleep(forTimeInterval: 0.05)
                    _ = try? conn.value.call("locks.release", ["name": "busy", "token": got["token"]!])
                }
            }.start()
        }
        defer { lock.withLock { stop.value = true } }
        try waitForWaiters(s, "busy", 2)
        let id = try enqueue(c, ["queue": "keyed", "kind": "k", "lockKey": "busy"])
        let started = Date()
        var got: JSON?
        while got == nil && Date().timeIntervalSince(started) < 8 {
            got = try lease(c, "keyed", waitMs: 1_000)
        }
        let job = try #require(got, "the keyed job never got its lock while clients kept the name queued")
        #expect(job["id"] == .string(id))
        #expect(lock.withLock { grants.value } >= 1)
        // While it runs it holds the name; the clients get it back when it completes.
        #expect(try c.call("locks.get", ["name": "busy"])["holder"] == .string("job \(id)"))
        let before = lock.withLock { grants.value }
        _ = try c.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        let after = Date().addingTimeInterval(5)
        while lock.withLock({ grants.value }) == before && Date() < after { Thread.sleep(forTimeInterval: 0.02) }
        #expect(lock.withLock { grants.value } > before)
    }

    /// An idle worker long-polling a queue gets the keyed job waiting for a lock within about 100 ms of
    /// the lock's release, not at its next poll. Five rounds.
    @Test func aReleaseWakesTheLongPollingWorker() throws {
        let s = try TestServer()
        let c = try s.connect()
        var latencies: [Double] = []
        for round in 0..<5 {
            let held = try c.call("locks.acquire", ["name": "gate", "holder": "ops", "ttlMs": 60_000])
            #expect(held["granted"] == true)
            let id = try enqueue(c, ["queue": "gated", "kind": "k", "lockKey": "gate"])
            // The worker's connection stays open until it completes the job (a closed one gives it back).
            let wc = try s.connect()
            let worker = Background(wc) { conn in
                try conn.call("jobs.lease", ["queues": ["gated"], "leaseMs": 30_000, "waitMs": 10_000, "worker": "w"])
            }
            // Long enough for the worker to park after its first look found the job blocked.
            Thread.sleep(forTimeInterval: 0.3 + 0.07 * Double(round))
            let released = Date()
            _ = try c.call("locks.release", ["name": "gate", "token": held["token"]!])
            let got = try worker.result(timeout: 15)
            latencies.append(Date().timeIntervalSince(released))
            let job = try #require(got["jobs"]?.arrayValue?.first)
            #expect(job["id"] == .string(id))
            _ = try wc.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        }
        #expect(latencies.allSatisfy { $0 < 0.15 }, "pickup after release: \(latencies.map { Int($0 * 1000) }) ms")
    }

    /// A lock that lapses (its holder neither renews nor releases) wakes an idle worker long-polling for
    /// a keyed job that waits for it, on the replica that granted the lock or another one, within about
    /// 100 ms of the expiry rather than at the worker's next re-check (every 500 ms); a client waiting
    /// in `locks.acquire` for another lapsing lock gets it as promptly. Six rounds, alternating replicas.
    @Test func anExpiryWakesTheLongPollingWorkerAndTheWaiters() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let c = try a.connect()
        var workerLatencies: [Int64] = []
        var waiterLatencies: [Int64] = []
        func expiresAt(_ grant: JSON) throws -> Int64 {
            try #require(grant["granted"] == true)
            let at = try #require(grant["expiresAt"]?.stringValue)
            return try #require(Timestamp.parse(at))
        }
        @Sendable func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
        for round in 0..<6 {
            let there = round % 2 == 0 ? a : b
            let ttl = 400 + 40 * round
            let keyed = "lapse-job-\(round)"
            let awaited = "lapse-client-\(round)"
            let jobLockEnds = try expiresAt(
                c.call("locks.acquire", ["name": .string(keyed), "holder": "gone", "ttlMs": .from(ttl)]))
            let clientLockEnds = try expiresAt(
                c.call("locks.acquire", ["name": .string(awaited), "holder": "gone", "ttlMs": .from(ttl)]))
            let id = try enqueue(c, ["queue": "lapsed", "kind": "k", "lockKey": .string(keyed)])
            // The worker's connection stays open until it completes the job (a closed one gives it back).
            let wc = try there.connect()
            let worker = Background(wc) { conn in
                let got = try conn.call(
                    "jobs.lease", ["queues": ["lapsed"], "leaseMs": 30_000, "waitMs": 10_000, "worker": "w"])
                return ["reply": got, "at": .from(nowMs())]
            }
            let waiter = Background(try there.connect()) { conn in
                let got = try conn.call(
                    "locks.acquire", ["name": .string(awaited), "holder": "next", "ttlMs": 10_000, "waitMs": 10_000])
                return ["reply": got, "at": .from(nowMs())]
            }
            let leased = try worker.result(timeout: 15)
            let job = try #require(leased["reply"]?["jobs"]?.arrayValue?.first, "round \(round): no job")
            #expect(job["id"] == .string(id))
            workerLatencies.append(try #require(leased["at"]?.intValue) - jobLockEnds)
            let acquired = try waiter.result(timeout: 15)
            #expect(acquired["reply"]?["granted"] == true)
            waiterLatencies.append(try #require(acquired["at"]?.intValue) - clientLockEnds)
            _ = try wc.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        }
        // One round of six may land late on a loaded machine (164 ms once in CI); wakes that came only
        // from the 500 ms re-check would put several rounds past 150 ms, or one past 400.
        func prompt(_ ms: [Int64]) -> Bool { ms.filter { $0 >= 150 }.count <= 1 && ms.allSatisfy { $0 < 400 } }
        #expect(prompt(workerLatencies), "keyed lease after the expiry: \(workerLatencies) ms")
        #expect(prompt(waiterLatencies), "locks.acquire after the expiry: \(waiterLatencies) ms")
    }
}
