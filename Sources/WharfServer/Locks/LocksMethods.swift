import WharfRPC
import WharfStore

extension Server {
    /// `locks.*`: fenced leases on names (Protocol/locks.md).
    func registerLockMethods() {
        let locks = self.locks
        let ttlRange: ClosedRange<Int64> = 100...86_400_000

        register("locks.acquire") { call in
            let p = call.params
            try p.onlyKnown(["name", "holder", "ttlMs", "waitMs", "requestId", "bindToSession", "lockDelayMs"])
            var request = LockRequest(
                name: try p.name("name", maxLength: 400), holder: try p.name("holder"), ttlMs: try p.int("ttlMs", in: ttlRange))
            request.requestID = try p.optionalName("requestId")
            request.lockDelayMs = try p.optionalInt("lockDelayMs", in: 0...3_600_000) ?? 0
            request.sessionID = call.session.id
            let waitMs = try p.optionalInt("waitMs", in: 0...300_000) ?? 0
            let bind = try p.bool("bindToSession", default: false)
            locks.acquire(call: call, request: request, waitMs: waitMs, bind: bind)
        }

        register("locks.renew") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["name", "token", "ttlMs"])
            let name = try p.name("name", maxLength: 400)
            store.renewLock(name: name, token: try p.string("token"), ttlMs: try p.int("ttlMs", in: ttlRange)) { r in
                call.finish(
                    r.map { grant in
                        locks.renewed(grant)
                        return [
                            "name": .string(name), "expiresAt": .string(grant.expiresAt),
                            "fencingToken": .int(grant.fencingToken),
                        ]
                    })
            }
        }

        register("locks.release") { call in
            let p = call.params
            try p.onlyKnown(["name", "token"])
            let name = try p.name("name", maxLength: 400)
            let token = try p.string("token")
            locks.release(name: name, token: token) { r in
                switch r {
                case .success(true):
                    call.session.removeCloseHook("lock:\(name):\(token)")
                    call.reply(["name": .string(name), "released": true])
                case .success:
                    call.fail(
                        .conflict(
                            "lock \(name) is not held with this token (released, or taken over after expiry)",
                            reason: "lease_lost", ["name": .string(name)]))
                case .failure(let e):
                    call.fail(e)
                }
            }
        }

        register("locks.get") { [unowned self] call in
            try call.params.onlyKnown(["name"])
            store.lock(name: try call.params.name("name", maxLength: 400)) { call.finish($0) }
        }

        register("locks.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["prefix", "limit", "cursor"])
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 100)
            store.listLocks(prefix: try p.optionalString("prefix"), after: try p.optionalString("cursor"), limit: limit)
            { r in
                call.finish(
                    r.map { list in
                        [
                            "locks": .array(list),
                            "nextCursor": list.count == limit ? (list.last?["name"] ?? .null) : .null,
                        ]
                    })
            }
        }
    }
}
