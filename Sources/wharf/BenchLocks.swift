import ArgumentParser
import Foundation
import Histogram
import WharfRPC
import WharfUV

/// `wharf bench locks`: acquire+release loops from N clients over K names, durable grants.
struct BenchLocks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "locks", abstract: "Acquire+release throughput and acquire latency of fenced locks.")

    @Option(help: "Server address, HOST:PORT (default: $WHARF_SERVER or 127.0.0.1:7411).") var server = defaultServer
    @Option(help: "Clients, each looping acquire then release (one request in flight per client).") var clients = 8
    @Option(help: "TCP connections the clients share (default: one per client).") var connections: Int?
    @Option(help: "Distinct lock names (names >= clients means no contention).") var names = 64
    @Option(help: "Seconds to measure after a one-second warm-up.") var duration = 10.0
    @Option(help: "The server's PostgreSQL (connection string), to add the database's costs per acquire.")
    var database: String?
    @Flag(help: "Print one JSON object as the last line.") var json = false

    func run() throws {
        let (host, port) = try parseHostPort(server)
        let db = try database.map { try BenchDatabase($0) }
        let box = UncheckedBox(
            LockBenchRun(
                host: host, port: port, clients: clients, connections: connections ?? clients, names: names,
                durationS: duration, database: db))
        runOnLoopThread { box.value.run() }
        let r = box.value
        if let error = r.error { throw ValidationError(error) }
        let perSec = Double(r.acquired) / r.seconds
        let p50 = Double(r.latency.valueAtPercentile(50)) / 1000
        let p99 = Double(r.latency.valueAtPercentile(99)) / 1000
        print(
            String(
                format:
                    "locks: %d clients on %d connections over %d names, %.1f s: %.0f acquires/s (each followed by a release), acquire p50 %.3f ms, p99 %.3f ms, denied %d",
                clients, r.connections, names, r.seconds, perSec, p50, p99, r.denied))
        if let cost = r.cost { print("cost:  \(cost.line.replacingOccurrences(of: "per job", with: "per acquire+release"))") }
        if json {
            #if DEBUG
                let build = "debug"
            #else
                let build = "release"
            #endif
            var o: JSONObject = [
                "clients": .from(clients), "connections": .from(r.connections), "names": .from(names), "acquiresPerSec": .double(perSec.rounded()),
                "acquireP50Ms": .double(p50), "acquireP99Ms": .double(p99), "denied": .from(r.denied),
                "seconds": .double((r.seconds * 100).rounded() / 100), "build": .string(build),
            ]
            if let cost = r.cost { o["costPerAcquire"] = cost.json }
            print(JSON.object(o).text)
        }
    }
}

final class LockBenchRun {
    let host: String
    let port: Int
    let clients: Int
    let connections: Int
    let names: Int
    let durationS: Double
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var acquired = 0
    var denied = 0
    var seconds = 0.0
    var error: String?
    let database: BenchDatabase?
    /// What the measured window cost per acquire (with its release).
    var cost: (line: String, json: JSON)?
    private var mark = CostSnapshot()
    private var conns: [LoopRPCClient] = []
    private var measuring = false
    private var stopping = false
    private let prefix = "bench-" + String(UInt32.random(in: 0...UInt32.max), radix: 36) + "-"

    init(host: String, port: Int, clients: Int, connections: Int, names: Int, durationS: Double, database: BenchDatabase?) {
        self.database = database
        self.host = host
        self.port = port
        self.clients = max(1, clients)
        self.connections = min(max(1, connections), self.clients)
        self.names = max(1, names)
        self.durationS = durationS
    }

    static func nowNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func run() {
        do {
            try LoopRPCClient.runConnected(
                count: connections, host: host, port: port,
                ready: { [unowned self] loop, conns in
                    self.conns = conns
                    for k in 0..<self.clients { self.cycle(conns[k % conns.count], client: k, step: 0) }
                    self.startClock(loop, control: conns[0])
                },
                failed: { [unowned self] message in self.error = message })
        } catch {
            self.error = "\(error)"
        }
    }

    private func startClock(_ loop: EventLoop, control: LoopRPCClient) {
        let t = try! LoopTimer(loop: loop)
        var start: UInt64 = 0
        t.start(timeoutMs: 1000) { [unowned self] in
            self.snapshot(control) { [unowned self] s in
                self.mark = s
                self.latency.reset()
                self.acquired = 0
                self.denied = 0
                self.measuring = true
                start = Self.nowNs()
                t.start(timeoutMs: UInt64(self.durationS * 1000)) { [unowned self] in
                    self.seconds = Double(Self.nowNs() - start) / 1e9
                    self.stopping = true
                    // With --database, wait until idle backends have reported their row versions; the
                    // server's CPU is read at once, the rest after.
                    self.snapshot(control, database: false) { [unowned self] serverSide in
                        t.start(timeoutMs: self.database == nil ? 0 : CostSnapshot.databaseSettleMs) {
                            [unowned self] in
                            t.close()
                            var s = serverSide
                            if let db = self.database { s.read(database: db) }
                            self.cost = self.mark.perJob(until: s, jobs: self.acquired)
                            loop.stop()
                        }
                    }
                }
            }
        }
    }

    /// The server's counters (and the database's, with `--database`) and the calls the clients sent.
    private func snapshot(
        _ control: LoopRPCClient, database readDatabase: Bool = true, _ then: @escaping (CostSnapshot) -> Void
    ) {
        CostSnapshot.take(control: control, clients: conns, database: readDatabase ? database : nil) { r in
            then((try? r.get()) ?? CostSnapshot())
        }
    }

    /// Client `k` walks its own names (k, k + clients, ...) so that names >= clients never contend.
    private func cycle(_ c: LoopRPCClient, client k: Int, step: Int) {
        guard !stopping else { return }
        let slots = max(1, names / clients)
        let name = prefix + String((k + (step % slots) * clients) % names)
        let sent = Self.nowNs()
        c.call("locks.acquire", ["name": .string(name), "holder": .string("bench-\(k)"), "ttlMs": 10_000]) {
            [unowned self] r in
            let now = Self.nowNs()
            guard case .success(let v) = r else {
                self.error = "acquire failed: \(r)"
                self.stopping = true
                return
            }
            guard v["granted"] == true, let token = v["token"] else {
                if self.measuring { self.denied += 1 }
                return self.cycle(c, client: k, step: step + 1)
            }
            if self.measuring {
                self.acquired += 1
                _ = self.latency.record(max(1, (now - sent) / 1000))
            }
            c.call("locks.release", ["name": .string(name), "token": token]) { [unowned self] _ in
                self.cycle(c, client: k, step: step + 1)
            }
        }
    }
}
