import Foundation
import WharfHTTP
import WharfRPC
import WharfTLS
import WharfUV

/// The HTTP side door on the server's loop: the listener, its connections, their sweeper and the
/// flush of their replies (Protocol/http.md).
///
/// It listens from the start, before migrations, so `/healthz` answers while the server comes up and
/// `/readyz` says why it is not ready yet. Connections past `maxConnections` get 503 and are closed.
/// Replies of all connections are written in the loop turn's check phase, with the RPC replies.
/// Loop thread only.
final class HTTPService {
    let settings: HTTPSettings
    unowned let server: Server
    private var listener: TCPListener?
    private var connections: [ObjectIdentifier: HTTPConnection] = [:]
    private var dirty: [HTTPConnection] = []
    private var sweeper: LoopTimer?
    private var nextSessionID = 0
    /// The bound port once listening (useful with port 0), else 0.
    private(set) var boundPort = 0
    private(set) lazy var databaseGauges = DatabaseGauges(
        registry: server.metrics.registry, cacheMs: settings.metricsCacheMs)

    init(server: Server) {
        self.server = server
        settings = server.config.http
    }

    var limits: Limits { server.config.limits }
    var metrics: ServerMetrics { server.metrics }
    var nowMs: UInt64 { server.loop.nowMs }
    var draining: Bool { server.draining }
    var connectionCount: Int { connections.count }

    /// Binds and listens; throws when the address cannot be had.
    func start() throws {
        let l = try TCPListener(loop: server.loop)
        let host = settings.host == "localhost" ? "127.0.0.1" : settings.host
        do {
            try l.listen(host: host, port: settings.port) { [unowned self] tcp in self.accepted(tcp) }
        } catch {
            l.close()
            throw error
        }
        listener = l
        boundPort = l.port
        let t = try LoopTimer(loop: server.loop)
        t.start(timeoutMs: Server.sweepEveryMs, repeatMs: Server.sweepEveryMs) { [unowned self] in
            let now = self.nowMs
            for c in Array(self.connections.values) { c.checkDeadlines(now: now) }
        }
        t.unref()
        sweeper = t
    }

    /// Stops accepting; open connections finish what they were asked and close.
    func stopListening() {
        listener?.close()
        listener = nil
        for c in Array(connections.values) { c.finish() }
    }

    /// Closes everything at once (the end of shutdown).
    func close() {
        stopListening()
        sweeper?.close()
        sweeper = nil
        for c in Array(connections.values) { c.close() }
    }

    private func accepted(_ tcp: TCPConnection) {
        guard let stream = secured(tcp) else { return tcp.close() }
        let conn = HTTPConnection(tcp: stream, service: self)
        connections[ObjectIdentifier(conn)] = conn
        conn.start()
        if connections.count > settings.maxConnections {
            conn.refuse(
                status: 503, reason: "too_many_connections", "too many HTTP connections",
                extra: ["limit": "httpConnections", "max": .from(settings.maxConnections), "retryable": true])
        }
    }

    func connectionClosed(_ conn: HTTPConnection) { connections[ObjectIdentifier(conn)] = nil }

    /// Queues `conn` to write its answered replies in this loop turn's check phase.
    func markDirty(_ conn: HTTPConnection) {
        dirty.append(conn)
        guard dirty.count == 1 else { return }
        server.runBeforeFlush { [unowned self] in
            let list = self.dirty
            self.dirty.removeAll(keepingCapacity: true)
            for c in list { c.flush() }
        }
    }

    /// HTTPS when the server has TLS (the RPC port's certificate, reloaded with it on SIGHUP), else `tcp`;
    /// nil when a TLS session cannot be made.
    private func secured(_ tcp: TCPConnection) -> (any ByteStream)? {
        guard let context = server.tlsContext else { return tcp }
        guard let session = try? TLSSession(context: context) else {
            server.logger.error("cannot start a TLS session; closing the HTTP connection")
            return nil
        }
        return TLSStream(tcp: tcp, session: session, plaintextRefusal: Self.plaintextRefusal)
    }

    /// What a plaintext HTTP client gets on the HTTPS port before the close: a 400 it can show.
    static let plaintextRefusal: [UInt8] = {
        var bytes: [UInt8] = []
        errorResponse(
            status: 400, reason: "tls_required", "this port speaks HTTPS: use https:// (the RPC port's certificate)"
        ).encode(into: &bytes, close: true)
        return bytes
    }()

    /// A session for JSON-RPC calls over HTTP.
    func makeSession(role: Role?) -> Session {
        nextSessionID += 1
        return Session(id: "\(server.config.replicaID)-h\(nextSessionID)", role: role)
    }

    /// A JSON body `{"error": message, "reason": reason, ...}` with `status`.
    static func errorResponse(status: Int, reason: String, _ message: String, extra: JSONObject = [:]) -> HTTPResponse {
        var o: JSONObject = ["error": .string(message), "reason": .string(reason)]
        for p in extra.pairs { o[p.key] = p.value }
        return json(status: status, .object(o))
    }

    static func json(status: Int, _ value: JSON, headers: [(name: String, value: String)] = []) -> HTTPResponse {
        var w = JSONWriter(capacity: 256)
        w.write(value)
        return HTTPResponse(status: status, contentType: "application/json", body: w.bytes, headers: headers)
    }
}
