import ArgumentParser
import Foundation
import Histogram
import WharfRPC
import WharfTLS
import WharfUV

/// `wharf bench jobs`: enqueue, drain, steady state and idle pickup latency against a running server,
/// with real TCP clients, then a check that no job was lost or completed twice.
struct BenchJobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "Job throughput (enqueue, drain, steady) and idle pickup latency.")

    @Option(help: "Server address, HOST:PORT (default: $WHARF_SERVER or 127.0.0.1:7411).") var server = defaultServer
    @Option(help: "Jobs per phase.") var jobs = 20_000
    @Option(help: "Producer connections.") var producers = 2
    @Option(help: "Worker connections.") var workers = 4
    @Option(help: "Jobs per lease (and per enqueueBatch call in the enqueue phase).") var batch = 100
    @Option(help: "Jobs per enqueueBatch call in the enqueue phase (default: --batch).") var enqueueBatch: Int?
    @Option(help: "Pickup latency samples.") var samples = 200
    @Option(help: "Single enqueues each producer keeps in flight in the steady phase.") var depth = 64
    @Option(help: "Token to present.") var token: String?
    @Option(
        help: ArgumentHelp(
            "Jobs to pass through the drain queue before measuring (enqueued, leased, completed).",
            discussion: "Measures a table that has aged: its indexes and heap carry what those jobs left behind."))
    var preAge = 0
    @Option(
        help: ArgumentHelp(
            "The server's PostgreSQL (connection string), to add the database's costs per job.",
            discussion:
                "CPU of its backends (read from /proc when it runs on this machine), WAL bytes and row versions."))
    var database: String?
    @Flag(help: "Print one JSON object as the last line.") var json = false
    @Flag(help: "Scrape GET /metrics once a second while measuring (at --http), as Prometheus would.")
    var scrapeMetrics = false
    @OptionGroup var address: HTTPAddress
    @OptionGroup(title: "TLS") var tls: ClientTLSOptions

    func run() throws {
        let (host, port) = try parseHostPort(server)
        var scraper: MetricsScraper?
        if scrapeMetrics {
            let (httpHost, httpPort) = try address.hostPort()
            scraper = MetricsScraper(host: httpHost, port: httpPort)
        }
        let db = try database.map { try BenchDatabase($0) }
        let box = UncheckedBox(
            JobsBenchRun(
                host: host, port: port, jobs: jobs, producers: producers, workers: workers, batch: batch,
                enqueueBatch: enqueueBatch ?? batch, samples: samples, depth: depth, token: token, database: db,
                preAge: preAge))
        box.value.tls = try tls.context()
        runOnLoopThread { box.value.run() }
        if let scraper { print("scrape:  \(scraper.stop())") }
        let r = box.value
        if let error = r.error { throw ValidationError(error) }
        if preAge > 0 { print("aged:    \(preAge) jobs passed through the drain queue before measuring") }
        let pickup50 = Double(r.pickup.valueAtPercentile(50)) / 1000
        let pickup99 = Double(r.pickup.valueAtPercentile(99)) / 1000
        print(
            String(
                format: "enqueue: %d jobs in batches of %d from %d producers: %.0f jobs/s", jobs, r.enqueueBatch,
                producers,
                r.enqueuePerSec))
        print(
            String(
                format: "drain:   %d jobs, %d workers x lease batch %d: %.0f jobs/s", jobs, workers, batch,
                r.drainPerSec))
        print(
            String(
                format:
                    "steady:  %d jobs, %d producers (single enqueues, %d in flight each) + %d workers: %.0f jobs/s (enqueue calls %.0f/s)",
                jobs, producers, depth, workers, r.steadyPerSec, r.steadyEnqueuePerSec))
        print(
            String(
                format: "pickup:  p50 %.3f ms, p99 %.3f ms over %d samples (enqueue sent -> lease reply)", pickup50,
                pickup99, samples))
        print("check:   lost \(r.lost), duplicated \(r.duplicated)")
        for c in r.costs { print("cost:    \(c.phase.padding(toLength: 8, withPad: " ", startingAt: 0))\(c.line)") }
        if json {
            var o: JSON = [
                "enqueuePerSec": .double(r.enqueuePerSec.rounded()), "drainPerSec": .double(r.drainPerSec.rounded()),
                "steadyPerSec": .double(r.steadyPerSec.rounded()), "pickupP50Ms": .double(pickup50),
                "pickupP99Ms": .double(pickup99), "lost": .from(r.lost), "duplicated": .from(r.duplicated),
            ]
            if case .object(var obj) = o {
                obj["costPerJob"] = .object(JSONObject(r.costs.map { (key: $0.phase, value: $0.json) }))
                o = .object(obj)
            }
            print(o.text)
        }
        if r.lost != 0 || r.duplicated != 0 { throw ExitCode(1) }
    }
}

