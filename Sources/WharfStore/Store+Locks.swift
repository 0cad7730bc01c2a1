import WharfPQ
import WharfRPC

/// What `locks.acquire` asks for.
public struct LockRequest: Sendable {
    public var name: String
    public var holder: String
    public var ttlMs: Int64
    public var requestID: String?
    public var sessionID: String?
    public var lockDelayMs: Int64 = 0

    public init(name: String, holder: String, ttlMs: Int64) {
        self.name = name
        self.holder = holder
        self.ttlMs = ttlMs
    }
}

/// The outcome of one acquire attempt.
public enum LockOutcome: Sendable {
    case granted(token: String, fencingToken: Int64, expiresAt: String)
    /// Held by `holder` until `freeAt` (expiry plus lock-delay), `freeInMs` from now by the database clock.
    case held(holder: String?, freeAt: String?, freeInMs: Int64?)
}

extension Store {
    /// Tries to acquire every lock in one statement. Names must be distinct within one call.
    public func acquireLocks(_ items: [LockRequest], _ completion: @escaping (Result<[LockOutcome], RPCError>) -> Void)
    {
        let params: [String?] = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.holder)), PGArray.ints(items.map(\.ttlMs)),
            PGArray.text(items.map(\.requestID)), PGArray.text(items.map(\.sessionID)),
            PGArray.ints(items.map(\.lockDelayMs)),
        ]
        one(LockSQL.acquire, params, completion) { rows in
            (0..<rows.rowCount).map { i in
                if let token = rows.string(i, 1) {
                    return .granted(token: token, fencingToken: rows.int(i, 2) ?? 0, expiresAt: rows.string(i, 3) ?? "")
                }
                return .held(holder: rows.string(i, 4), freeAt: rows.string(i, 5), freeInMs: rows.int(i, 6))
            }
        }
    }

    public func renewLock(
        name: String, token: String, ttlMs: Int64, _ completion: @escaping (Result<JSON, RPCError>) -> Void
    ) {
        one(LockSQL.renew, [name, token, String(ttlMs)], completion) { rows throws(RPCError) in
            guard rows.rowCount > 0 else {
                throw .conflict(
                    "lock \(name) is not held with this token (expired or taken over)", reason: "lease_lost",
                    ["name": .string(name)])
            }
            return [
                "name": .string(name), "expiresAt": .from(rows.string(0, 0)), "fencingToken": .from(rows.int(0, 1)),
            ]
        }
    }

    /// Releases locks in one statement; `true` per item when its token held the lock.
    public func releaseLocks(
        _ items: [(name: String, token: String)], _ completion: @escaping (Result<[Bool], RPCError>) -> Void
    ) {
        one(LockSQL.release, [PGArray.text(items.map(\.name)), PGArray.text(items.map(\.token))], completion) { rows in
            (0..<rows.rowCount).map { rows.bool($0, 1) ?? false }
        }
    }

    public func countLockWait(name: String) {
        pool.query(LockSQL.countWait, [name]) { _ in }
    }

    static func lockJSON(_ r: PQResult, _ i: Int) -> JSON {
        var o: JSONObject = ["name": .from(r.string(i, 0)), "held": .bool(r.bool(i, 1) ?? false)]
        if r.bool(i, 1) == true {
            o["holder"] = .from(r.string(i, 2))
            o["expiresAt"] = .from(r.string(i, 3))
            o["acquiredAt"] = .from(r.string(i, 9))
        }
        o["fencingToken"] = .from(r.int(i, 4))
        o["stats"] = [
            "grants": .from(r.int(i, 5)), "waits": .from(r.int(i, 6)), "expiriesWithoutRelease": .from(r.int(i, 7)),
            "releases": .from(r.int(i, 8)),
        ]
        return .object(o)
    }

    public func lock(name: String, _ completion: @escaping (Result<JSON, RPCError>) -> Void) {
        one(LockSQL.get, [name], completion) { rows in
            rows.rowCount > 0 ? Self.lockJSON(rows, 0) : ["name": .string(name), "held": false, "fencingToken": 0]
        }
    }

    public func listLocks(
        prefix: String?, after: String?, limit: Int, _ completion: @escaping (Result<[JSON], RPCError>) -> Void
    ) {
        one(LockSQL.list, [prefix, after, String(limit)], completion) { rows in
            (0..<rows.rowCount).map { Self.lockJSON(rows, $0) }
        }
    }
}
