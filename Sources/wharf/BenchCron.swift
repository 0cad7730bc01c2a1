import ArgumentParser
import CLibPQ
import Foundation
import WharfClient
import WharfRPC

/// `wharf bench cron`: registers many schedules, lets them fire, and reads the fire lag (actual
/// minus nominal time) of every job they made from the database.
struct BenchCron: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cron",
        abstract: "Fire lag and sustained fires/s of many cron schedules.",
        discussion: """
            --pattern spread gives schedule i the expression 'S * * * * *' with S = i mod 60, so every \
            schedule fires once a minute and the fires spread evenly over it; --pattern every-second gives \
            every schedule '* * * * * *'. Lag is each job's created_at (the fire transaction's time) minus its \
            nominal fire time, read from the server's database with --database. --idle N adds N schedules that \
            do not fire during the run (yearly, at times spread over the year), written straight into the \
            table as N cron.upserts would leave them, to show how lag depends on the number of schedules: \
            e.g. --idle 1000000 --schedules 1 --pattern every-second.
            """)

    @Option(help: "Server address, HOST:PORT (default: $WHARF_SERVER or 127.0.0.1:7411).") var server = defaultServer
    @Option(help: "The server's PostgreSQL (connection string), to read the jobs' fire lag.") var database: String
    @Option(help: "Schedules to register.") var schedules = 100_000
    @Option(help: "spread or every-second.") var pattern = "spread"
    @Option(help: "Idle schedules to add first (inserted with SQL; removed afterwards unless --keep).") var idle = 0
    @Option(help: "Seconds to let them fire after registration.") var duration = 60.0
    @Flag(help: "Keep the schedules and their jobs afterwards.") var keep = false
    @Flag(help: "Print one JSON object as the last line.") var json = false

    @OptionGroup(title: "TLS") var tls: ClientTLSOptions

    func run() throws {
        guard pattern == "spread" || pattern == "every-second" else {
            throw ValidationError("--pattern is spread or every-second")
        }
        let (host, port) = try parseHostPort(server)
        let c = try BlockingConnection(host: host, port: port, timeoutSeconds: 120, tls: try tls.context())
        let db = try BenchDatabase(database)
        try db.exec("delete from wharf.jobs where schedule_name like 'bench-cron-%'")
        if idle > 0 {
            let t0 = Date()
            try db.exec("delete from wharf.schedules where name like 'bench-idle-%'")
            // Schedule i fires yearly at minute i mod 60, hour (i / 60) mod 24, day 1-28, month 1-12, so
            // the next fires spread over the coming year (none within a day).
            try db.exec(
                """
                insert into wharf.schedules (name, expression, target, missed_window_ms, next_fire_at)
                select 'bench-idle-' || i, format('%s %s %s %s *', mi, h, d, mo),
                       jsonb_build_object('job', jsonb_build_object('queue', 'bench-idle', 'kind', 'tick')), 600000,
                       case when f < now() + interval '1 day' then f + interval '1 year' else f end
                from (select i, i % 60 as mi, (i / 60) % 24 as h, 1 + (i / 1440) % 28 as d, 1 + (i / 40320) % 12 as mo
                      from generate_series(0, \(idle - 1)) i) g,
                     lateral (select make_timestamptz(extract(year from now())::int, mo, d, h, mi, 0, 'UTC') as f) t;
                analyze wharf.schedules
                """)
            print(String(format: "inserted %d idle schedules in %.1f s", idle, Date().timeIntervalSince(t0)))
        }

        let started = Date()
        try pipelined(c, count: schedules) { i in
            let expression = pattern == "spread" ? "\(i % 60) * * * * *" : "* * * * * *"
            return [
                "name": .string("bench-cron-\(i)"), "expression": .string(expression), "missedWindowMs": 600_000,
                "target": ["job": ["queue": "bench-cron", "kind": "tick", "payload": ["i": .from(i)]]],
            ]
        }
        let registerSeconds = Date().timeIntervalSince(started)
        print(String(format: "registered %d schedules in %.1f s (%.0f upserts/s)", schedules, registerSeconds,
                     Double(schedules) / registerSeconds))
        // Measure whole seconds that start after registration ended and end before the wait does.
        let from = (Int64(Date().timeIntervalSince1970) + 2) * 1000
        Thread.sleep(forTimeInterval: duration + 3)
        let to = from + Int64(duration * 1000) - 1000
        let stats = try db.row(
            """
            select count(*),
                   coalesce(percentile_disc(0.5) within group (order by lag), 0),
                   coalesce(percentile_disc(0.99) within group (order by lag), 0),
                   coalesce(percentile_disc(0.999) within group (order by lag), 0),
                   coalesce(max(lag), 0),
                   count(*) - count(distinct (schedule_name, schedule_fire_at))
            from (select schedule_name, schedule_fire_at,
                         extract(epoch from created_at - schedule_fire_at) * 1000 as lag
                  from wharf.jobs
                  where schedule_name like 'bench-cron-%'
                    and schedule_fire_at >= to_timestamp(\(from) / 1000.0)
                    and schedule_fire_at < to_timestamp(\(to) / 1000.0)) f
            """)
        let fires = Int(stats[0]) ?? 0
        let windowS = Double(to - from) / 1000
        let expected = pattern == "spread" ? Double(schedules) * windowS / 60 : Double(schedules) * windowS
        let (p50, p99, p999, maxLag) = (Double(stats[1]) ?? 0, Double(stats[2]) ?? 0, Double(stats[3]) ?? 0, Double(stats[4]) ?? 0)
        print(
            String(
                format:
                    "cron: %d schedules (%@) + %d idle, %.0f s window: %d fires (expected ~%.0f), %.0f fires/s, lag p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms, duplicates %@",
                schedules, pattern, idle, windowS, fires, expected, Double(fires) / windowS, p50, p99, p999, maxLag, stats[5]))
        if !keep {
            try pipelined(c, count: schedules) { i in ["name": .string("bench-cron-\(i)")] }
            try db.exec("delete from wharf.jobs where schedule_name like 'bench-cron-%'")
            if idle > 0 { try db.exec("delete from wharf.schedules where name like 'bench-idle-%'") }
        }
        if json {
            let o: JSON = [
                "schedules": .from(schedules), "idle": .from(idle), "pattern": .string(pattern),
                "windowSeconds": .double(windowS),
                "fires": .from(fires), "expectedFires": .double(expected.rounded()),
                "firesPerSec": .double((Double(fires) / windowS).rounded()), "lagP50Ms": .double(p50),
                "lagP99Ms": .double(p99), "lagP999Ms": .double(p999), "lagMaxMs": .double(maxLag),
                "registerPerSec": .double((Double(schedules) / registerSeconds).rounded()),
            ]
            print(o.text)
        }
    }

    /// Sends `count` calls of cron.upsert (params with a name) or cron.remove (params with only a
    /// name), keeping up to 256 in flight.
    private func pipelined(_ c: BlockingConnection, count: Int, _ params: (Int) -> JSONObject) throws {
        var sent = 0
        var received = 0
        while received < count {
            while sent < count && sent - received < 256 {
                let p = params(sent)
                let method = p.count == 1 ? "cron.remove" : "cron.upsert"
                let request: JSON = ["jsonrpc": "2.0", "id": .from(sent), "method": .string(method), "params": .object(p)]
                try c.sendLine(request.text)
                sent += 1
            }
            let reply = try c.readMessage()
            if let e = reply["error"], e["code"] != -32004 { throw ValidationError("server refused: \(e.text)") }
            received += 1
        }
    }
}

/// A blocking libpq connection for the benchmark's bookkeeping (never used by the server).
final class BenchDatabase {
    private let conn: OpaquePointer

    init(_ conninfo: String) throws {
        guard let c = PQconnectdb(conninfo) else { throw ValidationError("cannot allocate a connection") }
        conn = c
        guard PQstatus(c) == CONNECTION_OK else {
            defer { PQfinish(c) }
            throw ValidationError("cannot connect to --database: \(String(cString: PQerrorMessage(c)))")
        }
    }

    deinit { PQfinish(conn) }

    func exec(_ sql: String) throws { _ = try row(sql) }

    /// The first row of `sql`'s result as text (empty when it returns no rows).
    func row(_ sql: String) throws -> [String] {
        guard let r = PQexec(conn, sql) else { throw ValidationError("query failed") }
        defer { PQclear(r) }
        let status = PQresultStatus(r)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            throw ValidationError("query failed: \(String(cString: PQresultErrorMessage(r)))")
        }
        guard PQntuples(r) > 0 else { return [] }
        return (0..<PQnfields(r)).map { String(cString: PQgetvalue(r, 0, $0)) }
    }
}
