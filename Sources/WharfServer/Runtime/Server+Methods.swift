import Foundation
import WharfCore
import WharfRPC

extension Server {
    /// Every method family registers here.
    func registerMethods() {
        registerServerMethods()
        registerReplicaMethods()
        jobs.register(in: methods)
        jobWaits.register(in: methods)
        locks.register(in: methods)
        cron.register(in: methods)
        webhooks.register(in: methods)
        events.register(in: methods)
        runs.register(in: methods)
        OpenRPCDocument.register(in: methods)
    }

    /// What this replica has spent since it started: CPU time and peak memory (`getrusage`) and the
    /// PostgreSQL round trips (segments) and statements it sent. `wharf bench` divides their growth
    /// by the jobs a phase moved.
    func usage() -> JSON {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        func us(_ t: timeval) -> Int64 { Int64(t.tv_sec) * 1_000_000 + Int64(t.tv_usec) }
        return [
            "cpuUserUs": .int(us(ru.ru_utime)), "cpuSystemUs": .int(us(ru.ru_stime)),
            "maxRssBytes": .int(Int64(ru.ru_maxrss) * 1024), "dbSegments": .from(pool.segmentsSent),
            "dbStatements": .from(pool.statementsSent),
        ]
    }

    func registerServerMethods() {

        methods.register("server.ping", open: true) { call in
            try call.params.onlyKnown([])
            call.reply("pong")
        }

        methods.register("server.info") { [unowned self] call in
            try call.params.onlyKnown([])
            call.reply([
                "name": "wharf",
                "version": .string(WharfVersion.server),
                "protocolVersion": .string(WharfVersion.protocol),
                "replicaId": .string(config.replicaID),
                "startedAt": .time(epochMs: Int64(startedAt.timeIntervalSince1970 * 1000)),
                "uptimeMs": .int(Int64(Date().timeIntervalSince(startedAt) * 1000)),
                "postgresVersion": pool.serverVersion > 0 ? .string(Self.formatPGVersion(pool.serverVersion)) : .null,
                "usage": usage(),
                "limits": [
                    "maxFrameBytes": .from(config.limits.maxFrameBytes),
                    "maxBatch": .from(config.limits.maxBatch),
                    "maxInFlight": .from(config.limits.maxInFlight),
                    "idleTimeoutMs": .from(config.limits.idleTimeoutMs),
                    "maxReplyBytes": .from(config.limits.maxReplyBytes),
                    "maxConnections": .from(config.limits.maxConnections),
                    "maxConnectionsPerPeer": .from(config.limits.maxConnectionsPerPeer),
                    "maxWriteBufferBytes": .from(config.limits.maxWriteBufferBytes),
                    "maxBufferedBytes": .from(config.limits.maxBufferedBytes),
                    "writeTimeoutMs": .from(config.limits.writeTimeoutMs),
                    "authTimeoutMs": .from(config.limits.authTimeoutMs),
                    "frameTimeoutMs": .from(config.limits.frameTimeoutMs),
                    "maxSubscriberQueue": .from(config.limits.maxSubscriberQueue),
                ],
            ])
        }

        methods.register("server.health") { [unowned self] call in
            try call.params.onlyKnown([])
            let started = DispatchTime.now().uptimeNanoseconds
            store.health { [unowned self] result in
                let rtt = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
                var db: JSONObject = ["poolSize": .from(config.poolSize), "poolReady": .from(pool.readyCount)]
                switch result {
                case .success(let h):
                    db["reachable"] = true
                    db["roundTripMs"] = .double((rtt * 1000).rounded() / 1000)
                    db["serverVersion"] = .string(h.version)
                    db["now"] = .time(epochMs: h.nowMs)
                    db["standby"] = .bool(h.standby)
                    db["readOnly"] = .bool(
                        h.readOnly || h.standby || Timestamp.nowMs() - store.lastReadOnlyRefusalMs < 10_000)
                case .failure(let e):
                    db["reachable"] = false
                    db["error"] = .string(e.rpcError.message)
                }
                // Ready means able to take writes: an unreachable or read-only database is not.
                let status: JSON =
                    db["reachable"] != true ? "unavailable" : db["readOnly"] == true ? "read_only" : "ok"
                call.reply([
                    "status": status,
                    "replicaId": .string(config.replicaID),
                    "connections": .from(connectionCount),
                    "database": .object(db),
                ])
            }
        }

        methods.register("session.hello", open: true) { [unowned self] call in
            try call.params.onlyKnown(["token", "client"])
            let token = try call.params.optionalString("token")
            let client = try call.params.optionalString("client")
            if let token, !config.tokens.isEmpty {
                guard let role = config.role(forToken: token) else { throw RPCError.unauthorized("unknown token") }
                call.session.role = role
            }
            // A mapped client certificate already granted a role; otherwise a token is needed.
            guard let role = call.session.role else {
                throw RPCError.unauthorized(
                    config.tokens.isEmpty ? "this server requires a client certificate" : "this server requires a token"
                )
            }
            call.session.clientName = client
            var reply: JSONObject = [
                "role": .string(role.rawValue),
                "sessionId": .string(call.session.id),
                "replicaId": .string(config.replicaID),
                "protocolVersion": .string(WharfVersion.protocol),
                "authenticated": .bool(config.requiresAuthentication),
            ]
            if let name = call.session.certificateName { reply["certificate"] = .string(name) }
            call.reply(.object(reply))
        }
    }

    static func formatPGVersion(_ v: Int) -> String { "\(v / 10000).\(v % 10000)" }
}