/// One run of the jobs benchmark on its own loop. Loop-thread only while running.
final class JobsBenchRun {
    let host: String
    let port: Int
    let jobs: Int
    let producerCount: Int
    let workerCount: Int
    let batch: Int
    /// Jobs per `jobs.enqueueBatch` call in the enqueue phase.
    let enqueueBatch: Int
    let samples: Int
    let token: String?
    var tls: TLSContext?
    let database: BenchDatabase?
    let preAge: Int
    /// What each throughput phase cost per job.
    let phases: BenchPhases
    var costs: [(phase: String, line: String, json: JSON)] { phases.costs }
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)

    var enqueuePerSec = 0.0
    var drainPerSec = 0.0
    var steadyPerSec = 0.0
    var steadyEnqueuePerSec = 0.0
    var pickup = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var lost = 0
    var duplicated = 0
    var error: String? { phases.error }

    private var loop: EventLoop!
    private var producers: [LoopRPCClient] = []
    private var workers: [LoopRPCClient] = []
    private var control: LoopRPCClient!
    private var completedIDs: [String: Int] = [:]

    let steadyDepth: Int

    init(
        host: String, port: Int, jobs: Int, producers: Int, workers: Int, batch: Int, enqueueBatch: Int, samples: Int,
        depth: Int, token: String?, database: BenchDatabase?, preAge: Int
    ) {
        self.database = database
        phases = BenchPhases(database: database)
        self.preAge = max(0, preAge)
        steadyDepth = max(1, depth)
        self.host = host
        self.port = port
        self.jobs = jobs
        producerCount = max(1, producers)
        workerCount = max(1, workers)
        self.batch = max(1, batch)
        self.enqueueBatch = min(max(1, enqueueBatch), 10_000)
        self.samples = samples
        self.token = token
    }

    static func nowNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func run() {
        do {
            try LoopRPCClient.runConnected(
                count: producerCount + workerCount + 1, host: host, port: port, token: token, tls: tls,
                ready: { [unowned self] loop, all in
                    self.loop = loop
                    self.producers = Array(all[0..<self.producerCount])
                    self.workers = Array(all[self.producerCount..<(self.producerCount + self.workerCount)])
                    self.control = all.last!
                    self.phases.loop = loop
                    self.phases.control = self.control
                    self.phases.clients = self.producers + self.workers
                    self.phasePreAge(remaining: self.preAge) {
                        self.phases.begin { self.phaseEnqueue() }
                    }
                },
                failed: { [unowned self] message in self.phases.error = message })
        } catch {
            phases.error = "\(error)"
        }
    }

    private func queue(_ phase: String) -> String { "bench-\(runID)-\(phase)" }

    // MARK: Pre-age: jobs pass through the drain queue, in chunks, before anything is measured.

    private func phasePreAge(remaining: Int, then next: @escaping () -> Void) {
        guard remaining > 0 else { return next() }
        let chunk = min(50_000, remaining)
        enqueue(chunk, into: queue("drain"), batch: 1_000) { [unowned self] in
            self.startWorkers(queue: self.queue("drain"), expected: chunk, waitMs: 100) { _ in
                self.phases.settle { self.phasePreAge(remaining: remaining - chunk, then: next) }
            }
        }
    }

    // MARK: Enqueue phase: batches from every producer.

    private func phaseEnqueue() {
        let start = Self.nowNs()
        enqueue(jobs, into: queue("drain"), batch: enqueueBatch) { [unowned self] in
            self.enqueuePerSec = Double(self.jobs) / (Double(Self.nowNs() - start) / 1e9)
            self.phases.close("enqueue", jobs: self.jobs) { self.phaseDrain() }
        }
    }

    /// Enqueues `count` jobs in batches, two in flight per producer.
    private func enqueue(_ count: Int, into q: String, batch: Int, done: @escaping () -> Void) {
        var remaining = count
        var acked = 0
        func sendNext(_ p: LoopRPCClient) {
            guard remaining > 0 else { return }
            let n = min(batch, remaining)
            remaining -= n
            let items = (0..<n).map { i -> JSON in ["queue": .string(q), "kind": "noop", "payload": ["n": .from(i)]] }
            p.call("jobs.enqueueBatch", ["jobs": .array(items)]) { [unowned self] r in
                guard self.phases.check(r) != nil else { return }
                acked += n
                if acked == count { done() } else { sendNext(p) }
            }
        }
        for p in producers { for _ in 0..<2 { sendNext(p) } }
    }

    // MARK: Drain: workers lease batches and complete every job.

    private func startWorkers(queue q: String, expected: Int, waitMs: Int, done: @escaping (Double) -> Void) {
        var completed = 0
        let start = Self.nowNs()
        var finished = false
        func leaseLoop(_ w: LoopRPCClient) {
            guard !finished else { return }
            w.call(
                "jobs.lease",
                [
                    "queues": [.string(q)], "max": .from(batch), "leaseMs": 60_000, "waitMs": .from(waitMs),
                    "worker": "bench",
                ]
            ) { [unowned self] r in
                guard let v = self.phases.check(r), !finished else { return }
                let leased = v["jobs"]?.arrayValue ?? []
                w.corked {
                    for j in leased {
                        let id = j["id"]?.stringValue ?? ""
                        w.call("jobs.complete", ["id": .string(id), "leaseToken": j["leaseToken"] ?? .null]) {
                            [unowned self] r in
                            guard self.phases.check(r) != nil else { return }
                            self.completedIDs[id, default: 0] += 1
                            completed += 1
                            if completed == expected && !finished {
                                finished = true
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

    private func phaseDrain() {
        completedIDs = [:]
        startWorkers(queue: queue("drain"), expected: jobs, waitMs: 100) { [unowned self] seconds in
            self.drainPerSec = Double(self.jobs) / seconds
            self.phases.close("drain", jobs: self.jobs) { self.phaseSteady() }
        }
    }

    // MARK: Steady: single enqueues and workers at once.

    private func phaseSteady() {
        let q = queue("steady")
        var remaining = jobs
        var enqueued = 0
        let start = Self.nowNs()
        func sendNext(_ p: LoopRPCClient) {
            guard remaining > 0 else { return }
            remaining -= 1
            p.call("jobs.enqueue", ["queue": .string(q), "kind": "noop", "payload": ["at": .from(Int(Self.nowNs()))]]) {
                [unowned self] r in
                guard self.phases.check(r) != nil else { return }
                enqueued += 1
                if enqueued == self.jobs {
                    self.steadyEnqueuePerSec = Double(self.jobs) / (Double(Self.nowNs() - start) / 1e9)
                }
                sendNext(p)
            }
        }
        startWorkers(queue: q, expected: jobs, waitMs: 1_000) { [unowned self] seconds in
            self.steadyPerSec = Double(self.jobs) / seconds
            self.phases.close("steady", jobs: self.jobs) { self.phasePickup() }
        }
        for p in producers { for _ in 0..<steadyDepth { sendNext(p) } }
    }

    // MARK: Pickup: one idle worker waits; one job is enqueued; time until the lease reply.
    // On the drain queue, which has just moved `jobs` (and `preAge`) jobs: a worker's queue has a past,
    // and its lease scans the claim index from the entries that past left (BENCHMARKS.md).

    private func phasePickup() {
        let q = queue("drain")
        let worker = workers[0]
        var taken = 0
        let warmup = 5
        func sample() {
            var sentAt: UInt64 = 0
            worker.call(
                "jobs.lease",
                ["queues": [.string(q)], "max": 1, "leaseMs": 60_000, "waitMs": 10_000, "worker": "bench-pickup"]
            ) { [unowned self] r in
                let now = Self.nowNs()
                guard let v = self.phases.check(r), let job = v["jobs"]?.arrayValue?.first else {
                    return self.phases.abort("pickup lease returned no job")
                }
                if taken >= warmup { _ = self.pickup.record(max(1, (now - sentAt) / 1000)) }
                taken += 1
                let id = job["id"]?.stringValue ?? ""
                worker.call("jobs.complete", ["id": .string(id), "leaseToken": job["leaseToken"] ?? .null]) {
                    [unowned self] r in
                    guard self.phases.check(r) != nil else { return }
                    self.completedIDs[id, default: 0] += 1
                    if taken == warmup + self.samples { return self.verify() }
                    let t = try! LoopTimer(loop: self.loop)
                    t.start(timeoutMs: UInt64(Int.random(in: 10...20))) {
                        t.close()
                        sample()
                    }
                }
            }
            // Let the lease request reach the server and start waiting before the enqueue.
            let t = try! LoopTimer(loop: loop)
            t.start(timeoutMs: 5) { [unowned self] in
                t.close()
                sentAt = Self.nowNs()
                self.control.call("jobs.enqueue", ["queue": .string(q), "kind": "noop"]) { [unowned self] r in
                    _ = self.phases.check(r)
                }
            }
        }
        sample()
    }

    // MARK: Verification against the database.

    private func verify() {
        duplicated = completedIDs.values.filter { $0 > 1 }.count
        let expected: [(String, Int)] = [
            (queue("drain"), jobs + preAge + samples + 5), (queue("steady"), jobs),
        ]
        var pending = expected.count
        for (q, n) in expected {
            control.call("queues.stats", ["queue": .string(q)]) { [unowned self] r in
                guard let v = self.phases.check(r), let counts = v["counts"]?.objectValue else { return }
                let completed = Int(counts["completed"]?.intValue ?? 0)
                let unfinished = counts.pairs.filter { $0.key != "completed" }.reduce(0) {
                    $0 + Int($1.value.intValue ?? 0)
                }
                self.lost += max(0, n - completed, unfinished)
                self.duplicated += max(0, completed - n)
                pending -= 1
                if pending == 0 { self.loop.stop() }
            }
        }
    }
}
