import WharfRPC
import WharfStore

extension LocksService {
    /// `locks.*`: fenced leases on names (Protocol/self.md).
    func register(in methods: MethodTable) {
        let ttlRange: ClosedRange<Int64> = 100...86_400_000

        methods.register("locks.acquire") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["name", "holder", "ttlMs", "waitMs", "requestId", "bindToSession", "lockDelayMs"])
            var request = LockRequest(
                name: try p.name("name", maxLength: 400), holder: try p.name("holder"), ttlMs: try p.int("ttlMs", in: ttlRange))
            request.requestID = try p.optionalName("requestId")
            request.lockDelayMs = try p.optionalInt("lockDelayMs", in: 0...3_600_000) ?? 0
            request.sessionID = call.session.id
            let waitMs = try p.optionalInt("waitMs", in: 0...300_000) ?? 0
            let bind = try p.bool("bindToSession", default: false)
            self.acquire(call: call, request: request, waitMs: waitMs, bind: bind)
        }

        methods.register("locks.renew") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["name", "token", "ttlMs"])
            let name = try p.name("name", maxLength: 400)
            let token = try p.string("token")
            let ttlMs = try p.int("ttlMs", in: ttlRange)
            store.renewLock(name: name, token: token, ttlMs: ttlMs) { r in
                if case .success(.renewed(let grant)) = r { self.renewed(grant, ttlMs: ttlMs) }
                call.finish(r.mapError(\.rpcError).flatMap { LockReplies.renewed(name, $0) })
            }
        }

        methods.register("locks.release") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["name", "token"])
            let name = try p.name("name", maxLength: 400)
            let token = try p.string("token")
            self.release(name: name, token: token) { r in
                if case .success(true) = r { call.session.removeCloseHook("lock:\(name):\(token)") }
                call.finish(r.flatMap { LockReplies.released(name, $0) })
            }
        }

        methods.register("locks.get") { [unowned self] call in
            try call.params.onlyKnown(["name"])
            store.lock(name: try call.params.name("name", maxLength: 400)) {
                call.finish($0.mapError(\.rpcError).map(LockReplies.lock))
            }
        }

        methods.register("locks.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["prefix", "limit", "cursor"])
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 100)
            store.listLocks(prefix: try p.optionalString("prefix"), after: try p.optionalString("cursor"), limit: limit)
            { r in
                call.finish(r.mapError(\.rpcError).map { LockReplies.list($0, limit: limit) })
            }
        }
    }
}
