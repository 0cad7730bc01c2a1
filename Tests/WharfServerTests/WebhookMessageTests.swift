import Foundation
import Testing
import WharfCore
import WharfRPC
import WharfStore

/// The one writer of webhook messages, in the database (migration v0016): `wharf.webhook_body` makes
/// the bytes the server's JSON writer would make, `wharf.webhook_message_id` the one id scheme, and
/// `wharf.send_webhooks` the one delivery insert, against a real database.
@Suite struct WebhookMessageTests {
    /// A SQL expression for `s`, one `chr()` per scalar, so any character reaches the database intact.
    static func sql(_ s: String?) -> String {
        guard let s else { return "null" }
        return "(" + s.unicodeScalars.map { "chr(\($0.value))" }.joined(separator: " || ") + ")"
    }

    /// The body as the server built it in Swift before the database built every body: the JSON writer's
    /// compact encoding of `{type, timestamp, data, schedule?}`.
    static func swiftBody(event: String, data: JSON, atMs: Int64, schedule: (String, Int64)?) -> String {
        var o: JSONObject = [
            "type": .string(event), "timestamp": .string(Timestamp.format(epochMs: atMs)), "data": data,
        ]
        if let (name, fireMs) = schedule {
            o["schedule"] = ["name": .string(name), "fireAt": .string(Timestamp.format(epochMs: fireMs))]
        }
        return JSON.object(o).text
    }

    /// Every control character, the characters JSON escapes, and some that it does not.
    static let names: [String] =
        (1..<32).map { "a" + String(UnicodeScalar(UInt8($0))) + "b" } + [
            "order.created", "quote\"d", "back\\slash", "sl/ash", "\u{7F}del", "é", "日本語", "line\u{2028}sep",
            "emoji 🚢", "mix\u{8}\u{C}\"\\\n\t\u{1F}end", "\u{8}", "\u{C}\u{C}",
        ]

    @Test func bodiesAreTheBytesOfTheServersJSONWriter() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        let atMs: Int64 = 1_764_000_123_456
        let data: JSON = ["orderId": 42, "lines": [["sku": "a\"b", "qty": 2.5], .null, true], "note": "é\n"]
        var selects: [String] = []
        var expected: [String] = []
        for (k, name) in Self.names.enumerated() {
            let schedule: (String, Int64)? = k % 2 == 0 ? nil : ("sched " + name, atMs - 1_456 + Int64(k))
            selects.append(
                """
                select \(k), wharf.webhook_body(\(Self.sql(name)), \(Self.sql(data.text)),
                    timestamptz 'epoch' + \(atMs) * interval '1 millisecond', \(Self.sql(schedule?.0)),
                    timestamptz 'epoch' + \(schedule.map { String($0.1) } ?? "null")::bigint * interval '1 millisecond')
                """)
            expected.append(Self.swiftBody(event: name, data: data, atMs: atMs, schedule: schedule))
        }
        let out = try db.sql(selects.joined(separator: " union all ") + " order by 1")
        let got = out.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(line.drop { $0 != "|" }.dropFirst())
        }
        try #require(got.count == expected.count, "\(out)")
        for (g, e) in zip(got, expected) { #expect(g == e) }
        // Data is kept as given (here as the server writes JSON), and a missing one is JSON null.
        let none = try db.sql("select wharf.webhook_body('e', null, timestamptz 'epoch', null, null)")
        #expect(none == #"{"type":"e","timestamp":"1970-01-01T00:00:00.000Z","data":null}"#)
    }

    @Test func messageIDsAreMsgAnd32HexDigitsRandomOrDerivedFromAKey() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        let out = try db.sql(
            """
            select wharf.webhook_message_id(null) union all select wharf.webhook_message_id(null)
            union all select wharf.webhook_message_id('nightly:1764000000000')
            union all select wharf.webhook_message_id('nightly:1764000000000')
            union all select 'msg_' || md5('nightly:1764000000000')
            """)
        let ids = out.split(separator: "\n").map(String.init)
        try #require(ids.count == 5)
        let scheme = #/^msg_[0-9a-f]{32}$/#
        #expect(ids.allSatisfy { $0.wholeMatch(of: scheme) != nil }, "\(ids)")
        #expect(ids[0] != ids[1], "random ids differ")
        #expect(ids[2] == ids[3] && ids[2] == ids[4], "a key gives the same id every time: msg_ and its MD5")
    }

    /// One batch through the one insert: sends to an endpoint (one missing), by event (fan-out to the
    /// enabled subscribers), keyed sends repeated in the batch and after it, a message key repeated
    /// (a cron fire made twice), a delay and a lock hold.
    @Test func oneInsertQueuesEveryKindOfSend() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        try db.sql(
            """
            insert into wharf.webhook_endpoints (url, secret, events) values
                ('http://192.0.2.1/a', 'whsec_x', null), ('http://192.0.2.1/b', 'whsec_x', '{order.created}'),
                ('http://192.0.2.1/c', 'whsec_x', '{other}');
            insert into wharf.webhook_endpoints (url, secret, enabled) values ('http://192.0.2.1/d', 'whsec_x', false);
            """)
        let call = """
            select ord, delivery_id, endpoint_id, created from wharf.send_webhooks(
                '{1,99,NULL,1,1,2,2}', '{m,m,order.created,m,m,cron.fire,cron.fire}',
                '{1,2,3,4,5,6,7}', '{NULL,NULL,NULL,k,k,NULL,NULL}', '{NULL,NULL,NULL,NULL,NULL,60000,NULL}',
                '{NULL,NULL,NULL,NULL,NULL,s,s}', '{NULL,NULL,NULL,NULL,NULL,1000,1000}',
                '{NULL,NULL,NULL,NULL,NULL,s:1000,s:1000}', '{NULL,NULL,NULL,NULL,NULL,NULL,NULL}',
                '{NULL,NULL,NULL,NULL,NULL,tok,tok}')
            order by 1, 3
            """
        let rows = try db.sql(call).split(separator: "\n").map { $0.split(separator: "|").map(String.init) }
        // ord 2 (endpoint 99) has none; ord 3 goes to endpoints 1 and 2 (3 is not subscribed, 4 is
        // disabled); ord 5 repeats ord 4's key; ord 7 repeats ord 6's message key and queues nothing.
        #expect(
            rows.map { [$0[0], $0[2], $0[3]] } == [
                ["1", "1", "t"], ["3", "1", "t"], ["3", "2", "t"], ["4", "1", "t"], ["5", "1", "f"], ["6", "2", "t"],
            ])
        #expect(rows[3][1] == rows[4][1], "a repeated key gets the first delivery")
        let stored = try db.sql(
            """
            select count(*), count(distinct message_id), count(*) filter (where next_attempt_at > now() + interval '50 s'),
                   string_agg(hold_lock || ':' || hold_token, ','),
                   (select message_id from wharf.webhook_deliveries where hold_token is not null) = 'msg_' || md5('s:1000'),
                   (select count(distinct message_id) from wharf.webhook_deliveries where event = 'order.created')
            from wharf.webhook_deliveries
            """)
        #expect(stored == "5|4|1|cron:s:tok|t|1", "ord 3's two deliveries share one message")
        // A later batch with the same key gets that delivery, not a new one.
        let again = try db.sql(
            """
            select delivery_id, created from wharf.send_webhooks('{1}', '{m}', '{9}', '{k}', null, null, null, null,
                                                                 null, null)
            """)
        #expect(again == rows[3][1] + "|f")
    }
}
