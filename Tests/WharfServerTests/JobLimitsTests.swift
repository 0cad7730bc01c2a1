import Foundation
import Testing
import WharfClient
import WharfRPC

/// Bounds on what one call costs: reply bytes of lists and leases, queue pages, rows a pause leaves
/// behind, retry arithmetic that cannot fail a batch, and retention that keeps up.
@Suite struct JobLimitsTests {
    static let budget = 64 * 1024

    func enqueue(_ c: BlockingConnection, _ fields: JSONObject) throws -> String {
        try #require(c.call("jobs.enqueue", .object(fields))["id"]?.stringValue)
    }

    func payload(_ bytes: Int) -> JSON { ["blob": .string(String(repeating: "x", count: bytes))] }

    /// Sends each request in one write so that they land in one loop turn (one batched statement),
    /// and returns the replies by id.
    func pipelined(_ c: BlockingConnection, _ requests: [(id: Int, method: String, params: JSON)]) throws -> [Int: JSON]
    {
        let lines = requests.map { r -> String in
            JSON.object(["jsonrpc": "2.0", "id": .from(r.id), "method": .string(r.method), "params": r.params]).text
        }
        try c.sendLine(lines.joined(separator: "\n"))
        var replies: [Int: JSON] = [:]
        for _ in requests {
            let m = try c.readMessage()
            replies[Int(try #require(m["id"]?.intValue))] = m
        }
        return replies
    }

    @Test func listPagesEndAtTheByteBudget() throws {
        let s = try TestServer { $0.limits.maxReplyBytes = Self.budget }
        let c = try s.connect()
        var ids: [String] = []
        for _ in 0..<10 { ids.append(try enqueue(c, ["queue": "big", "kind": "k", "payload": payload(20_000)])) }
        var pages: [[String]] = []
        var cursor: JSON = .null
        repeat {
            var p: JSONObject = ["queue": "big", "limit": 1000]
            if cursor != .null { p["cursor"] = cursor }
            let page = try c.call("jobs.list", .object(p))
            pages.append((page["jobs"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue })
            #expect(page.text.utf8.count <= Self.budget, "a page of \(page.text.utf8.count) bytes")
            cursor = page["nextCursor"] ?? .null
        } while cursor != .null && pages.count < 20
        // Three 20 KB jobs fit in 64 KiB, four do not; the cursor walks on without gaps or repeats.
        #expect(pages.first?.count == 3)
        #expect(pages.flatMap { $0 } == ids.reversed())
        #expect(pages.allSatisfy { $0.count <= 3 })

        // A job larger than the whole budget still comes back, alone on its page.
        let huge = try enqueue(c, ["queue": "big", "kind": "k", "payload": payload(100_000)])
        let first = try c.call("jobs.list", ["queue": "big", "limit": 1000])
        #expect(first["jobs"]?.arrayValue?.map { $0["id"] } == [.string(huge)])
        #expect(first["nextCursor"] == .string(huge))
        let second = try c.call("jobs.list", ["queue": "big", "limit": 1000, "cursor": .string(huge)])
        #expect(second["jobs"]?.arrayValue?.first?["id"] == .string(ids.last!))
    }

    @Test func leaseTakesFewerJobsAtTheByteBudget() throws {
        let s = try TestServer { $0.limits.maxReplyBytes = Self.budget }
        let c = try s.connect()
        for _ in 0..<10 { _ = try enqueue(c, ["queue": "big", "kind": "k", "payload": payload(20_000)]) }
        let lease: JSON = ["queues": ["big"], "max": 1000, "worker": "w"]
        let got = try c.call("jobs.lease", lease)
        #expect(got["jobs"]?.arrayValue?.count == 3)
        #expect(got.text.utf8.count <= Self.budget)
        // The jobs past the budget were not leased: they are still there for the next lease.
        let counts = try c.call("queues.stats", ["queue": "big"])["counts"]
        #expect(counts?["running"] == 3)
        #expect(counts?["available"] == 7)
        var leased = 3
        while let more = try c.call("jobs.lease", lease)["jobs"]?.arrayValue, !more.isEmpty {
            #expect(more.count <= 3)
            leased += more.count
        }
        #expect(leased == 10)

        // A job larger than the budget is leased alone.
        let huge = try enqueue(c, ["queue": "huge", "kind": "k", "payload": payload(100_000)])
        _ = try enqueue(c, ["queue": "huge", "kind": "k"])
        let alone = try c.call("jobs.lease", ["queues": ["huge"], "max": 10, "worker": "w"])["jobs"]?.arrayValue
        #expect(alone?.map { $0["id"] } == [.string(huge)])
    }

    @Test func queuesListPagesByName() throws {
        let s = try TestServer()
        let c = try s.connect()
        let names = (0..<25).map { String(format: "q%02d", $0) }
        for n in names where n != "q07" { _ = try enqueue(c, ["queue": .string(n), "kind": "k"]) }
        _ = try c.call("queues.pause", ["queue": "q07"])  // a queue with no jobs, only its row
        var seen: [String] = []
        var cursor: JSON = .null
        var pages = 0
        repeat {
            var p: JSONObject = ["limit": 10]
            if cursor != .null { p["cursor"] = cursor }
            let page = try c.call("queues.list", .object(p))
            let got = (page["queues"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            #expect(got.count <= 10)
            seen += got
            cursor = page["nextCursor"] ?? .null
            pages += 1
        } while cursor != .null && pages < 10
        #expect(seen == names)
        #expect(pages == 3)
        let all = try c.call("queues.list")
        #expect(all["queues"]?.arrayValue?.count == 25)
        #expect(all["nextCursor"] == .null)
        #expect(try c.expectError("queues.list", ["limit": 1001]).data?["field"] == "limit")
    }

    @Test func pauseAndResumeLeaveNoRowBehind() throws {
        let s = try TestServer()
        let c = try s.connect()
        func rows(_ name: String) throws -> String {
            try s.database.sql("select count(*) from wharf.queues where name = '\(name)'")
        }
        for i in 0..<20 {
            _ = try c.call("queues.pause", ["queue": .string("ghost-\(i)")])
            _ = try c.call("queues.resume", ["queue": .string("ghost-\(i)")])
        }
        #expect(try s.database.sql("select count(*) from wharf.queues") == "0")
        // A queue with a setting keeps its row (and the setting) across pause and resume.
        _ = try c.call("queues.configure", ["queue": "tuned", "retry": ["initialMs": 5_000]])
        _ = try c.call("queues.pause", ["queue": "tuned"])
        let resumed = try c.call("queues.resume", ["queue": "tuned"])
        #expect(resumed["paused"] == false)
        #expect(try rows("tuned") == "1")
        #expect(try s.database.sql("select retry->>'initialMs' from wharf.queues where name = 'tuned'") == "5000")
        // Clearing the last setting of a queue that is not paused removes the row.
        let cleared = try c.call("queues.configure", ["queue": "tuned", "retry": nil])
        #expect(cleared["retry"] == .null)
        #expect(try rows("tuned") == "0")
        // A paused queue keeps its row when its settings are cleared.
        _ = try c.call("queues.pause", ["queue": "held"])
        _ = try c.call("queues.configure", ["queue": "held", "retry": ["jitter": 0]])
        _ = try c.call("queues.configure", ["queue": "held", "retry": nil])
        #expect(try rows("held") == "1")
        #expect(try c.call("queues.stats", ["queue": "held"])["paused"] == true)
    }

    /// `retry: {initialMs: 1, coefficient: 100, maxMs: 1}` at attempt 200: 100^199 overflows float8 if
    /// the power is formed before the cap. The fail must work, and so must another worker's fail that
    /// shares its statement.
    @Test func extremeRetryPolicyFailsNobody() throws {
        let s = try TestServer()
        let c = try s.connect()
        let extreme = try enqueue(
            c,
            [
                "queue": "x", "kind": "k", "maxAttempts": 1000,
                "retry": ["initialMs": 1, "coefficient": 100, "maxMs": 1, "jitter": 0],
            ])
        let plain = try enqueue(c, ["queue": "y", "kind": "k"])
        try s.database.sql("update wharf.jobs set attempt = 199 where id = \(extreme)")
        let a = try #require(try c.call("jobs.lease", ["queues": ["x"], "worker": "w1"])["jobs"]?.arrayValue?.first)
        #expect(a["attempt"] == 200)
        let other = try s.connect()
        let b = try #require(try other.call("jobs.lease", ["queues": ["y"], "worker": "w2"])["jobs"]?.arrayValue?.first)
        let replies = try pipelined(
            c,
            [
                (1, "jobs.fail", ["id": .string(extreme), "leaseToken": a["leaseToken"]!, "error": "boom"]),
                (2, "jobs.fail", ["id": .string(plain), "leaseToken": b["leaseToken"]!, "error": "other"]),
            ])
        #expect(replies[1]?["result"]?["state"] == "retryable", "\(replies[1]?.text ?? "")")
        #expect(replies[2]?["result"]?["state"] == "retryable", "\(replies[2]?.text ?? "")")
        let next = try #require(replies[1]?["result"]?["nextRunAt"]?.stringValue.flatMap(parseTime))
        #expect(next.timeIntervalSinceNow < 5, "capped at maxMs: \(next)")
        // Stored policies the server never wrote (an application's own insert) cannot fail it either.
        try s.database.sql(
            """
            update wharf.jobs set state = 'available', run_at = now(), lease_token = null, lease_expires_at = null,
                retry = '{"initialMs": "soon", "coefficient": 1e400, "maxMs": -5}'
            where id = \(extreme)
            """)
        let again = try #require(try c.call("jobs.lease", ["queues": ["x"], "worker": "w1"])["jobs"]?.arrayValue?.first)
        let failed = try c.call("jobs.fail", ["id": .string(extreme), "leaseToken": again["leaseToken"]!, "error": "x"])
        #expect(failed["state"] == "retryable")
    }

    /// A row the database refuses fails only its own call; the others batched with it succeed.
    @Test func aRefusedRowFailsOnlyItsOwnCall() throws {
        let s = try TestServer()
        let c = try s.connect()
        let bad = try enqueue(c, ["queue": "q", "kind": "k"])
        let good = try enqueue(c, ["queue": "q", "kind": "k"])
        try s.database.sql(
            """
            create function wharf.refuse_test_row() returns trigger language plpgsql as $$
            begin
                if new.id = \(bad) and new.state <> 'running' then
                    raise exception 'refused for the test' using errcode = '22023';
                end if;
                return new;
            end $$;
            create trigger refuse_test_row before update on wharf.jobs for each row
                execute function wharf.refuse_test_row();
            """)
        let jobs = try #require(
            try c.call("jobs.lease", ["queues": ["q"], "max": 2, "worker": "w"])["jobs"]?.arrayValue)
        #expect(jobs.count == 2)
        func token(_ id: String) -> JSON { jobs.first { $0["id"] == .string(id) }?["leaseToken"] ?? .null }
        let completes = try pipelined(
            c,
            [
                (1, "jobs.complete", ["id": .string(bad), "leaseToken": token(bad)]),
                (2, "jobs.complete", ["id": .string(good), "leaseToken": token(good)]),
            ])
        #expect(completes[1]?["error"] != nil)
        #expect(completes[2]?["result"]?["state"] == "completed", "\(completes[2]?.text ?? "")")
        #expect(try s.database.sql("select state from wharf.jobs where id = \(bad)") == "running")
    }

    /// Per-queue retention (0: prune at once) beside the server's (a day), and a backlog larger than
    /// many batches (jobs that finished before retention was kept per job) pruned within seconds.
    @Test func retentionKeepsUpPerQueue() throws {
        let s = try TestServer()
        let c = try s.connect()
        let r = try c.call("queues.configure", ["queue": "short", "retention": ["completedMs": 0, "deadMs": 0]])
        #expect(r["retention"]?["completedMs"] == 0)
        #expect(r["retention"]?["deadMs"] == 0)
        for q in ["short", "long"] {
            let batch = (0..<20).map { _ -> JSON in ["queue": .string(q), "kind": "k"] }
            _ = try c.call("jobs.enqueueBatch", ["jobs": .array(batch)])
            let leased = try #require(
                try c.call("jobs.lease", ["queues": [.string(q)], "max": 20, "worker": "w"])["jobs"]?.arrayValue)
            for (i, j) in leased.enumerated() {
                if i % 2 == 0 {
                    _ = try c.call("jobs.complete", ["id": j["id"]!, "leaseToken": j["leaseToken"]!])
                } else {
                    _ = try c.call(
                        "jobs.fail", ["id": j["id"]!, "leaseToken": j["leaseToken"]!, "error": "x", "retryable": false])
                }
            }
        }
        // 25,000 rows finished two days ago with no prune_at, as a table upgraded from before.
        try s.database.sql(
            """
            insert into wharf.jobs (queue, kind, state, finished_at, attempt)
            select 'legacy', 'k', 'completed', now() - interval '2 days', 1 from generate_series(1, 25000)
            """)
        let deadline = Date().addingTimeInterval(15)
        var left = ""
        repeat {
            Thread.sleep(forTimeInterval: 0.25)
            left = try s.database.sql(
                """
                select count(*) filter (where queue = 'short') || ',' || count(*) filter (where queue = 'legacy')
                from wharf.jobs
                """)
        } while left != "0,0" && Date() < deadline
        #expect(left == "0,0", "short,legacy rows left: \(left)")
        #expect(try s.database.sql("select count(*) from wharf.jobs where queue = 'long'") == "20")
        #expect(
            try c.expectError("queues.configure", ["queue": "q", "retention": ["completedMs": -1]]).data?["field"]
                == "retention.completedMs")
        // Clearing goes back to the server's retention.
        let cleared = try c.call("queues.configure", ["queue": "short", "retention": nil])
        #expect(cleared["retention"]?["completedMs"] == .null)
    }
}
