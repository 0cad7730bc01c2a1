import Foundation
import WharfHTTP
import WharfRPC
import WharfUV

extension HTTPService {
    /// The paths served and the methods each allows (HEAD goes with GET).
    static let routes: [Substring: [String]] = [
        "/healthz": ["GET", "HEAD"], "/readyz": ["GET", "HEAD"], "/metrics": ["GET", "HEAD"],
        "/openrpc.json": ["GET", "HEAD"], "/rpc": ["POST"], "/events": ["GET"],
    ]

    /// Answers one request through `reply` (now or later, exactly once).
    func handle(_ request: HTTPRequest, on conn: HTTPConnection, _ reply: @escaping (HTTPResponse) -> Void) {
        let path = request.path
        if DashboardAssets.files[path] != nil, request.method == "GET" || request.method == "HEAD" {
            return reply(DashboardAssets.response(for: path)!)
        }
        guard let allowed = Self.routes[path] ?? (DashboardAssets.files[path] != nil ? ["GET", "HEAD"] : nil) else {
            return reply(Self.errorResponse(status: 404, reason: "not_found", "no such path: \(path)"))
        }
        guard allowed.contains(request.method) else {
            return reply(
                Self.errorResponse(
                    status: 405, reason: "method_not_allowed", "\(path) takes \(allowed.joined(separator: ", "))",
                    extra: ["allow": .array(allowed.map(JSON.string))]))
        }
        switch path {
        case "/healthz": reply(healthz())
        case "/readyz": readyz(reply)
        case "/metrics": metricsText(reply)
        case "/openrpc.json":
            reply(HTTPResponse(status: 200, contentType: "application/json", body: OpenRPCDocument.bytes))
        case "/events": events(request, on: conn, reply)
        default: rpc(request, on: conn, reply)
        }
    }

    /// The process and its loop answer (this reply is the proof).
    private func healthz() -> HTTPResponse {
        Self.json(
            status: 200,
            [
                "status": "ok", "replicaId": .string(server.config.replicaID),
                "uptimeMs": .int(Int64(Date().timeIntervalSince(server.startedAt) * 1000)),
            ])
    }

    /// Ready to serve: the database answers, the migrations are applied, and the server is not draining.
    private func readyz(_ reply: @escaping (HTTPResponse) -> Void) {
        let migrated = server.schemaReady
        let draining = server.draining
        let started = EventLoop.hrtimeNs
        server.store.health { [self] result in
            var database: JSONObject = ["poolReady": .from(self.server.pool.readyCount)]
            switch result {
            case .success:
                database["ok"] = true
                database["roundTripMs"] = .double(Double((EventLoop.hrtimeNs &- started) / 1000) / 1000)
            case .failure(let e):
                database["ok"] = false
                database["error"] = .string(e.rpcError.message)
            }
            let ready = database["ok"] == true && migrated && !draining
            reply(
                Self.json(
                    status: ready ? 200 : 503,
                    [
                        "status": ready ? "ready" : "not_ready", "replicaId": .string(self.server.config.replicaID),
                        "checks": [
                            "database": .object(database), "migrations": ["ok": .bool(migrated)],
                            "draining": ["ok": .bool(!draining)],
                        ],
                    ]))
        }
    }

    /// The Prometheus text exposition of every metric.
    private func metricsText(_ reply: @escaping (HTTPResponse) -> Void) {
        let s = server
        metrics.sample(
            tcpConnections: s.connectionCount, httpConnections: connectionCount, pool: s.pool,
            poolSize: s.config.poolSize)
        databaseGauges.refresh(store: s.store, nowMs: { [unowned s] in s.loop.nowMs }) { [self] in
            reply(
                HTTPResponse(
                    status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                    body: self.metrics.registry.emitToBuffer()))
        }
    }
}
