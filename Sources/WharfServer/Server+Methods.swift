import Foundation
import WharfRPC

extension Server {
    /// Every method family registers here.
    func registerMethods() {
        registerServerMethods()
    }

    func registerServerMethods() {
        let everyone: Set<Role> = Set(Role.allCases)

        register("server.ping", roles: everyone, open: true) { call in
            try call.params.onlyKnown([])
            call.reply("pong")
        }

        register("server.info", roles: everyone) { [unowned self] call in
            try call.params.onlyKnown([])
            call.reply([
                "name": "wharf",
                "version": .string(WharfVersion.server),
                "protocolVersion": .string(WharfVersion.protocol),
                "replicaId": .string(config.replicaID),
                "startedAt": .string(Timestamp.format(startedAt)),
                "uptimeMs": .int(Int64(Date().timeIntervalSince(startedAt) * 1000)),
                "postgresVersion": pool.serverVersion > 0 ? .string(Self.formatPGVersion(pool.serverVersion)) : .null,
                "limits": [
                    "maxFrameBytes": .from(config.limits.maxFrameBytes),
                    "maxBatch": .from(config.limits.maxBatch),
                    "maxInFlight": .from(config.limits.maxInFlight),
                    "idleTimeoutMs": .from(config.limits.idleTimeoutMs),
                ],
            ])
        }

        register("server.health", roles: everyone) { [unowned self] call in
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
                    db["now"] = .string(h.now)
                    db["standby"] = .bool(h.standby)
                case .failure(let e):
                    db["reachable"] = false
                    db["error"] = .string(e.message)
                }
                let ok = db["reachable"] == true
                call.reply([
                    "status": ok ? "ok" : "unavailable",
                    "replicaId": .string(config.replicaID),
                    "connections": .from(connectionCount),
                    "database": .object(db),
                ])
            }
        }

        register("session.hello", roles: everyone, open: true) { [unowned self] call in
            try call.params.onlyKnown(["token", "client"])
            let token = try call.params.optionalString("token")
            let client = try call.params.optionalString("client")
            if !config.tokens.isEmpty {
                guard let token else { throw RPCError.unauthorized("this server requires a token") }
                guard let role = config.tokens[token] else { throw RPCError.unauthorized("unknown token") }
                call.session.role = role
            }
            call.session.clientName = client
            call.reply([
                "role": .string(call.session.role!.rawValue),
                "sessionId": .string(call.session.id),
                "replicaId": .string(config.replicaID),
                "protocolVersion": .string(WharfVersion.protocol),
                "authenticated": .bool(!config.tokens.isEmpty),
            ])
        }
    }

    static func formatPGVersion(_ v: Int) -> String { "\(v / 10000).\(v % 10000)" }
}

/// RFC 3339 UTC timestamps with milliseconds, as used on the wire.
public enum Timestamp {
    public static func format(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        return format(epochMs: ms)
    }

    public static func format(epochMs: Int64) -> String {
        var t = time_t(epochMs / 1000)
        var tm = tm()
        gmtime_r(&t, &tm)
        let millis = Int(epochMs % 1000)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        let msText = String(millis)
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))."
            + String(repeating: "0", count: 3 - msText.count) + msText + "Z"
    }
}
