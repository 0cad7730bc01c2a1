import ArgumentParser
import Foundation
import Histogram
import WharfClient
import WharfRPC

/// `wharf bench webhooks`: registers K endpoints on a receiver of its own, sends N messages, and
/// measures from each send to its signed delivery arriving at the receiver.
struct BenchWebhooks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhooks",
        abstract: "Webhook deliveries/s and send-to-arrival latency against a local receiver.",
        discussion: "The server must allow private targets (wharf serve --allow-private-webhooks).")

    @Option(help: "Server address, HOST:PORT (default: $WHARF_SERVER or 127.0.0.1:7411).") var server = defaultServer
    @Option(help: "Messages to send.") var deliveries = 10_000
    @Option(help: "Endpoints to spread them over.") var endpoints = 10
    @Flag(help: "Print one JSON object as the last line.") var json = false

    @OptionGroup(title: "TLS") var tls: ClientTLSOptions

    func run() throws {
        let receiver = try BenchReceiver()
        let (host, port) = try parseHostPort(server)
        let c = try BlockingConnection(host: host, port: port, timeoutSeconds: 60, tls: try tls.context())
        var ids: [String] = []
        for i in 0..<endpoints {
            let r = try c.call("webhooks.register", ["url": .string("http://127.0.0.1:\(receiver.port)/e\(i)")])
            guard r["verified"] == true, let id = r["id"]?.stringValue else {
                throw ValidationError("the server could not reach the bench receiver: \(r.text) (is it run with --allow-private-webhooks?)")
            }
            ids.append(id)
        }
        receiver.reset()
        var sentAt = [UInt64](repeating: 0, count: deliveries)
        let start = DispatchTime.now().uptimeNanoseconds
        var sent = 0
        var replied = 0
        while replied < deliveries {
            while sent < deliveries && sent - replied < 256 {
                let request: JSON = [
                    "jsonrpc": "2.0", "id": .from(sent), "method": "webhooks.send",
                    "params": ["endpointId": .string(ids[sent % ids.count]), "payload": ["seq": .from(sent)]],
                ]
                sentAt[sent] = DispatchTime.now().uptimeNanoseconds
                try c.sendLine(request.text)
                sent += 1
            }
            let reply = try c.readMessage()
            if let e = reply["error"] { throw ValidationError("server refused a send: \(e.text)") }
            replied += 1
        }
        let deadline = Date().addingTimeInterval(120)
        while receiver.count < deliveries && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let arrivals = receiver.snapshot()
        let end = arrivals.values.max() ?? start
        var latency = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        for (seq, at) in arrivals where seq < deliveries { latency.record((at - sentAt[seq]) / 1000) }
        let seconds = Double(end - start) / 1e9
        let perSec = Double(arrivals.count) / seconds
        let p50 = Double(latency.valueAtPercentile(50)) / 1000
        let p99 = Double(latency.valueAtPercentile(99)) / 1000
        print(
            String(
                format:
                    "webhooks: %d messages over %d endpoints: %d delivered in %.2f s, %.0f deliveries/s, send-to-arrival p50 %.2f ms, p99 %.2f ms",
                deliveries, endpoints, arrivals.count, seconds, perSec, p50, p99))
        for id in ids { _ = try? c.call("webhooks.remove", ["id": .string(id)]) }
        if json {
            let o: JSON = [
                "deliveries": .from(deliveries), "endpoints": .from(endpoints), "delivered": .from(arrivals.count),
                "seconds": .double((seconds * 100).rounded() / 100), "deliveriesPerSec": .double(perSec.rounded()),
                "latencyP50Ms": .double(p50), "latencyP99Ms": .double(p99),
            ]
            print(o.text)
        }
        if arrivals.count < deliveries { throw ExitCode(1) }
    }
}

/// A minimal HTTP/1.1 receiver answering 200 to every POST, on keep-alive connections, one thread per
/// connection; records when each message's `seq` first arrived.
final class BenchReceiver: @unchecked Sendable {  // `arrivals` guarded by `lock`
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var arrivals: [Int: UInt64] = [:]

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else { throw ValidationError("bench receiver: bind/listen failed") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    var count: Int { lock.withLock { arrivals.count } }
    func snapshot() -> [Int: UInt64] { lock.withLock { arrivals } }
    func reset() { lock.withLock { arrivals = [:] } }

    private func acceptLoop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            Thread { [self] in serve(c) }.start()
        }
    }

    private func serve(_ c: Int32) {
        defer { close(c) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let ok = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".utf8)
        while true {
            // One request: headers, then Content-Length bytes of body.
            guard let headerEnd = findHeaderEnd(buffer) else {
                let n = read(c, &chunk, chunk.count)
                if n <= 0 { return }
                buffer.append(contentsOf: chunk[0..<n])
                continue
            }
            let head = String(decoding: buffer[0..<headerEnd], as: UTF8.self).lowercased()
            let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            while buffer.count < headerEnd + 4 + length {
                let n = read(c, &chunk, chunk.count)
                if n <= 0 { return }
                buffer.append(contentsOf: chunk[0..<n])
            }
            let body = String(decoding: buffer[(headerEnd + 4)..<(headerEnd + 4 + length)], as: UTF8.self)
            let now = DispatchTime.now().uptimeNanoseconds
            if let r = body.range(of: "\"seq\":"), let seq = Int(body[r.upperBound...].prefix { $0.isNumber }) {
                lock.withLock { if arrivals[seq] == nil { arrivals[seq] = now } }
            }
            buffer.removeFirst(headerEnd + 4 + length)
            _ = ok.withUnsafeBytes { write(c, $0.baseAddress, ok.count) }
        }
    }

    private func findHeaderEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }
}
