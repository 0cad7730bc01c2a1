import ArgumentParser
import Foundation
import WharfClient
import WharfRPC

/// `wharf bench worker`: the Swift `Worker` a user runs (WharfClient), draining no-op jobs.
struct BenchWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Drain throughput of the Swift Worker (WharfClient) running no-op jobs.",
        discussion: """
            Enqueues --jobs no-op jobs in batches of 1,000, then runs --workers Worker instances in this \
            process (one connection each, --concurrency slots each) until every job's completion has been \
            acknowledged. Compare with `wharf bench jobs`, whose drain uses the benchmark's own loop clients.
            """)

    @Option(help: "Server address, HOST:PORT (default: $WHARF_SERVER or 127.0.0.1:7411).") var server = defaultServer
    @Option(help: "Jobs to drain.") var jobs = 20_000
    @Option(help: "Worker instances, each on its own connection.") var workers = 2
    @Option(help: "Jobs each worker runs at once.") var concurrency = 200
    @Option(help: "Token to present.") var token: String?
    @Option(help: "The server's PostgreSQL (connection string), to add the database's costs per job.")
    var database: String?
    @Flag(help: "Print one JSON object as the last line.") var json = false

    func run() throws {
        let (host, port) = try parseHostPort(server)
        let db = try database.map { try BenchDatabase($0) }
        let run = WorkerBenchRun(
            host: host, port: port, token: token, jobs: max(1, jobs), workers: max(1, workers),
            concurrency: max(1, concurrency), database: db)
        let r = try waitFor { try await run.measure() }
        print(
            String(
                format: "worker: %d jobs, %d Swift Workers x concurrency %d: %.0f jobs/s, %.1f jobs per outcome batch",
                jobs, workers, concurrency, r.perSec, r.jobsPerBatch))
        print(String(format: "client: %.1f µs CPU per job (this process: workers and handlers)", r.clientCPUUs))
        print("cost:   \(r.cost.line)")
        print("check:  leased \(r.leased), completed \(r.completed), left in the queue \(r.left)")
        if json {
            print(
                JSON.object([
                    "jobs": .from(jobs), "workers": .from(workers), "concurrency": .from(concurrency),
                    "jobsPerSec": .double(r.perSec.rounded()),
                    "jobsPerBatch": .double((r.jobsPerBatch * 10).rounded() / 10),
                    "clientCPUUsPerJob": .double((r.clientCPUUs * 10).rounded() / 10), "costPerJob": r.cost.json,
                    "leased": .from(r.leased), "completed": .from(r.completed), "left": .from(r.left),
                ]).text)
        }
        if r.completed != jobs || r.left != 0 {
            throw ValidationError("completed \(r.completed) of \(jobs) jobs, \(r.left) left in the queue")
        }
    }
}

final class WorkerBenchRun: Sendable {
    let host: String
    let port: Int
    let token: String?
    let jobs: Int
    let workers: Int
    let concurrency: Int
    nonisolated(unsafe) let database: BenchDatabase?
    let queue = "bench-" + String(UInt32.random(in: 0...UInt32.max), radix: 36) + "-worker"

    struct Report {
        var perSec = 0.0
        var jobsPerBatch = 0.0
        var clientCPUUs = 0.0
        var cost: (line: String, json: JSON) = ("", .null)
        var leased = 0
        var completed = 0
        var left = 0
    }

    init(
        host: String, port: Int, token: String?, jobs: Int, workers: Int, concurrency: Int, database: BenchDatabase?
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.jobs = jobs
        self.workers = workers
        self.concurrency = concurrency
        self.database = database
    }

    func measure() async throws -> Report {
        let control = WharfClient(host: host, port: port, token: token, clientName: "wharf-bench")
        defer { control.close() }
        var sent = 0
        while sent < jobs {
            let n = min(1_000, jobs - sent)
            let items = (0..<n).map { i -> JSON in
                ["queue": .string(queue), "kind": "noop", "payload": ["n": .from(sent + i)]]
            }
            _ = try await control.call("jobs.enqueueBatch", ["jobs": .array(items)])
            sent += n
        }
        // The database reports the enqueues' row versions up to 10 s late: they must not count.
        try await Task.sleep(nanoseconds: database == nil ? 0 : CostSnapshot.databaseSettleMs * 1_000_000)
        let before = try await snapshot(control)
        let cpuBefore = Self.processCPUUs()
        let started = DispatchTime.now().uptimeNanoseconds
        let pool = (0..<workers).map { i in
            Worker(
                client: WharfClient(host: host, port: port, token: token, clientName: "wharf-bench-worker"),
                queues: [queue], concurrency: concurrency, leaseMs: 60_000, name: "bench-worker-\(i)")
        }
        for w in pool { w.handle("noop") { _ in nil } }
        let running = pool.map { w in Task { await w.run() } }
        while pool.reduce(0, { $0 + $1.stats.completed }) < jobs {
            try await Task.sleep(nanoseconds: 2_000_000)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let calls = pool.reduce(0) { $0 + $1.client.requestsSent }
        let cpuAfter = Self.processCPUUs()
        for w in pool { w.stop() }
        for t in running { await t.value }
        for w in pool { w.client.close() }
        try await Task.sleep(nanoseconds: database == nil ? 0 : CostSnapshot.databaseSettleMs * 1_000_000)
        var after = try await snapshot(control)
        after.clientCalls = Int64(calls)
        var r = Report()
        let stats = pool.map(\.stats)
        r.perSec = Double(jobs) / seconds
        r.leased = stats.reduce(0) { $0 + $1.leased }
        r.completed = stats.reduce(0) { $0 + $1.completed }
        r.jobsPerBatch = Double(r.completed) / Double(max(1, stats.reduce(0) { $0 + $1.batches }))
        r.clientCPUUs = Double(cpuAfter - cpuBefore) / Double(jobs)
        r.cost = before.perJob(until: after, jobs: jobs)
        let counts = try await control.call("queues.stats", ["queue": .string(queue)])
        let c = counts["counts"]
        r.left = ["available", "running", "retryable", "scheduled"].reduce(0) { $0 + Int(c?[$1]?.intValue ?? 0) }
        return r
    }

    private func snapshot(_ control: WharfClient) async throws -> CostSnapshot {
        var s = CostSnapshot()
        s.read(serverInfo: try await control.call("server.info"))
        if let database { s.read(database: database) }
        return s
    }

    /// CPU time (user and system) this process has used, in microseconds.
    static func processCPUUs() -> Int64 {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Int64(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1_000_000 + Int64(u.ru_utime.tv_usec + u.ru_stime.tv_usec)
    }
}

/// Runs `body` on the concurrency pool and waits for it on this (command-line) thread.
private func waitFor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let outcome = Outcome<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { outcome.value = .success(try await body()) } catch { outcome.value = .failure(error) }
        done.signal()
    }
    done.wait()
    return try outcome.value!.get()
}

/// A result written once before a semaphore is signalled and read after it.
private final class Outcome<T>: @unchecked Sendable {
    var value: Result<T, Error>?
}
