import ArgumentParser
import Foundation
import WharfRPC
import WharfTLS
import WharfUV

/// `wharf bench runs`: multi-step runs (each step completed with `jobs.complete {next}`, which enqueues
/// the next step in the same transaction) against the same number of plain jobs, with the same workers
/// and lease batches, and what each step and each plain job cost. Each phase is timed and costed from
/// its first enqueue (batches of 1,000 from one connection: a run's first steps, or all the plain jobs)
/// to its last completion, so a plain job is charged its enqueue as a step is charged its successor's.
struct BenchRuns: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs", abstract: "Run steps per second (jobs.complete {next}) next to plain jobs per second.")

    @Option(help: "Server address, HOST:PORT (default: $WHARF_SERVER or 127.0.0.1:7411).") var server = defaultServer
    @Option(help: "Runs started at once.") var runs = 2_000
    @Option(help: "Steps per run.") var steps = 5
    @Option(help: "Worker connections.") var workers = 4
    @Option(help: "Jobs per lease.") var batch = 100
    @Option(help: "Token to present.") var token: String?
    @Option(help: "The server's PostgreSQL (connection string), to add the database's costs per step and job.")
    var database: String?
    @OptionGroup(title: "TLS") var tls: ClientTLSOptions

    func run() throws {
        let (host, port) = try parseHostPort(server)
        let db = try database.map { try BenchDatabase($0) }
        let box = UncheckedBox(
            RunsBenchRun(
                host: host, port: port, runs: max(1, runs), steps: max(1, steps), workers: max(1, workers),
                batch: max(1, batch), token: token, database: db))
        box.value.tls = try tls.context()
        runOnLoopThread { box.value.run() }
        let r = box.value
        if let error = r.error { throw ValidationError(error) }
        let total = runs * steps
        print(String(format: "runs:    %d runs x %d steps, %d workers x lease batch %d: %.0f steps/s (%.0f runs/s)",
                     runs, steps, workers, batch, r.stepsPerSec, r.stepsPerSec / Double(steps)))
        print(String(format: "plain:   %d jobs, same workers: %.0f jobs/s", total, r.plainPerSec))
        print(String(format: "ratio:   a step takes %.2fx the time of a plain job", r.plainPerSec / r.stepsPerSec))
        if let cpu = r.cpuRatio() {
            print(String(format: "ratio:   a step costs %.2fx the CPU (server + PostgreSQL) of a plain job", cpu))
        }
        print("check:   runs completed \(r.runsCompleted) of \(runs), steps completed twice \(r.duplicated)")
        for c in r.costs { print("cost:    \(c.phase.padding(toLength: 8, withPad: " ", startingAt: 0))\(c.line)") }
        if r.runsCompleted != runs || r.duplicated != 0 { throw ExitCode(1) }
    }
}

/// One run of the runs benchmark on its own loop. Loop-thread only while running.
final class RunsBenchRun {
    let host: String
    let port: Int
    let runs: Int
    let steps: Int
    let workerCount: Int
    let batch: Int
    let token: String?
    var tls: TLSContext?
    let database: BenchDatabase?
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    var stepsPerSec = 0.0
    var plainPerSec = 0.0
    var runsCompleted = 0
    var duplicated = 0
    let phases: BenchPhases
    var costs: [(phase: String, line: String, json: JSON)] { phases.costs }
    var error: String? { phases.error }

    private var loop: EventLoop!
    private var workers: [LoopRPCClient] = []
    private var control: LoopRPCClient!
    private var completedIDs = Set<String>()

    init(host: String, port: Int, runs: Int, steps: Int, workers: Int, batch: Int, token: String?, database: BenchDatabase?) {
        self.host = host
        self.port = port
        self.runs = runs
        self.steps = steps
        workerCount = workers
        self.batch = batch
        self.token = token
        self.database = database
        phases = BenchPhases(database: database)
    }

