import Foundation
import Testing
import WharfClient
import WharfCore
import WharfRPC

@testable import WharfServer
@testable import WharfStore

/// Cron schedules over real TCP against real servers and PostgreSQL.
@Suite struct CronServerTests {
    func upsert(_ c: BlockingConnection, _ fields: JSONObject) throws -> JSON {
        var f = fields
        if f["target"] == nil { f["target"] = ["job": ["queue": "cron", "kind": "tick", "payload": ["n": 1]]] }
        return try c.call("cron.upsert", .object(f))
    }

    /// (nominal fire ms, job id) of the jobs schedule `name` made, by fire time.
    func fires(_ db: TestDatabase, _ name: String) throws -> [Int64] {
        try db.sql(
            """
            select floor(extract(epoch from schedule_fire_at) * 1000)::bigint from wharf.jobs
            where schedule_name = '\(name)' order by schedule_fire_at
            """
        ).split(separator: "\n").compactMap { Int64($0) }
    }

    /// Makes every replica look for due schedules now (as an upsert on any replica does).
    func poke(_ db: TestDatabase) throws { try db.sql("select pg_notify('wharf_wake', 'cron:0')") }

    @Test func firesEverySecondOncePerFireTime() throws {
        let s = try TestServer()
        let c = try s.connect()
        let created = try upsert(c, ["name": "tick", "expression": "* * * * * *"])
        #expect(created["created"] == true)
        #expect(created["description"] == "Every second")
        #expect(created["nextFires"]?.arrayValue?.count == 5)
        Thread.sleep(forTimeInterval: 3.3)
        let got = try fires(s.database, "tick")
        #expect(got.count >= 2)
        // Consecutive whole seconds: none missing, none twice.
        for (a, b) in zip(got, got.dropFirst()) { #expect(b - a == 1000) }
        #expect(got.allSatisfy { $0 % 1000 == 0 })
        let job = try #require(
            try c.call("jobs.lease", ["queues": ["cron"], "worker": "w", "leaseMs": 30_000])["jobs"]?.arrayValue?.first)
        #expect(job["schedule"]?["name"] == "tick")
        #expect(job["schedule"]?["fireAt"]?.stringValue?.hasSuffix(".000Z") == true)
        #expect(job["payload"]?["n"] == 1)
        let after = try c.call("cron.get", ["name": "tick"])
        #expect((after["stats"]?["runs"]?.intValue ?? 0) >= 2)
        #expect(after["lastFire"]?["jobId"]?.stringValue != nil)
        #expect((after["lastFire"]?["lagMs"]?.intValue ?? -1) >= 0)
    }

