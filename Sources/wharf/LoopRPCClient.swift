import WharfRPC
import WharfTLS
import WharfUV

/// A JSON-RPC connection driven by an event loop, for benchmarks that need many connections and
/// many requests in flight from one thread. Loop thread only.
final class LoopRPCClient {
    let tcp: TCPConnection
    /// `tcp`, or TLS over it.
    private(set) var stream: any ByteStream
    private var framer = LineFramer(maxFrame: 64 << 20)
    private var nextID: Int64 = 0
    private var waiting: [Int64: (Result<JSON, RPCError>) -> Void] = [:]
    private var out = JSONWriter(capacity: 4096)
    private var corked = false
    var onClosed: (() -> Void)?

    init(loop: EventLoop) throws {
        tcp = try TCPConnection(loop: loop)
        stream = tcp
    }

    /// Connects, then with `tls` shakes hands (calls made meanwhile wait in the TLS stream).
    func connect(host: String, port: Int, tls: TLSContext? = nil, _ done: @escaping (UVError?) -> Void) throws {
        try tcp.connect(host: host, port: port) { [unowned self] err in
            if err == nil {
                self.tcp.setNoDelay()
                if let tls {
                    guard let session = try? TLSSession(context: tls, serverName: host) else {
                        return done(.protocolError("cannot start a TLS session"))
                    }
                    self.stream = TLSStream(tcp: self.tcp, session: session)
                }
                self.stream.setHandlers(
                    onRead: { [unowned self] bytes in self.read(bytes) },
                    onEnd: { [unowned self] _ in
                        let w = self.waiting
                        self.waiting = [:]
                        for c in w.values { c(.failure(.unavailable("connection closed", reason: "closed"))) }
                        self.onClosed?()
                    })
                self.stream.startReading()
                (self.stream as? TLSStream)?.startHandshake()
            }
            done(err)
        }
    }

    var inFlight: Int { waiting.count }
    /// Requests sent so far.
    var callsSent: Int64 { nextID }

    /// Sends a request; `done` runs when its reply arrives.
    func call(_ method: String, _ params: JSON?, _ done: @escaping (Result<JSON, RPCError>) -> Void) {
        nextID += 1
        waiting[nextID] = done
        RPCEncoder.request(id: .int(nextID), method: method, params: params, into: &out)
        out.bytes.append(0x0A)
        if !corked { flush() }
    }

    /// Groups the calls made inside `body` into one write.
    func corked(_ body: () -> Void) {
        corked = true
        body()
        corked = false
        flush()
    }

    private func flush() {
        guard !out.bytes.isEmpty else { return }
        out.bytes.withUnsafeBytes { stream.write($0) }
        out.bytes.removeAll(keepingCapacity: true)
    }

    /// Calls made by the reply handlers of one read go out together in one write.
    private func read(_ bytes: UnsafeRawBufferPointer) {
        let wasCorked = corked
        corked = true
        defer {
            corked = wasCorked
            if !corked { flush() }
        }
        _ = framer.feed(bytes) { line in
            guard let msg = try? JSONParser.parse(line), let id = msg["id"]?.intValue,
                let done = waiting.removeValue(forKey: id)
            else { return true }
            if let e = msg["error"] {
                done(.failure(RPCError(json: e) ?? .internalError))
            } else {
                done(.success(msg["result"] ?? .null))
            }
            return true
        }
    }
}

extension LoopRPCClient {
    /// Runs a fresh loop with `count` connections to `host:port`: `ready` once all are connected,
    /// `failed` if one cannot connect. Returns when the loop is stopped; the connections are closed.
    static func runConnected(
        count: Int, host: String, port: Int, token: String? = nil, tls: TLSContext? = nil,
        ready: @escaping (EventLoop, [LoopRPCClient]) -> Void, failed: @escaping (String) -> Void
    ) throws {
        let loop = try EventLoop()
        let clients = try (0..<count).map { _ in try LoopRPCClient(loop: loop) }
        var connected = 0
        for c in clients {
            try c.connect(host: host, port: port, tls: tls) { err in
                if let err {
                    failed("connect: \(err)")
                    return loop.stop()
                }
                if let token { c.call("session.hello", ["token": .string(token)]) { _ in } }
                connected += 1
                if connected == clients.count { ready(loop, clients) }
            }
        }
        loop.run()
        for c in clients { c.stream.close() }
        loop.shutdown()
    }
}
