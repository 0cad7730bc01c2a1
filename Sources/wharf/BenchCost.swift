import CLibPQ
import Foundation
import WharfRPC
import WharfUV

/// What a benchmark phase cost, read before and after it: the server's CPU time and the PostgreSQL
/// round trips and statements it sent (`server.info` `usage`), the client calls the benchmark made,
/// and with `--database` the database's side: CPU time of its backends and WAL writer (from `/proc`,
/// so only when PostgreSQL runs on this machine), WAL bytes written, and row versions written in
/// schema `wharf` (`pg_stat_user_tables`, which backends report within about a second of going idle;
/// the benchmark lets each phase settle before it reads them).
struct CostSnapshot {
    var serverCPUUs: Int64 = 0
    var dbSegments: Int64 = 0
    var dbStatements: Int64 = 0
    var clientCalls: Int64 = 0
    var postgresCPUUs: Int64?
    var walBytes: Int64?
    var rowWrites: Int64?
    var hotUpdates: Int64?

    /// How long a phase settles before the database's counters are read: PostgreSQL reports an idle
    /// backend's table statistics up to 10 s late.
    static let databaseSettleMs: UInt64 = 11_000

    /// Reads the server's counters through `control` (`server.info`), the calls `clients` sent, and
    /// with `database` the database's side.
    static func take(
        control: LoopRPCClient, clients: [LoopRPCClient], database: BenchDatabase?,
        _ then: @escaping (Result<CostSnapshot, RPCError>) -> Void
    ) {
        control.call("server.info", nil) { r in
            then(
                r.map { info in
                    var s = CostSnapshot()
                    s.read(serverInfo: info)
                    s.clientCalls = clients.reduce(0) { $0 + $1.callsSent }
                    if let database { s.read(database: database) }
                    return s
                })
        }
    }

    /// The server's part, from a `server.info` reply.
    mutating func read(serverInfo info: JSON) {
        let u = info["usage"]
        serverCPUUs = (u?["cpuUserUs"]?.intValue ?? 0) + (u?["cpuSystemUs"]?.intValue ?? 0)
        dbSegments = u?["dbSegments"]?.intValue ?? 0
        dbStatements = u?["dbStatements"]?.intValue ?? 0
    }

    /// The database's part; fields stay nil when a source cannot be read.
    mutating func read(database db: BenchDatabase) {
        if let r = try? db.row("select pg_current_wal_lsn() - '0/0'"), let v = r.first { walBytes = Int64(v) }
        if let r = try? db.row(
            """
            select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0), coalesce(sum(n_tup_hot_upd), 0)
            from pg_stat_user_tables where schemaname = 'wharf'
            """), r.count == 2
        {
            rowWrites = Int64(r[0])
            hotUpdates = Int64(r[1])
        }
        if let r = try? db.row(
            """
            select string_agg(pid::text, ',') from pg_stat_activity
            where (datname = current_database() and pid <> pg_backend_pid()) or backend_type = 'walwriter'
            """), let pids = r.first
        {
            postgresCPUUs = Self.cpuUs(pids: pids.split(separator: ",").compactMap { Int($0) })
        }
    }

    /// User plus system CPU of processes on this machine, or nil when one cannot be read.
    static func cpuUs(pids: [Int]) -> Int64? {
        let tick = Int64(sysconf(Int32(_SC_CLK_TCK)))
        guard tick > 0, !pids.isEmpty else { return nil }
        var total: Int64 = 0
        for pid in pids {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Fields after the command name; utime and stime are fields 14 and 15 of the line.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Int64(fields[11]), let system = Int64(fields[12]) else { return nil }
            total += (user + system) * 1_000_000 / tick
        }
        return total
    }

