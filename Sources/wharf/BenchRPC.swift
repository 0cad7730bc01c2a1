import ArgumentParser
import Foundation
import Histogram
import WharfRPC
import WharfTLS
import WharfUV

/// `wharf bench rpc`: server.ping over N pipelined connections, driven from one event loop.
struct BenchRPC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc", abstract: "Throughput and latency of server.ping over pipelined connections.")

    @Option(help: "Server address, HOST:PORT.")
    var server = defaultServer

    @Option(help: "TCP connections.")
    var connections = 50

    @Option(help: "Requests in flight per connection.")
    var depth = 8

    @Option(help: "Seconds to measure (after a one-second warm-up).")
    var duration = 10.0

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    @OptionGroup(title: "TLS (through the server's own TLS layer, WharfTLS)") var tls: ClientTLSOptions

    func run() throws {
        let (host, port) = try parseHostPort(server)
        let result = UncheckedBox(
            RPCBenchRun(
                host: host, port: port, connections: connections, depth: depth, durationS: duration,
                tls: try tls.context()))
        runOnLoopThread { result.value.run() }
        let r = result.value
        if let error = r.error { throw ValidationError(error) }
        let perSec = Double(r.completed) / r.measuredSeconds
        let p50 = Double(r.histogram.valueAtPercentile(50)) / 1000
        let p99 = Double(r.histogram.valueAtPercentile(99)) / 1000
        let p999 = Double(r.histogram.valueAtPercentile(99.9)) / 1000
        print(
            (r.tls == nil ? "rpc server.ping" : "rpc server.ping over TLS")
                + String(
                    format:
                        ": %d connections x %d in flight, %.1f s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, errors %d",
                    connections, depth, r.measuredSeconds, perSec, p50, p99, p999, r.errors))
        if json {
            let o: JSON = [
                "method": "server.ping", "tls": .bool(r.tls != nil), "connections": .from(connections),
                "depth": .from(depth),
                "seconds": .double(r.measuredSeconds), "requestsPerSec": .double(perSec.rounded()),
                "p50Ms": .double(p50), "p99Ms": .double(p99), "p999Ms": .double(p999), "errors": .from(r.errors),
            ]
            print(o.text)
        }
    }
}

/// One benchmark run on its own loop. Loop-thread only while running.
final class RPCBenchRun {
    let host: String
    let port: Int
    let connections: Int
    let depth: Int
    let durationS: Double
    let tls: TLSContext?
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    var completed = 0
    var errors = 0
    var error: String?
    var measuredSeconds = 0.0
    private var measuring = false
    private var stopping = false
    private var clients: [Client] = []

    init(host: String, port: Int, connections: Int, depth: Int, durationS: Double, tls: TLSContext? = nil) {
        self.tls = tls
        self.host = host
        self.port = port
        self.connections = connections
        self.depth = depth
        self.durationS = durationS
    }

    final class Client {
        let tcp: TCPConnection
        /// `tcp`, or TLS over it.
        var stream: any ByteStream
        var framer = LineFramer(maxFrame: 1 << 20)
        var sentAt: [Int64: UInt64] = [:]
        var nextID: Int64 = 0
        init(tcp: TCPConnection) {
            self.tcp = tcp
            stream = tcp
        }
    }

    static func nowNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func run() {
        do {
            let loop = try EventLoop()
            var connected = 0
            for _ in 0..<connections {
                let tcp = try TCPConnection(loop: loop)
                let c = Client(tcp: tcp)
                clients.append(c)
                try tcp.connect(host: host, port: port) { [unowned self] err in
                    if let err {
                        self.error = "connect: \(err)"
                        loop.stop()
                        return
                    }
                    tcp.setNoDelay()
                    if let tls = self.tls {
                        // Requests written before the handshake ends wait in the stream.
                        guard let session = try? TLSSession(context: tls, serverName: self.host) else {
                            self.error = "cannot start a TLS session"
                            return loop.stop()
                        }
                        c.stream = TLSStream(tcp: tcp, session: session)
                    }
                    c.stream.setHandlers(
                        onRead: { [unowned self] bytes in self.read(c, bytes) },
                        onEnd: { [unowned self] error in
                            if !self.stopping {
                                self.error = "server closed a connection \(error.map { "(\($0))" } ?? "")"
                            }
                        })
                    c.stream.startReading()
                    (c.stream as? TLSStream)?.startHandshake()
                    connected += 1
                    if connected == self.connections { self.startLoad(loop) }
                }
            }
            loop.run()
            loop.shutdown()
        } catch {
            self.error = "\(error)"
        }
    }

    private func startLoad(_ loop: EventLoop) {
        for c in clients { for _ in 0..<depth { send(c) } }
        let warm = try! LoopTimer(loop: loop)
        var start: UInt64 = 0
        warm.start(timeoutMs: 1000) { [unowned self] in
            self.histogram.reset()
            self.completed = 0
            self.errors = 0
            self.measuring = true
            start = Self.nowNs()
            warm.start(timeoutMs: UInt64(self.durationS * 1000)) { [unowned self] in
                self.measuredSeconds = Double(Self.nowNs() - start) / 1e9
                self.measuring = false
                self.stopping = true
                warm.close()
                for c in self.clients { c.stream.close() }
                loop.stop()
            }
        }
    }

    private var sendBuffer = JSONWriter(capacity: 128)

    private func send(_ c: Client) {
        guard !stopping else { return }
        c.nextID += 1
        c.sentAt[c.nextID] = Self.nowNs()
        sendBuffer.bytes.removeAll(keepingCapacity: true)
        RPCEncoder.request(id: .int(c.nextID), method: "server.ping", params: nil, into: &sendBuffer)
        sendBuffer.bytes.append(0x0A)
        sendBuffer.bytes.withUnsafeBytes { c.stream.write($0) }
    }

    private func read(_ c: Client, _ bytes: UnsafeRawBufferPointer) {
        _ = c.framer.feed(bytes) { line in
            let now = Self.nowNs()
            if let msg = try? JSONParser.parse(line), let id = msg["id"]?.intValue,
                let t = c.sentAt.removeValue(forKey: id)
            {
                if measuring {
                    if msg["result"] != nil { completed += 1 } else { errors += 1 }
                    _ = histogram.record(max(1, (now - t) / 1000))  // microseconds
                }
            }
            send(c)
            return true
        }
    }
}
