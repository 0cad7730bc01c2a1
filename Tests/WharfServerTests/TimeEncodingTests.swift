import Foundation
import Testing
import WharfClient
import WharfRPC

/// Instants cross SQL as epoch milliseconds (`SQLTime`) and replies format them (`JSON.time`): the wire
/// shows each instant with its milliseconds, exactly as the database's own RFC 3339 formatting
/// (`to_char`, which the statements used before) shows the stored value, sub-millisecond and pre-1970
/// instants included.
@Suite struct TimeEncodingTests {
    /// The database's RFC 3339 text of timestamptz `column`, empty for null (psql's unaligned output).
    static func rfc3339(_ column: String) -> String {
        "coalesce(to_char((\(column)) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), '')"
    }

    /// What the database says of `columns` of the row `from` selects, in order.
    static func stored(_ db: TestDatabase, _ columns: [String], from: String) throws -> [String] {
        let out = try db.sql("select \(columns.map(rfc3339).joined(separator: ", ")) from \(from)")
        return out.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
    }

    /// A reply field as the database column would show it: the string, or empty when absent.
    static func text(_ v: JSON?) -> String { v?.stringValue ?? "" }

    @Test func jobInstantsKeepTheirMillisecondsBothWays() throws {
        let s = try TestServer()
        let c = try s.connect()
        func enqueue(_ queue: String, runAt: String) throws -> String {
            try #require(c.call("jobs.enqueue", ["queue": .string(queue), "kind": "k", "runAt": .string(runAt)])["id"]?.stringValue)
        }
        func get(_ id: String) throws -> JSON { try c.call("jobs.get", ["id": .string(id)]) }

        // What a client writes is what it reads back, in UTC with its milliseconds.
        let later = try enqueue("later", runAt: "2031-02-03T04:05:06.123Z")
        #expect(try get(later)["runAt"] == "2031-02-03T04:05:06.123Z")
        let offset = try enqueue("later", runAt: "2031-02-03T05:05:06.007+01:00")
        #expect(try get(offset)["runAt"] == "2031-02-03T04:05:06.007Z")
        let old = try enqueue("old", runAt: "1969-07-20T20:17:40.001Z")
        #expect(try get(old)["runAt"] == "1969-07-20T20:17:40.001Z")

        // Through a lease, a heartbeat and a failure: each reply's instants are the stored ones.
        let leased = try #require(
            c.call("jobs.lease", ["queues": ["old"], "leaseMs": 60_000, "worker": "w"])["jobs"]?.arrayValue?.first)
        #expect(leased["runAt"] == "1969-07-20T20:17:40.001Z")
        let token = try #require(leased["leaseToken"])
        let row = "wharf.jobs where id = \(old)"
        #expect(
            try Self.stored(s.database, ["leased_at", "lease_expires_at", "created_at"], from: row)
                == ["leasedAt", "leaseExpiresAt", "createdAt"].map { Self.text(leased[$0]) })
        let beat = try c.call("jobs.heartbeat", ["id": .string(old), "leaseToken": token, "extendMs": 90_000])
        #expect(try Self.stored(s.database, ["lease_expires_at"], from: row) == [Self.text(beat["leaseExpiresAt"])])
        let failed = try c.call(
            "jobs.fail", ["id": .string(old), "leaseToken": token, "error": ["message": "x"], "retryInMs": 3_600_123])
        #expect(failed["state"] == "retryable")
        #expect(try Self.stored(s.database, ["run_at"], from: row) == [Self.text(failed["nextRunAt"])])
        // The history entry of the failed attempt shows its instants as every other field does (the
        // database writes them into the jsonb history with microseconds and an offset).
        let history = try #require(get(old)["attempts"]?.arrayValue?.first)
        #expect(history["leasedAt"] == leased["leasedAt"])
        #expect(try Self.stored(s.database, ["(attempts->0->>'finishedAt')::timestamptz"], from: row)
            == [Self.text(history["finishedAt"])])

        // Stored instants finer than a millisecond, after and before 1970, show their millisecond as the
        // database does (it keeps the millisecond they fall in).
        try s.database.sql(
            """
            update wharf.jobs set state = 'cancelled', run_at = '2031-02-03 04:05:06.123999+00',
                created_at = '1969-12-31 23:59:59.9995+00', finished_at = '2031-02-03 04:05:06.000001+00',
                schedule_name = 'n', schedule_fire_at = '1969-12-31 23:59:59.000999+00'
            where id = \(later)
            """)
        let got = try get(later)
        #expect(got["runAt"] == "2031-02-03T04:05:06.123Z")
        #expect(got["createdAt"] == "1969-12-31T23:59:59.999Z")
        #expect(got["finishedAt"] == "2031-02-03T04:05:06.000Z")
        #expect(got["schedule"]?["fireAt"] == "1969-12-31T23:59:59.000Z")
        let columns = ["run_at", "created_at", "leased_at", "lease_expires_at", "finished_at", "schedule_fire_at"]
        let fields: (JSON) -> [String] = { j in
            ["runAt", "createdAt", "leasedAt", "leaseExpiresAt", "finishedAt"].map { Self.text(j[$0]) }
                + [Self.text(j["schedule"]?["fireAt"])]
        }
        for id in [later, offset, old] {
            let db = try Self.stored(s.database, columns, from: "wharf.jobs where id = \(id)")
            #expect(try fields(get(id)) == db, "jobs.get \(id)")
            let listed = try #require(
                c.call("jobs.list", ["limit": 10])["jobs"]?.arrayValue?.first { $0["id"]?.stringValue == id })
            #expect(fields(listed) == db, "jobs.list \(id)")
        }
    }

    @Test func deliveryInstantsAndTheirAttemptsKeepTheirMilliseconds() throws {
        let s = try TestServer()
        let c = try s.connect()
        // A disabled endpoint: the dispatcher leaves its deliveries as they are.
        let endpoint = try s.database.sql(
            """
            insert into wharf.webhook_endpoints (url, secret, enabled, disabled_at, disabled_reason)
            values ('https://example.com/hook', 'whsec_test', false, now(), 'manual') returning id
            """)
        let failed = try s.database.sql(
            """
            insert into wharf.webhook_deliveries
                (message_id, endpoint_id, event, body, state, attempt, created_at, next_attempt_at, finished_at)
            values ('msg_a', \(endpoint), 'e', '{}', 'failed', 2, '1969-12-31 23:59:59.9995+00',
                    '1970-01-01 00:00:00+00', '2031-02-03 04:05:06.123999+00')
            returning id
            """)
        let pending = try s.database.sql(
            """
            insert into wharf.webhook_deliveries (message_id, endpoint_id, event, body, created_at, next_attempt_at)
            values ('msg_b', \(endpoint), 'e', '{}', '2031-02-03 04:05:06.007+00', '2031-02-03 04:05:07.999999+00')
            returning id
            """)
        try s.database.sql(
            """
            insert into wharf.webhook_attempts (delivery_id, attempt, endpoint_id, attempted_at, status)
            values (\(failed), 1, \(endpoint), '1969-07-20 20:17:40.001999+00', 500),
                   (\(failed), 2, \(endpoint), '2031-02-03 04:05:06.123456+00', 503)
            """)
        let reply = try c.call("webhooks.deliveries", ["endpointId": .string(endpoint)])
        let deliveries = try #require(reply["deliveries"]?.arrayValue)
        try #require(deliveries.count == 2)
        let (p, f) = (deliveries[0], deliveries[1])
        #expect(p["id"]?.stringValue == pending && f["id"]?.stringValue == failed)
        #expect(f["createdAt"] == "1969-12-31T23:59:59.999Z")
        #expect(f["finishedAt"] == "2031-02-03T04:05:06.123Z")
        #expect(f["nextAttemptAt"] == nil, "shown for pending deliveries only")
        #expect(f["attemptLog"]?.arrayValue?.map { $0["at"] } == ["1969-07-20T20:17:40.001Z", "2031-02-03T04:05:06.123Z"])
        #expect(p["createdAt"] == "2031-02-03T04:05:06.007Z")
        #expect(p["nextAttemptAt"] == "2031-02-03T04:05:07.999Z")
        #expect(p["finishedAt"] == nil)
        // The same text the database makes of the stored values.
        #expect(
            try Self.stored(s.database, ["created_at", "finished_at"], from: "wharf.webhook_deliveries where id = \(failed)")
                == [Self.text(f["createdAt"]), Self.text(f["finishedAt"])])
        #expect(
            try s.database.sql(
                "select string_agg(\(Self.rfc3339("attempted_at")), ',' order by attempt) from wharf.webhook_attempts")
                == (f["attemptLog"]?.arrayValue ?? []).map { Self.text($0["at"]) }.joined(separator: ","))
    }

    @Test func healthShowsTheDatabaseClockWithMilliseconds() throws {
        let s = try TestServer()
        let c = try s.connect()
        let before = Date()
        let now = try #require(c.call("server.health")["database"]?["now"]?.stringValue)
        #expect(now.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#) != nil, "\(now)")
        let at = try #require(parseTime(now))
        #expect(abs(at.timeIntervalSince(before)) < 60, "the database and test clocks agree within a minute")
    }
}