    /// The cost per job of the interval from `self` to `after`, as one line and as JSON.
    func perJob(until after: CostSnapshot, jobs: Int) -> (line: String, json: JSON) {
        let n = Double(max(1, jobs))
        func per(_ a: Int64?, _ b: Int64?) -> Double? { a.flatMap { a in b.map { Double($0 - a) / n } } }
        let server = Double(after.serverCPUUs - serverCPUUs) / n
        let calls = Double(after.clientCalls - clientCalls) / n
        let segments = Double(after.dbSegments - dbSegments) / n
        let statements = Double(after.dbStatements - dbStatements) / n
        let pg = per(postgresCPUUs, after.postgresCPUUs)
        let wal = per(walBytes, after.walBytes)
        let rows = per(rowWrites, after.rowWrites)
        let hot = per(hotUpdates, after.hotUpdates)
        func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "n/a" }
        let line =
            "server \(f(server, "%.1f")) µs CPU, postgres \(f(pg, "%.1f")) µs CPU, "
            + "\(f(calls, "%.3f")) client calls, \(f(segments, "%.3f")) round trips and "
            + "\(f(statements, "%.3f")) statements to PostgreSQL, \(f(wal, "%.0f")) B WAL, "
            + "\(f(rows, "%.2f")) row versions (\(f(hot, "%.2f")) HOT) per job"
        func j(_ v: Double?) -> JSON { v.map { .double(($0 * 1000).rounded() / 1000) } ?? .null }
        let json: JSON = [
            "serverCPUUsPerJob": j(server), "postgresCPUUsPerJob": j(pg), "clientCallsPerJob": j(calls),
            "roundTripsPerJob": j(segments), "statementsPerJob": j(statements), "walBytesPerJob": j(wal),
            "rowVersionsPerJob": j(rows), "hotUpdatesPerJob": j(hot),
        ]
        return (line, json)
    }
}

/// The phases of one benchmark run on its loop (loop thread only): each phase's cost per job, read
/// from a `CostSnapshot` taken when it begins and another once it has settled, and the run's first
/// error, which stops the loop.
final class BenchPhases {
    let database: BenchDatabase?
    var loop: EventLoop!
    /// The connection that reads `server.info`, and the connections whose calls a phase counts.
    var control: LoopRPCClient!
    var clients: [LoopRPCClient] = []
    /// What each phase cost per job, in phase order.
    var costs: [(phase: String, line: String, json: JSON)] = []
    var error: String?
    private var mark = CostSnapshot()

    init(database: BenchDatabase?) { self.database = database }

    /// Keeps the first error and stops the run.
    func abort(_ message: String) {
        if error == nil { error = message }
        loop.stop()
    }

    /// The value, or nil after aborting the run with the server's error.
    func check<T>(_ r: Result<T, RPCError>) -> T? {
        switch r {
        case .success(let v): return v
        case .failure(let e):
            abort("server error: \(e)")
            return nil
        }
    }

    /// Lets outstanding long polls end before the next phase starts. With `--database` it waits
    /// longer: a PostgreSQL backend that reported its table statistics less than a second before going
    /// idle reports the rest only 10 s later, and the row versions per job would be short.
    func settle(then next: @escaping () -> Void) {
        let t = try! LoopTimer(loop: loop)
        t.start(timeoutMs: database == nil ? 1_200 : CostSnapshot.databaseSettleMs) {
            t.close()
            next()
        }
    }

    /// Marks where the next phase's costs begin.
    func begin(then next: @escaping () -> Void) {
        snapshot { [unowned self] s in
            self.mark = s
            next()
        }
    }

    /// Lets the phase settle, then records what it cost per job; the next phase begins there.
    func close(_ phase: String, jobs: Int, then next: @escaping () -> Void) {
        settle { [unowned self] in
            self.snapshot { s in
                let c = self.mark.perJob(until: s, jobs: jobs)
                self.costs.append((phase, c.line, c.json))
                self.mark = s
                next()
            }
        }
    }

    private func snapshot(_ then: @escaping (CostSnapshot) -> Void) {
        CostSnapshot.take(control: control, clients: clients, database: database) { [unowned self] r in
            guard let s = self.check(r) else { return }
            then(s)
        }
    }
}