    @Test func invalidDefinitionsAreRefusedClearly() throws {
        let s = try TestServer()
        let c = try s.connect()
        func refused(_ fields: JSONObject) throws -> RPCError {
            var f = fields
            if f["name"] == nil { f["name"] = "bad" }
            if f["target"] == nil { f["target"] = ["job": ["queue": "q", "kind": "k"]] }
            return try c.expectError("cron.upsert", .object(f))
        }
        let never = try refused(["expression": "0 0 30 2 *"])
        #expect(never.code == -32602)
        #expect(never.data?["field"] == "expression")
        #expect(try refused(["expression": "61 * * * *"]).data?["field"] == "expression")
        #expect(try refused(["expression": "* * * * *", "timezone": "Mars/Olympus"]).data?["field"] == "timezone")
        #expect(try refused(["expression": "* * * * *", "everyMs": 1000]).data?["field"] == "everyMs")
        #expect(try refused([:]).data?["field"] == "expression")
        #expect(try refused(["expression": "@daily", "overlap": "never"]).data?["field"] == "overlap")
        #expect(
            try refused(["expression": "@daily", "target": ["job": ["queue": "q", "kind": "k", "delayMs": 5]]]).data?[
                "field"] == "target.job.delayMs")
        #expect(try refused(["expression": "@daily", "target": ["job": ["queue": "q"]]]).data?["field"] == "target.job.kind")
        #expect(try c.expectError("cron.get", ["name": "nope"]).code == -32004)
        #expect(try s.database.sql("select count(*) from wharf.schedules") == "0")
    }

    @Test func previewFollowsTheDocumentedDSTRule() throws {
        let s = try TestServer()
        let c = try s.connect()
        func preview(_ fields: JSONObject) throws -> [String] {
            try c.call("cron.preview", .object(fields))["fires"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        // New York springs forward at 2026-03-08 02:00 EST (07:00Z): 02:30 does not exist that day.
        let gap = try preview(["expression": "30 2 * * *", "timezone": "America/New_York", "from": "2026-03-07T12:00:00Z", "count": 3])
        #expect(gap == ["2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z", "2026-03-10T06:30:00.000Z"])
        let gapSkip = try preview([
            "expression": "30 2 * * *", "timezone": "America/New_York", "from": "2026-03-07T12:00:00Z", "count": 1,
            "dstGap": "skip",
        ])
        #expect(gapSkip == ["2026-03-09T06:30:00.000Z"])
        // It falls back at 2026-11-01 02:00 EDT (06:00Z): 01:30 happens twice.
        let fold = try preview(["expression": "30 1 * * *", "timezone": "America/New_York", "from": "2026-10-31T12:00:00Z", "count": 2])
        #expect(fold == ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"])
        let foldTwice = try preview([
            "expression": "30 1 * * *", "timezone": "America/New_York", "from": "2026-10-31T12:00:00Z", "count": 2,
            "dstFold": "twice",
        ])
        #expect(foldTwice == ["2026-11-01T05:30:00.000Z", "2026-11-01T06:30:00.000Z"])
        // A wall-clock schedule has both copies of the repeated hour.
        let hourly = try preview(["expression": "0 * * * *", "timezone": "America/New_York", "from": "2026-11-01T04:30:00Z", "count": 3])
        #expect(hourly == ["2026-11-01T05:00:00.000Z", "2026-11-01T06:00:00.000Z", "2026-11-01T07:00:00.000Z"])
        let description = try c.call("cron.preview", ["expression": "30 9 * * MON-FRI"])["description"]?.stringValue
        #expect(description?.contains("09:30") == true)
        #expect(try c.expectError("cron.preview", ["expression": "0 0 31 4 *"]).code == -32602)
    }

    @Test func missedPoliciesAfterDowntime() throws {
        let s = try TestServer()
        let c = try s.connect()
        for policy in ["skip", "runOnce", "runAll"] {
            // Hourly, so that no regular fire happens while the test looks.
            _ = try upsert(c, ["name": .string(policy), "expression": "0 * * * *", "missed": .string(policy)])
        }
        // As if every replica had been down for ten hours: each schedule's next fire is long past.
        try s.database.sql(
            """
            update wharf.schedules
            set next_fire_at = date_trunc('hour', now()) - interval '10 hours', claimed_until = null
            """)
        try poke(s.database)
        // The NOTIFY wakes the scheduler at once; the 10-second safety check covers a listening
        // connection that is not up yet on a loaded machine.
        let deadline = Date().addingTimeInterval(15)
        while try fires(s.database, "runOnce").isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        Thread.sleep(forTimeInterval: 0.5)
        let skip = try c.call("cron.get", ["name": "skip"])
        #expect(try fires(s.database, "skip").count <= 1)  // only a fire inside the window, if any
        #expect((skip["stats"]?["missed"]?.intValue ?? 0) >= 9)
        let once = try fires(s.database, "runOnce")
        #expect(once.count == 1)
        let all = try fires(s.database, "runAll")
        #expect(all.count >= 10)
        for (a, b) in zip(all, all.dropFirst()) { #expect(b - a == 3_600_000) }
        for name in ["skip", "runOnce", "runAll"] {
            let next = try #require(try c.call("cron.get", ["name": .string(name)])["nextFireAt"]?.stringValue)
            #expect(next > Timestamp.formatNow(), "\(name) should next fire in the future")
        }
    }

    @Test func overlapSkipWaitsForTheRunningJob() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try upsert(c, [
            "name": "single", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "single", "kind": "k"]],
        ])
        Thread.sleep(forTimeInterval: 2.5)
        // Nobody ran the first job, so every later fire was skipped.
        #expect(try fires(s.database, "single").count == 1)
        let stats = try c.call("cron.get", ["name": "single"])["stats"]
        #expect((stats?["skippedOverlap"]?.intValue ?? 0) >= 1)
        let job = try #require(
            try c.call("jobs.lease", ["queues": ["single"], "worker": "w", "leaseMs": 30_000])["jobs"]?.arrayValue?.first)
        _ = try c.call("jobs.complete", ["id": job["id"]!, "leaseToken": job["leaseToken"]!])
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try fires(s.database, "single").count >= 2)
    }

    /// Overlap "skip" is the lock `cron:<name>`: each fire's job holds it until it finishes, and a
    /// client holding it (a maintenance window) holds the schedule's fires back the same way.
    @Test func overlapSkipHoldsTheScheduleLock() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try upsert(c, [
            "name": "nightly", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "nightly", "kind": "k"]],
        ])
        Thread.sleep(forTimeInterval: 1.5)
        let first = try #require(
            try c.call("jobs.lease", ["queues": ["nightly"], "worker": "w", "leaseMs": 30_000])["jobs"]?.arrayValue?.first)
        var lock = try c.call("locks.get", ["name": "cron:nightly"])
        #expect(lock["held"] == true)
        #expect(lock["holder"] == .string("job \(first["id"]?.stringValue ?? "")"))
        #expect(lock["fencingToken"] == 1)
        _ = try c.call("jobs.complete", ["id": first["id"]!, "leaseToken": first["leaseToken"]!])
        lock = try c.call("locks.get", ["name": "cron:nightly"])
        #expect(lock["held"] == false || lock["fencingToken"] == 2, "released, or the next fire took it")

        // A client takes the schedule's lock: no fire while it holds it.
        let take: JSON = ["name": "cron:nightly", "holder": "maintenance", "ttlMs": 60_000]
        var window = try c.call("locks.acquire", take)
        if window["granted"] != true {
            // The next fire came first and its job holds the lock: finish that run, then take it.
            let next = try #require(
                try c.call("jobs.lease", ["queues": ["nightly"], "worker": "w"])["jobs"]?.arrayValue?.first)
            _ = try c.call("jobs.complete", ["id": next["id"]!, "leaseToken": next["leaseToken"]!])
            window = try c.call("locks.acquire", take)
        }
        #expect(window["granted"] == true)
        let before = try fires(s.database, "nightly").count
        Thread.sleep(forTimeInterval: 2.5)
        #expect(try fires(s.database, "nightly").count == before)
        lock = try c.call("locks.get", ["name": "cron:nightly"])
        #expect(lock["holder"] == "maintenance")

        _ = try c.call("locks.release", ["name": "cron:nightly", "token": window["token"]!])
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try fires(s.database, "nightly").count == before + 1)
        lock = try c.call("locks.get", ["name": "cron:nightly"])
        #expect(lock["held"] == true)
        #expect(lock["holder"]?.stringValue?.hasPrefix("job ") == true)
        #expect((lock["fencingToken"]?.intValue ?? 0) > (window["fencingToken"]?.intValue ?? 0))
        // Cancelling the job frees the schedule too.
        let id = try #require(lock["holder"]?.stringValue?.dropFirst(4)).description
        _ = try c.call("jobs.cancel", ["id": .string(id)])
        lock = try c.call("locks.get", ["name": "cron:nightly"])
        #expect(lock["holder"] != .string("job \(id)"))
    }

    /// A schedule's lock held for a job that does not exist (its row gone without the trigger, say)
    /// does not hold the schedule back for ever.
    @Test func aScheduleLockWhoseJobIsGoneFreesItself() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try s.database.sql(
            """
            insert into wharf.locks (name, holder, token, fencing_token, acquired_at, expires_at, grants)
            values ('cron:orphaned', 'job 999999999', 'lost', 7, now(), now() + interval '100 years', 7)
            """)
        _ = try upsert(c, [
            "name": "orphaned", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "orphaned", "kind": "k"]],
        ])
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try fires(s.database, "orphaned").count == 1)
        let lock = try c.call("locks.get", ["name": "cron:orphaned"])
        #expect(lock["holder"]?.stringValue?.hasPrefix("job ") == true)
        #expect(lock["holder"] != "job 999999999")
        #expect(lock["fencingToken"] == 8)
    }

    /// Overlap "skip" with a webhook target: the fire's delivery holds `cron:<name>` until it succeeds
    /// or fails for good.
    @Test func overlapSkipHoldsTheLockWhileTheDeliveryIsUnfinished() throws {
        let s = try TestServer { $0.webhooks.allowPrivate = true }
        let c = try s.connect()
        // Nothing listens there: the delivery keeps failing and stays pending between retries.
        let port = try TestEnvironment.freePort()
        let endpoint = try c.call("webhooks.register", ["url": .string("http://127.0.0.1:\(port)/hook"), "events": []])
        let endpointID = try #require(endpoint["id"])
        _ = try upsert(c, [
            "name": "hooked", "expression": "* * * * * *", "overlap": "skip",
            "target": ["webhook": ["endpointId": endpointID, "event": "tick"]],
        ])
        func deliveries() throws -> Int {
            Int(try s.database.sql("select count(*) from wharf.webhook_deliveries where hold_lock = 'cron:hooked'")) ?? -1
        }
        Thread.sleep(forTimeInterval: 2.5)
        #expect(try deliveries() == 1)
        let lock = try c.call("locks.get", ["name": "cron:hooked"])
        #expect(lock["held"] == true)
        #expect(lock["holder"]?.stringValue?.hasPrefix("delivery ") == true)
        #expect((try c.call("cron.get", ["name": "hooked"])["stats"]?["skippedOverlap"]?.intValue ?? 0) >= 1)
        // It fails for good: the lock is released and the next fire goes out.
        _ = try s.database.sql("update wharf.webhook_deliveries set state = 'failed' where hold_lock = 'cron:hooked'")
        let after = try c.call("locks.get", ["name": "cron:hooked"])
        #expect(after["held"] == false || after["holder"] != lock["holder"], "released, or the next fire took it")
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try deliveries() == 2)
    }

    /// Concurrent upserts share statements: every one gets its own row back, and upserts of one name
    /// land one after another (each sees the version before it).
    @Test func concurrentUpsertsAreBatchedAndEachAnswered() throws {
        let s = try TestServer()
        let lock = NSLock()
        let results = Box<[String: [JSON]]>([:])
        let errors = Box<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 24) { k in
            do {
                let c = try s.connect()
                for n in 0..<5 {
                    let name = k % 3 == 0 ? "shared" : "own-\(k)-\(n)"
                    let r = try c.call(
                        "cron.upsert",
                        ["name": .string(name), "expression": .string("\(n) 3 * * *"), "timezone": "Europe/Paris",
                         "target": ["job": ["queue": "q", "kind": .string("k\(k)")]]])
                    lock.withLock { results.value[name, default: []].append(r) }
                }
            } catch {
                lock.withLock { errors.value.append("\(error)") }
            }
        }
        #expect(errors.value.isEmpty, "\(errors.value)")
        #expect(results.value.count == 1 + 16 * 5)
        for (name, replies) in results.value where name != "shared" {
            #expect(replies.count == 1)
            #expect(replies[0]["name"] == .string(name))
            #expect(replies[0]["created"] == true)
            #expect(replies[0]["version"] == 1)
            let minute = name.split(separator: "-").last.map(String.init) ?? ""
            #expect(replies[0]["expression"] == .string("\(minute) 3 * * *"))
        }
        let shared = results.value["shared"] ?? []
        #expect(shared.count == 8 * 5)
        #expect(shared.filter { $0["created"] == true }.count == 1)
        #expect(Set(shared.compactMap { $0["version"]?.intValue }) == Set(1...40))
        #expect(try s.database.sql("select version from wharf.schedules where name = 'shared'") == "40")
        #expect(try s.database.sql("select count(*) from wharf.schedules") == "81")
    }

    @Test func schedulePatchChangesWhatTheNextRunSees() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try upsert(c, [
            "name": "sync", "expression": "* * * * * *", "overlap": "skip",
            "target": ["job": ["queue": "sync", "kind": "sync", "payload": ["cursor": 1, "connector": "a"]]],
        ])
        Thread.sleep(forTimeInterval: 1.5)
        let first = try #require(
            try c.call("jobs.lease", ["queues": ["sync"], "worker": "w", "leaseMs": 30_000])["jobs"]?.arrayValue?.first)
        #expect(first["payload"]?["cursor"] == 1)
        let done = try c.call(
            "jobs.complete",
            ["id": first["id"]!, "leaseToken": first["leaseToken"]!, "schedulePatch": ["name": "sync", "payload": ["cursor": 2]]])
        #expect(done["state"] == "completed")
        #expect(done["schedulePatched"] == true)
        let template = try c.call("cron.get", ["name": "sync"])["target"]?["job"]?["payload"]
        #expect(template == ["cursor": 2, "connector": "a"])
        Thread.sleep(forTimeInterval: 1.5)
        let second = try #require(
            try c.call("jobs.lease", ["queues": ["sync"], "worker": "w", "leaseMs": 30_000, "waitMs": 2000])["jobs"]?
                .arrayValue?.first)
        #expect(second["payload"]?["cursor"] == 2)
        // A stale token completes nothing and patches nothing.
        let refused = try c.expectError(
            "jobs.complete",
            ["id": first["id"]!, "leaseToken": "forged", "schedulePatch": ["name": "sync", "payload": ["cursor": 99]]])
        #expect(refused.code == -32009)
        #expect(try c.call("cron.get", ["name": "sync"])["target"]?["job"]?["payload"]?["cursor"] == 2)
    }

    @Test func pauseResumeTriggerListRemove() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try upsert(c, ["name": "report", "expression": "0 3 * * *", "timezone": "Europe/Berlin"])
        _ = try upsert(c, ["name": "report-2", "everyMs": 3_600_000])
        let replaced = try upsert(c, ["name": "report", "expression": "0 4 * * *", "timezone": "Europe/Berlin"])
        #expect(replaced["created"] == false)
        #expect(replaced["version"] == 2)
        let paused = try c.call("cron.pause", ["name": "report", "note": "maintenance"])
        #expect(paused["paused"] == true)
        #expect(paused["pausedNote"] == "maintenance")
        #expect(paused["nextFireAt"] == .null)
        #expect(paused["nextFires"]?.arrayValue?.isEmpty == true)
        // Replacing keeps a paused schedule paused unless told otherwise.
        #expect(try upsert(c, ["name": "report", "expression": "0 5 * * *"])["paused"] == true)
        let resumed = try c.call("cron.resume", ["name": "report"])
        #expect(resumed["paused"] == false)
        #expect(resumed["nextFireAt"]?.stringValue?.hasSuffix("05:00:00.000Z") == true)
        let triggered = try c.call("cron.trigger", ["name": "report"])
        let jobID = try #require(triggered["jobId"]?.stringValue)
        #expect(try c.call("jobs.get", ["id": .string(jobID)])["schedule"]?["name"] == "report")
        let page = try c.call("cron.list", ["prefix": "report", "limit": 1])
        #expect(page["schedules"]?.arrayValue?.count == 1)
        let rest = try c.call("cron.list", ["prefix": "report", "cursor": page["cursor"]!])
        #expect(rest["schedules"]?.arrayValue?.first?["name"] == "report-2")
        #expect(try c.call("cron.remove", ["name": "report"])["removed"] == true)
        #expect(try c.expectError("cron.remove", ["name": "report"]).code == -32004)
    }

    @Test func aScheduleCreatedAgainUnderItsNameUsesItsNewExpression() throws {
        let s = try TestServer()
        let c = try s.connect()
        _ = try upsert(c, ["name": "again", "expression": "0 0 1 1 *"])
        _ = try c.call("cron.remove", ["name": "again"])
        // Version 1 again, like the removed one: nothing compiled for that one may be reused.
        let fresh = try upsert(c, ["name": "again", "expression": "* * * * * *"])
        #expect(fresh["version"] == 1)
        #expect(fresh["description"] == "Every second")
        let next = (fresh["nextFires"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Timestamp.parse) }
        #expect(next.count == 5)
        #expect(zip(next, next.dropFirst()).allSatisfy { $1 - $0 == 1000 })
        Thread.sleep(forTimeInterval: 2.5)
        #expect(try fires(s.database, "again").count >= 2)
    }

    @Test func twoReplicasFireEachTimeOnce() throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let ca = try a.connect()
        let cb = try b.connect()
        for i in 0..<10 {
            _ = try upsert(i % 2 == 0 ? ca : cb, ["name": .string("r\(i)"), "expression": "* * * * * *"])
        }
        Thread.sleep(forTimeInterval: 3.5)
        b.stop()
        Thread.sleep(forTimeInterval: 1.5)
        a.stop()
        for i in 0..<10 {
            let got = try fires(a.database, "r\(i)")
            #expect(got.count >= 3, "r\(i) fired \(got.count) times")
            for (x, y) in zip(got, got.dropFirst()) { #expect(y - x == 1000, "r\(i): a gap or a double fire") }
        }
    }

    /// A `cron.upsert` that must be refused; returns the error.
    func refusedUpsert(_ c: BlockingConnection, _ fields: JSONObject) throws -> RPCError {
        var f = fields
        if f["name"] == nil { f["name"] = "refused" }
        if f["target"] == nil { f["target"] = ["job": ["queue": "cron", "kind": "tick"]] }
        return try c.expectError("cron.upsert", .object(f))
    }

    @Test func aScheduleMayNotFireMoreOftenThanTheMinimumPeriod() throws {
        let s = try TestServer()
        let c = try s.connect()
        let one = try refusedUpsert(c, ["everyMs": 1])
        #expect(one.code == -32602)
        #expect(one.data?["field"] == "everyMs")
        #expect(one.data?["detail"]?.stringValue?.contains("minimum period is 1000 ms") == true)
        #expect(try refusedUpsert(c, ["everyMs": 999]).data?["field"] == "everyMs")
        #expect(try refusedUpsert(c, ["expression": "@every 10ms"]).data?["field"] == "expression")
        #expect(try c.expectError("cron.preview", ["everyMs": 1]).data?["field"] == "everyMs")
        // The default keeps every-second schedules legal.
        _ = try upsert(c, ["name": "each-second", "expression": "* * * * * *"])
        _ = try upsert(c, ["name": "each-second-too", "everyMs": 1000])
        #expect(try s.database.sql("select count(*) from wharf.schedules") == "2")

        let strict = try TestServer { $0.cronMinPeriodMs = 60_000 }
        let c2 = try strict.connect()
        #expect(try refusedUpsert(c2, ["expression": "* * * * * *"]).data?["field"] == "expression")
        #expect(try refusedUpsert(c2, ["expression": "0,30 * * * * *"]).data?["field"] == "expression")
        #expect(try refusedUpsert(c2, ["everyMs": 59_999]).data?["field"] == "everyMs")
        _ = try upsert(c2, ["name": "each-minute", "expression": "* * * * *"])
        _ = try upsert(c2, ["name": "each-minute-too", "expression": "0 * * * * *"])
        #expect(try strict.database.sql("select count(*) from wharf.schedules") == "2")
    }

    @Test func aDefinitionThatItsDSTPolicyKeepsFromEverFiringIsRefused() throws {
        let s = try TestServer()
        let c = try s.connect()
        // 02:30 on the second Sunday of March: inside New York's spring-forward gap every year.
        let gap: JSONObject = ["expression": "30 2 * 3 0#2", "timezone": "America/New_York"]
        var skip = gap
        skip["dstGap"] = "skip"
        let e = try refusedUpsert(c, skip)
        #expect(e.code == -32602)
        #expect(e.data?["field"] == "expression")
        #expect(e.data?["detail"]?.stringValue?.contains("daylight-saving gap") == true)
        #expect(try c.expectError("cron.preview", .object(skip)).data?["field"] == "expression")
        #expect(try s.database.sql("select count(*) from wharf.schedules") == "0")
        // The default policy for a fixed time runs it at the end of the gap, 03:00 EDT.
        var named = gap
        named["name"] = "gap"
        let ok = try upsert(c, named)
        #expect(ok["dstGap"] == "runAtTransition")
        let next = try #require(ok["nextFireAt"]?.stringValue)
        #expect(next.dropFirst(4).hasPrefix("-03-") && next.hasSuffix("T07:00:00.000Z"))
        // A window that has closed is not a definition that cannot fire: accepted, with no next fire.
        let ended = try upsert(c, ["name": "ended", "expression": "@daily", "endAt": "2020-01-01T00:00:00Z"])
        #expect(ended["nextFireAt"] == JSON.null)
    }

    @Test func previewEndsAtTheYear9999() throws {
        let s = try TestServer()
        let c = try s.connect()
        let leap = try c.call(
            "cron.preview", ["expression": "0 0 29 2 *", "from": "9990-01-01T00:00:00Z", "count": 1000])
        #expect(leap["fires"] == ["9992-02-29T00:00:00.000Z", "9996-02-29T00:00:00.000Z"])
        let last = try c.call("cron.preview", ["everyMs": 1000, "from": "9999-12-31T23:59:58Z", "count": 5])
        #expect(last["fires"] == ["9999-12-31T23:59:58.000Z", "9999-12-31T23:59:59.000Z"])
    }

    /// The compiled-schedule cache is keyed by a definition's timing fields; fields that run together
    /// differently, or a text that looks like an absent field, must not share a key (the key is built
    /// before the definition is validated).
    @Test func distinctTimingsNeverShareACacheKey() {
        func key(_ e: String?, every: Int64? = nil, tz: String = "UTC", gap: String? = nil, start: Int64? = nil)
            -> String
        {
            CronService.timingKey(
                expression: e, everyMs: every, timezone: tz, dayMatch: "or", dstGap: gap, dstFold: nil, startAtMs: start)
        }
        #expect(key("* * * * *", tz: "UTC") != key("* * * * *U", tz: "TC"))
        #expect(key("~", every: 1000) != key(nil, every: 1000))
        #expect(key("* * * * *", gap: "skip") != key("* * * * *", gap: nil))
        // The anchor counts for intervals only.
        #expect(key(nil, every: 1000, start: 1) != key(nil, every: 1000, start: 2))
        #expect(key("@every 1s", start: 1) != key("@every 1s", start: 2))
        #expect(key("* * * * *", start: 1) == key("* * * * *", start: 2))
    }

    /// The scheduler's "when next" statement runs after every batch; on a large table it must read
    /// indexes (it used to scan every schedule for the earliest claim expiry).
    @Test func theNextFireQueryReadsIndexesOnALargeTable() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(
            """
            insert into wharf.schedules (name, expression, target, next_fire_at)
            select 'idle-' || i, '0 0 1 1 *', '{"job": {"queue": "q", "kind": "k"}}', now() + i * interval '1 second'
            from generate_series(1, 100000) i;
            update wharf.schedules set claimed_until = now() + interval '15 seconds' where name in ('idle-1', 'idle-2');
            analyze wharf.schedules;
            """)
        let plan = try db.sql("explain " + CronSQL.nextDue)
        #expect(plan.contains("schedules_claimed_idx"), "\(plan)")
        #expect(plan.contains("schedules_due_idx"), "\(plan)")
        #expect(!plan.contains("Seq Scan"), "\(plan)")
    }
}

extension Timestamp {
    /// Now as RFC 3339, comparable as a string with the server's timestamps.
    static func formatNow() -> String { format(epochMs: nowMs()) }
}
