import ArgumentParser
import Foundation
import Histogram
import WharfClient
import WharfRPC

/// `wharf bench http`: `POST /rpc` with `server.ping` over kept-alive HTTP/1.1 connections to the side
/// door (Protocol/http.md), each on its own thread with `depth` requests pipelined.
struct BenchHTTP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http", abstract: "Throughput and latency of POST /rpc server.ping over kept-alive HTTP.")

    @OptionGroup var address: HTTPAddress
    @Option(help: "HTTP connections (one thread each).") var connections = 8
    @Option(help: "Requests pipelined per connection (1: one at a time).") var depth = 1
    @Option(help: "Seconds to measure (after a one-second warm-up).") var duration = 10.0
    @Option(help: "Token to present (Authorization: Bearer).") var token: String?
    @Flag(help: "Print one JSON object as the last line.") var json = false

    func run() throws {
        let (host, port) = try address.hostPort()
        let body = Array(#"{"jsonrpc":"2.0","id":1,"method":"server.ping"}"#.utf8)
        var headers = [("Content-Type", "application/json")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        let request = BlockingHTTPConnection.encode("POST", "/rpc", host: host, body: body, headers: headers)
        let depth = max(1, self.depth)
        let start = DispatchTime.now().uptimeNanoseconds
        let measureFrom = start + 1_000_000_000
        let measureTo = measureFrom + UInt64(duration * 1e9)
        let results = ThreadResults<(latencies: [UInt64], errors: Int, failure: String?)>()
        let threads = (0..<max(1, connections)).map { _ in
            Thread {
                var latencies: [UInt64] = []
                var errors = 0
                var failure: String?
                do {
                    let c = try BlockingHTTPConnection(host: host, port: port, timeoutSeconds: 10)
                    var sentAt: [UInt64] = []
                    var next = 0
                    for _ in 0..<depth {
                        sentAt.append(DispatchTime.now().uptimeNanoseconds)
                        try c.send(request)
                    }
                    while true {
                        let reply = try c.readReply()
                        let now = DispatchTime.now().uptimeNanoseconds
                        if reply.status != 200 || !reply.text.contains("\"result\"") { errors += 1 }
                        if sentAt[next] >= measureFrom && now <= measureTo { latencies.append(now - sentAt[next]) }
                        if now > measureTo { break }
                        sentAt[next] = DispatchTime.now().uptimeNanoseconds
                        next = (next + 1) % depth
                        try c.send(request)
                    }
                } catch {
                    failure = "\(error)"
                }
                results.add((latencies, errors, failure))
            }
        }
        for t in threads { t.start() }
        let all = results.wait(for: threads.count)
        if let failure = all.compactMap(\.failure).first { throw ValidationError(failure) }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for r in all { for l in r.latencies { histogram.record(l) } }
        let count = all.reduce(0) { $0 + $1.latencies.count }
        let errors = all.reduce(0) { $0 + $1.errors }
        let perSec = Double(count) / duration
        let p50 = Double(histogram.valueAtPercentile(50)) / 1e6
        let p99 = Double(histogram.valueAtPercentile(99)) / 1e6
        print(
            String(
                format:
                    "http POST /rpc server.ping: %d connections x %d pipelined, %.1f s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, errors %d",
                connections, depth, duration, perSec, p50, p99, errors))
        if json {
            let o: JSON = [
                "method": "server.ping", "transport": "http", "connections": .from(connections), "depth": .from(depth),
                "seconds": .double(duration), "requestsPerSec": .double(perSec.rounded()), "p50Ms": .double(p50),
                "p99Ms": .double(p99), "errors": .from(errors),
            ]
            print(o.text)
        }
        if errors > 0 { throw ExitCode(1) }
    }
}

/// What benchmark threads hand back, guarded by a lock.
final class ThreadResults<T>: @unchecked Sendable {  // every access holds `lock`
    private let lock = NSLock()
    private var items: [T] = []

    func add(_ item: T) {
        lock.lock()
        items.append(item)
        lock.unlock()
    }

    /// Waits until `count` items were added, and returns them.
    func wait(for count: Int) -> [T] {
        while true {
            lock.lock()
            let done = items.count >= count
            let all = items
            lock.unlock()
            if done { return all }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }
}

/// Scrapes `GET /metrics` once a second on its own thread while a benchmark runs, as Prometheus would
/// (`wharf bench jobs --scrape-metrics`), over one kept-alive connection.
final class MetricsScraper: @unchecked Sendable {  // `stopped` and the tallies are read and written under `lock`
    private let lock = NSLock()
    private var stopped = false
    private(set) var scrapes = 0
    private(set) var bytes = 0
    private(set) var slowestMs = 0.0
    private(set) var failure: String?
    private let finished = ThreadResults<Bool>()

    init(host: String, port: Int) {
        Thread { [self] in
            do {
                let c = try BlockingHTTPConnection(host: host, port: port, timeoutSeconds: 10)
                var next = DispatchTime.now().uptimeNanoseconds
                while !isStopped {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let reply = try c.request("GET", "/metrics")
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                    guard reply.status == 200 else { throw ValidationError("GET /metrics answered \(reply.status)") }
                    lock.lock()
                    scrapes += 1
                    bytes += reply.body.count
                    slowestMs = max(slowestMs, ms)
                    lock.unlock()
                    next += 1_000_000_000
                    while !isStopped && DispatchTime.now().uptimeNanoseconds < next {
                        Thread.sleep(forTimeInterval: 0.02)
                    }
                }
            } catch {
                lock.lock()
                failure = "\(error)"
                lock.unlock()
            }
            finished.add(true)
        }.start()
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    /// Stops scraping and waits for the thread; a line saying what it did.
    func stop() -> String {
        lock.lock()
        stopped = true
        lock.unlock()
        _ = finished.wait(for: 1)
        if let failure { return "scraper failed: \(failure)" }
        return String(
            format: "%d scrapes of GET /metrics, one a second, %d bytes each on average, slowest %.1f ms", scrapes,
            scrapes > 0 ? bytes / scrapes : 0, slowestMs)
    }
}