    static func nowNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func run() {
        do {
            try LoopRPCClient.runConnected(
                count: workerCount + 1, host: host, port: port, token: token, tls: tls,
                ready: { [unowned self] loop, all in
                    self.loop = loop
                    self.workers = Array(all[0..<self.workerCount])
                    self.control = all.last!
                    self.phases.loop = loop
                    self.phases.control = self.control
                    self.phases.clients = self.workers
                    self.phases.begin {
                        let start = Self.nowNs()
                        self.enqueue(self.runs, into: "bench-\(self.runID)-runs", step: 0) {
                            self.phaseRuns(since: start)
                        }
                    }
                },
                failed: { [unowned self] message in self.phases.error = message })
        } catch {
            phases.error = "\(error)"
        }
    }

    /// Enqueues `count` jobs (payload `{step}`) in batches of 1,000 from the control connection.
    private func enqueue(_ count: Int, into q: String, step: Int?, done: @escaping () -> Void) {
        var remaining = count
        func sendNext() {
            guard remaining > 0 else { return done() }
            let n = min(1_000, remaining)
            remaining -= n
            let payload: JSON = step.map { ["step": .from($0)] } ?? .null
            let items = (0..<n).map { _ -> JSON in ["queue": .string(q), "kind": "noop", "payload": payload] }
            control.call("jobs.enqueueBatch", ["jobs": .array(items)]) { [unowned self] r in
                guard self.phases.check(r) != nil else { return }
                sendNext()
            }
        }
        sendNext()
    }

    /// Workers lease from `q` and finish `expected` jobs: a job whose payload has a `step` below the
    /// last is completed with `next` (the following step), any other plainly.
    private func work(queue q: String, expected: Int, since start: UInt64, done: @escaping (Double) -> Void) {
        var finished = 0
        var over = false
        func leaseLoop(_ w: LoopRPCClient) {
            guard !over else { return }
            w.call(
                "jobs.lease",
                ["queues": [.string(q)], "max": .from(batch), "leaseMs": 60_000, "waitMs": 100, "worker": "bench"]
            ) { [unowned self] r in
                guard let v = self.phases.check(r), !over else { return }
                w.corked {
                    for j in v["jobs"]?.arrayValue ?? [] {
                        let id = j["id"]?.stringValue ?? ""
                        var params: JSONObject = ["id": .string(id), "leaseToken": j["leaseToken"] ?? .null]
                        let step = j["payload"]?["step"]?.intValue
                        if let step, step + 1 < self.steps {
                            params["result"] = ["step": .from(step)]
                            params["next"] = ["payload": ["step": .from(step + 1)]]
                        }
                        w.call("jobs.complete", .object(params)) { [unowned self] r in
                            guard self.phases.check(r) != nil else { return }
                            if !self.completedIDs.insert(id).inserted { self.duplicated += 1 }
                            if let step, step + 1 == self.steps { self.runsCompleted += 1 }
                            finished += 1
                            if finished == expected && !over {
                                over = true
                                done(Double(Self.nowNs() - start) / 1e9)
                            }
                        }
                    }
                    leaseLoop(w)
                }
            }
        }
        for w in workers { leaseLoop(w) }
    }

    private func phaseRuns(since start: UInt64) {
        work(queue: "bench-\(runID)-runs", expected: runs * steps, since: start) { [unowned self] seconds in
            self.stepsPerSec = Double(self.runs * self.steps) / seconds
            self.phases.close("steps", jobs: self.runs * self.steps) {
                let start = Self.nowNs()
                self.enqueue(self.runs * self.steps, into: "bench-\(self.runID)-plain", step: nil) {
                    self.phasePlain(since: start)
                }
            }
        }
    }

    private func phasePlain(since start: UInt64) {
        work(queue: "bench-\(runID)-plain", expected: runs * steps, since: start) { [unowned self] seconds in
            self.plainPerSec = Double(self.runs * self.steps) / seconds
            self.phases.close("plain", jobs: self.runs * self.steps) { self.loop.stop() }
        }
    }

    /// Server and PostgreSQL CPU per step over the same per plain job, when both were measured.
    func cpuRatio() -> Double? {
        func cpu(_ phase: String) -> Double? {
            guard let c = costs.first(where: { $0.phase == phase })?.json,
                let server = c["serverCPUUsPerJob"]?.doubleValue, let pg = c["postgresCPUUsPerJob"]?.doubleValue,
                server + pg > 0
            else { return nil }
            return server + pg
        }
        guard let step = cpu("steps"), let plain = cpu("plain") else { return nil }
        return step / plain
    }
}
