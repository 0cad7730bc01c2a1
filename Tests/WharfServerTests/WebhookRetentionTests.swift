import Foundation
import Testing
import WharfRPC

/// Retention of finished webhook deliveries: a real server prunes a real database at start.
@Suite struct WebhookRetentionTests {
    /// Endpoint 1 keeps the server's default (1 h here), endpoint 2 keeps 30 days, endpoint 3 one
    /// minute. More old rows than one prune statement takes, so pruning must go on batch after batch.
    static let setup = """
        insert into wharf.webhook_endpoints (url, secret, enabled, retention_ms) values
            ('http://192.0.2.1/default', 'whsec_x', false, null),
            ('http://192.0.2.1/long', 'whsec_x', false, 2592000000),
            ('http://192.0.2.1/short', 'whsec_x', false, 60000);
        insert into wharf.webhook_deliveries (message_id, endpoint_id, event, body, state, attempt, created_at, finished_at)
        select 'old-' || e || '-' || g, e, 'e', '{}', case when g % 2 = 0 then 'succeeded' else 'failed' end, 1,
               now() - interval '3 hours', now() - interval '2 hours'
        from generate_series(1, 3) e, generate_series(1, 6000) g
        union all
        select 'recent-' || e || '-' || g, e, 'e', '{}', 'succeeded', 1, now() - interval '11 minutes',
               now() - interval '10 minutes'
        from generate_series(1, 3) e, generate_series(1, 5) g
        union all
        select 'waiting-' || e || '-' || g, e, 'e', '{}', case when g % 2 = 0 then 'pending' else 'delivering' end, 1,
               now() - interval '40 days', now() - interval '39 days'
        from generate_series(1, 3) e, generate_series(1, 4) g;
        insert into wharf.webhook_attempts (delivery_id, attempt, endpoint_id, status, attempted_at)
        select id, 1, endpoint_id, 200, coalesce(finished_at, created_at) from wharf.webhook_deliveries;
        """

    /// Deliveries left per endpoint and kind, e.g. `1:recent:5 1:waiting:4`.
    static func counts(_ db: TestDatabase) throws -> String {
        try db.sql(
            """
            select string_agg(k, ' ' order by k) from (
                select format('%s:%s:%s', endpoint_id, split_part(message_id, '-', 1), count(*)) as k
                from wharf.webhook_deliveries group by endpoint_id, split_part(message_id, '-', 1)) t
            """)
    }

    @Test func oldFinishedDeliveriesGoWithTheirAttemptsAndWaitingOnesStay() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(Self.setup)
        #expect(try db.sql("select count(*) from wharf.webhook_deliveries") == "18027")
        let s = try TestServer(database: db) { $0.webhooks.retentionMs = 3_600_000 }
        // Default retention (1 h): old ones go, recent and waiting ones stay. 30 days: all stay. One
        // minute: only the waiting ones stay, however old.
        let expected = "1:recent:5 1:waiting:4 2:old:6000 2:recent:5 2:waiting:4 3:waiting:4"
        let deadline = Date().addingTimeInterval(30)
        while try Self.counts(db) != expected, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try Self.counts(db) == expected)
        // The attempts went with their deliveries.
        #expect(
            try db.sql(
                "select count(*) from wharf.webhook_attempts a where not exists "
                    + "(select 1 from wharf.webhook_deliveries d where d.id = a.delivery_id)") == "0")
        #expect(try db.sql("select count(*) from wharf.webhook_attempts") == "6022")

        // retentionMs is an endpoint setting: shown, changed, and reset to the server's with null.
        let c = try s.connect()
        #expect(try c.call("webhooks.get", ["id": "2"])["retentionMs"] == 2_592_000_000)
        #expect(try c.call("webhooks.update", ["id": "2", "retentionMs": 5_000])["retentionMs"] == 5_000)
        #expect(try c.call("webhooks.update", ["id": "2", "retentionMs": .null])["retentionMs"] == .null)
        let e = try c.expectError("webhooks.update", ["id": "2", "retentionMs": -1])
        #expect(e.code == -32602 && e.data?["field"] == "retentionMs")
    }
}
