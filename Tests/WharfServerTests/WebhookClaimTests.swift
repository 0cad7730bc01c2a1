import Foundation
import Testing
import WharfStore

/// The delivery claim (`webhooks.claim`) against a real database: round-robin over endpoints, the
/// per-endpoint limit, endpoints left out, and the budget for endpoints' second and later attempts.
@Suite struct WebhookClaimTests {
    /// Endpoint 1 has 6 due deliveries (the earliest), endpoint 2 has 3, endpoint 3 has 2, endpoint 4
    /// has 1 not yet due.
    static let setup = """
        insert into wharf.webhook_endpoints (url, secret) select 'http://192.0.2.1/' || g, 'whsec_x'
        from generate_series(1, 4) g;
        insert into wharf.webhook_deliveries (message_id, endpoint_id, event, body, next_attempt_at)
        select 'm-' || e || '-' || g, e, 'e', '{}', now() - interval '1 hour' + (e * 100 + g) * interval '1 s'
        from (values (1, 6), (2, 3), (3, 2)) as t(e, n), generate_series(1, n) g
        union all select 'm-4-1', 4, 'e', '{}', now() + interval '1 hour';
        """

    /// The endpoints of the deliveries one claim takes, in id order of the deliveries, with
    /// `limit, extra, blocked, busy ids, busy counts, per endpoint` (window 800, lease 60 s).
    func claim(_ db: TestDatabase, _ args: String) throws -> [Int] {
        let sql = try #require(Store.allQueries.first { $0.name == "webhooks.claim" }?.sql)
        let (limit, extra, blocked, busyIDs, busyCounts, perEndpoint) = try parse(args)
        let out = try db.sql(
            """
            begin;
            prepare c(int, bigint, bigint[], bigint[], int[], int, int, int) as \(sql);
            execute c(\(limit), 60000, '\(blocked)', '\(busyIDs)', '\(busyCounts)', \(perEndpoint), 800, \(extra));
            rollback;
            """)
        let rows = out.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false) }
        return rows.filter { $0.count > 3 }.sorted { Int($0[0])! < Int($1[0])! }.map { Int($0[2])! }
    }

    func parse(_ a: String) throws -> (Int, Int, String, String, String, Int) {
        let p = a.split(separator: " ").map(String.init)
        try #require(p.count == 6)
        return (Int(p[0])!, Int(p[1])!, p[2], p[3], p[4], Int(p[5])!)
    }

    @Test func claimsGoRoundRobinOverEndpointsWithinTheirLimits() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(Self.setup)
        // Every endpoint's first due delivery before any second one; endpoint 4 is not due.
        #expect(try claim(db, "3 100 {} {} {} 16") == [1, 2, 3])
        #expect(try claim(db, "5 100 {} {} {} 16") == [1, 1, 2, 2, 3])
        // All that is due, when there is room.
        #expect(try claim(db, "100 100 {} {} {} 16") == [1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3])
        // At most `perEndpoint` each, counting the attempts already in flight.
        #expect(try claim(db, "100 100 {} {} {} 2") == [1, 1, 2, 2, 3, 3])
        #expect(try claim(db, "100 100 {} {1} {1} 2") == [1, 2, 2, 3, 3])
        // A blocked endpoint takes nothing.
        #expect(try claim(db, "100 100 {1} {} {} 16") == [2, 2, 2, 3, 3])
        // No budget for second attempts: one each for endpoints with nothing in flight.
        #expect(try claim(db, "100 0 {} {} {} 16") == [1, 2, 3])
        // A budget of two: the first slots, then the two earliest second ones.
        #expect(try claim(db, "100 2 {} {} {} 16") == [1, 1, 2, 2, 3])
        // An endpoint with an attempt in flight takes only from the budget, here spent on the earliest
        // second slot (endpoint 1's).
        #expect(try claim(db, "100 1 {} {2} {1} 16") == [1, 1, 3])
        #expect(try claim(db, "100 2 {} {2} {1} 16") == [1, 1, 2, 3])
    }
}
