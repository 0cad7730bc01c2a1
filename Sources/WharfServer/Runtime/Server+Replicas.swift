import Foundation
import WharfRPC
import WharfStore

/// The replicas sharing this database (`wharf.replicas`, `server.replicas`): this replica writes its
/// row when it starts serving and every `replicaHeartbeatMs` after, marks it draining at SIGTERM, and
/// deletes it when it stops. Loop thread only.
extension Server {
    static let replicaHeartbeatMs: UInt64 = 5_000

    private var replicaSelf: ReplicaSelf {
        ReplicaSelf(
            id: config.replicaID, startedAtMs: Int64(startedAt.timeIntervalSince1970 * 1000),
            hostname: ProcessInfo.processInfo.hostName, version: WharfVersion.server,
            listen: "\(config.host):\(boundPort)",
            httpListen: http.flatMap { $0.boundPort > 0 ? "\($0.settings.host):\($0.boundPort)" : nil })
    }

    /// Writes this replica's row now and every few seconds (once serving).
    func startReplicaHeartbeat() {
        pool.whenReady { [unowned self] in self.writeReplicaRow() }
        addChore(everyMs: Self.replicaHeartbeatMs) { [unowned self] in self.writeReplicaRow() }
    }

    func writeReplicaRow() {
        guard schemaReady else { return }
        replicaWritesInFlight += 1
        // A strong capture: a weak one gives the server a side table, which puts every retain and
        // release of it on the slow path.
        store.replicaSeen(replicaSelf, draining: draining) { [self] r in
            if case .failure(let e) = r {
                self.logger.debug("recording this replica failed", metadata: ["error": "\(e)"])
            }
            self.replicaWritesInFlight -= 1
            if self.replicaWritesInFlight == 0 {
                let waiting = self.afterReplicaWrites
                self.afterReplicaWrites = []
                for w in waiting { w() }
            }
        }
    }

    /// Deletes this replica's row (the end of a shutdown), after any write of it under way: the pool's
    /// connections answer in any order, and an upsert committing after the delete would bring it back.
    func forgetReplicaRow(then done: @escaping () -> Void) {
        guard schemaReady else { return done() }
        let forget = { [unowned self] in self.store.replicaGone(self.config.replicaID) { _ in done() } }
        if replicaWritesInFlight == 0 { forget() } else { afterReplicaWrites.append(forget) }
    }

    func registerReplicaMethods() {
        methods.register("server.replicas") { [unowned self] call in
            try call.params.onlyKnown([])
            store.replicas { r in
                call.finish(
                    r.mapError(\.rpcError).map { rows in
                        [
                            "replicas": .array(
                                rows.map { row in
                                    [
                                        "replicaId": .string(row.id), "hostname": .string(row.hostname),
                                        "version": .string(row.version), "startedAt": .time(epochMs: row.startedAtMs),
                                        "lastSeenAt": .time(epochMs: row.seenAtMs), "alive": .bool(row.alive),
                                        "draining": .bool(row.draining), "listen": .string(row.listen),
                                        "httpListen": .from(row.httpListen),
                                        "self": .bool(row.id == self.config.replicaID),
                                    ]
                                })
                        ]
                    })
            }
        }
    }
}
