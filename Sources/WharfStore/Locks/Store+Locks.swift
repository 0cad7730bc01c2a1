import WharfCore
import WharfPQ
import WharfRPC

/// One `locks.acquire` attempt as the store sees it.
public struct LockRequest: Sendable {
    public var name: String
    public var holder: String
    public var ttlMs: Int64
    /// Makes a retried acquire (after a lost reply) return the live grant it already got.
    public var requestID: String?
    /// The session that asked; recorded on the grant for operators.
    public var sessionID: String?
    /// After an expiry without release, the lock stays ungrantable this long.
    public var lockDelayMs: Int64 = 0
    /// When not granted, join the durable line of waiters until this long from now (0: do not queue).
    public var queueForMs: Int64 = 0
    /// Set when a queued waiter retries: its place in the line.
    public var waiterSeq: Int64?
    /// The grant is released when the session (`sessionID`) closes; a `requestId` retry moves it.
    public var bound = false

    public init(name: String, holder: String, ttlMs: Int64) {
        self.name = name
        self.holder = holder
        self.ttlMs = ttlMs
    }
}

/// A lease that was granted. Times are epoch microseconds of PostgreSQL's clock.
public struct LockGrant: Sendable, Equatable {
    public var name: String
    public var token: String
    public var fencingToken: Int64
    public var acquiredAtUs: Int64
    public var expiresAtUs: Int64

    public var expiresAt: String { Timestamp.format(epochMs: expiresAtUs / 1000) }
}

/// The outcome of one acquire attempt.
public enum LockOutcome: Sendable {
    case granted(LockGrant)
    case notGranted(LockRefusal)
    /// The request was refused outright (a `requestId` reused with other values).
    case refused(RPCError)
}

/// Why an acquire was not granted, and when it is worth trying again (by the database clock).
public struct LockRefusal: Sendable {
    /// The current holder, if the lock is held (or expired and still in its lock-delay).
    public var holder: String?
    /// When the holder's lease (plus lock-delay) runs out, epoch microseconds.
    public var freeAtUs: Int64?
    /// The place in the line of waiters, when the request joined it.
    public var waiterSeq: Int64?
    /// When the older waiters ahead stop counting if their replica stops refreshing them.
    public var aheadUntilUs: Int64?
    /// The database's clock when it decided.
    public var nowUs: Int64

    public var freeAt: String? { freeAtUs.map { Timestamp.format(epochMs: $0 / 1000) } }
    /// Milliseconds until the holder's lease runs out (nil when it is not held).
    public var freeInMs: Int64? { freeAtUs.map { max(0, ($0 - nowUs + 999) / 1000) } }
    /// Milliseconds until the waiters ahead stop counting (nil when none is ahead).
    public var aheadForMs: Int64? { aheadUntilUs.map { max(0, ($0 - nowUs + 999) / 1000) } }
}

/// The outcome of a release.
public struct LockRelease: Sendable {
    public var released: Bool
    public var fencingToken: Int64?
    public var releasedAtUs: Int64?
}

extension Store {
    /// Grants, in one plain upsert (one commit), each requested lock that is free and has nobody in
    /// line: the common case. Returns the grants by name; a request left out is not refused, only
    /// undecided (`decideLocks` decides it). Names must be distinct within a call.
    public func grantFreeLocks(_ items: [LockRequest],
        _ completion: @escaping (Result<[String: LockGrant], RPCError>) -> Void)
    {
        let params: [String?] = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.holder)), PGArray.ints(items.map(\.ttlMs)),
            PGArray.text(items.map(\.requestID)), PGArray.text(items.map(\.sessionID)),
            PGArray.ints(items.map(\.lockDelayMs)), PGArray.bools(items.map(\.bound)),
        ]
        one(LockSQL.acquireFree, params, completion) { rows throws(RPCError) in
            var grants: [String: LockGrant] = [:]
            for i in 0..<rows.rowCount {
                guard let name = rows.string(i, 0), let token = rows.string(i, 1) else { throw RPCError.internalError }
                grants[name] = LockGrant(
                    name: name, token: token, fencingToken: rows.int(i, 2) ?? 0, acquiredAtUs: rows.int(i, 5) ?? 0,
                    expiresAtUs: rows.int(i, 6) ?? 0)
            }
            return grants
        }
    }

    /// Decides each request exactly in one statement (one commit): grants, retried requests, the line
    /// of waiters, contention counts. Each request reads its own outcome. A name may come more than once
    /// (the first request may be granted, the others queue behind it).
    public func decideLocks(_ items: [LockRequest], replicaID: String,
        _ completion: @escaping (Result<[LockOutcome], RPCError>) -> Void)
    {
        let params: [String?] = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.holder)), PGArray.ints(items.map(\.ttlMs)),
            PGArray.text(items.map(\.requestID)), PGArray.text(items.map(\.sessionID)),
            PGArray.ints(items.map(\.lockDelayMs)), PGArray.ints(items.map(\.queueForMs)),
            PGArray.ints(items.map(\.waiterSeq)), replicaID, PGArray.bools(items.map(\.bound)),
        ]
        one(LockSQL.acquire, params, completion) { rows throws(RPCError) in
            guard rows.rowCount == items.count else { throw RPCError.internalError }
            return (0..<rows.rowCount).map { i in
                if let token = rows.string(i, 1) {
                    return .granted(
                        LockGrant(
                            name: items[i].name, token: token, fencingToken: rows.int(i, 2) ?? 0,
                            acquiredAtUs: rows.int(i, 3) ?? 0, expiresAtUs: rows.int(i, 4) ?? 0))
                }
                if rows.bool(i, 10) == true {
                    return .refused(Self.requestIDReused(items[i], ttlMs: rows.int(i, 11), lockDelayMs: rows.int(i, 12),
                                                         bound: rows.bool(i, 13) ?? false))
                }
                return .notGranted(
                    LockRefusal(
                        holder: rows.string(i, 5), freeAtUs: rows.int(i, 6), waiterSeq: rows.int(i, 7),
                        aheadUntilUs: rows.int(i, 8), nowUs: rows.int(i, 9) ?? 0))
            }
        }
    }

    /// The error for a `requestId` whose live grant was made with other values than its retry's.
    static func requestIDReused(_ r: LockRequest, ttlMs: Int64?, lockDelayMs: Int64?, bound: Bool) -> RPCError {
        .conflict(
            "requestId \(r.requestID ?? "") was granted lock \(r.name) with ttlMs \(ttlMs.map(String.init) ?? "?"), "
                + "lockDelayMs \(lockDelayMs ?? 0) and bindToSession \(bound); a retry must repeat them "
                + "(use a new requestId for a different request)",
            reason: "request_id_reused",
            [
                "name": .string(r.name), "requestId": .from(r.requestID), "ttlMs": .from(ttlMs),
                "lockDelayMs": .from(lockDelayMs), "bindToSession": .bool(bound),
            ])
    }

    /// Extends a lease held with `token` (compare-and-set). An expired or taken-over lease is a
    /// `conflict` with reason `lease_lost`.
    public func renewLock(
        name: String, token: String, ttlMs: Int64, _ completion: @escaping (Result<LockGrant, RPCError>) -> Void
    ) {
        one(LockSQL.renew, [name, token, String(ttlMs)], completion) { rows throws(RPCError) in
            guard rows.rowCount > 0 else {
                throw .conflict(
                    "lock \(name) is not held with this token (expired or taken over)", reason: "lease_lost",
                    ["name": .string(name)])
            }
            return LockGrant(
                name: name, token: token, fencingToken: rows.int(0, 1) ?? 0, acquiredAtUs: 0,
                expiresAtUs: rows.int(0, 0) ?? 0)
        }
    }

    /// Releases leases in one statement (compare-and-delete on each token; with a session, only while the
    /// lease is bound to it).
    public func releaseLocks(
        _ items: [(name: String, token: String, session: String?)],
        _ completion: @escaping (Result<[LockRelease], RPCError>) -> Void
    ) {
        let params = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.token)), PGArray.text(items.map(\.session)),
        ]
        one(LockSQL.release, params, completion) { rows throws(RPCError) in
            var freed: [String: LockRelease] = [:]
            for i in 0..<rows.rowCount {
                guard let name = rows.string(i, 0), let token = rows.string(i, 1) else { throw RPCError.internalError }
                freed[name + "\u{0}" + token] = LockRelease(
                    released: true, fencingToken: rows.int(i, 2), releasedAtUs: rows.int(i, 3))
            }
            return items.map { freed[$0.name + "\u{0}" + $0.token] ?? LockRelease(released: false) }
        }
    }

    /// Releases one lease; `true` when `token` held it.
    public func releaseLock(name: String, token: String, _ completion: @escaping (Result<Bool, RPCError>) -> Void) {
        releaseLocks([(name, token, nil)]) { completion($0.map { $0[0].released }) }
    }

    /// Removes waiters from the durable line (they gave up or left). Per waiter: the lock's holder and
    /// when its lease runs out, if it is still held.
    public func removeLockWaiters(
        _ seqs: [Int64], _ completion: @escaping (Result<[(holder: String?, freeAtUs: Int64?)], RPCError>) -> Void
    ) {
        one(LockSQL.removeWaiters, [PGArray.ints(seqs)], completion) { rows throws(RPCError) in
            guard rows.rowCount == seqs.count else { throw RPCError.internalError }
            return (0..<rows.rowCount).map { (rows.string($0, 1), rows.int($0, 2)) }
        }
    }

    /// Keeps this replica's queued waiters counting (their rows stop counting some seconds after the
    /// last refresh, so a replica that dies does not hold up the line for long).
    public func refreshLockWaiters(replicaID: String, _ completion: @escaping (Result<Void, RPCError>) -> Void) {
        one(LockSQL.refreshWaiters, [replicaID], completion) { _ in () }
    }

    /// Deletes every replica's dead waiters and wakes their lines.
    public func sweepLockWaiters(_ completion: @escaping (Result<Void, RPCError>) -> Void) {
        one(LockSQL.sweepWaiters, [], completion) { _ in () }
    }

    static func lockJSON(_ r: PQResult, _ i: Int) -> JSON {
        func time(_ col: Int) -> JSON { .from(r.int(i, col).map { Timestamp.format(epochMs: $0 / 1000) }) }
        let held = r.bool(i, 1) ?? false
        var o: JSONObject = ["name": .from(r.string(i, 0)), "held": .bool(held)]
        if held {
            o["holder"] = .from(r.string(i, 2))
            // A job or delivery holding its schedule's lock holds it until it ends: the lease's expiry a
            // century away means nothing, so it is left out, and the owner says what to wait for.
            let job = r.int(i, 12)
            let delivery = r.int(i, 13)
            let scheduleHold = delivery != nil || r.bool(i, 14) == true
            if job != nil || delivery != nil {
                var owner: JSONObject = [:]
                if let job { owner["job"] = .string(String(job)) }
                if let delivery { owner["delivery"] = .string(String(delivery)) }
                if scheduleHold, let name = r.string(i, 0), name.hasPrefix("cron:") {
                    owner["schedule"] = .string(String(name.dropFirst(5)))
                }
                o["owner"] = .object(owner)
            }
            if !scheduleHold { o["expiresAt"] = time(3) }
            o["acquiredAt"] = time(4)
        }
        if !r.isNull(i, 10) { o["lockDelayUntil"] = time(10) }
        o["fencingToken"] = .from(r.int(i, 5))
        o["waiters"] = .from(r.int(i, 11))
        o["stats"] = [
            "grants": .from(r.int(i, 6)), "waits": .from(r.int(i, 7)), "expiriesWithoutRelease": .from(r.int(i, 8)),
            "releases": .from(r.int(i, 9)),
        ]
        return .object(o)
    }

    /// A lock's state and counters; a name never acquired reads as free with fencing token 0.
    public func lock(name: String, _ completion: @escaping (Result<JSON, RPCError>) -> Void) {
        one(LockSQL.get, [name], completion) { rows in
            rows.rowCount > 0
                ? Self.lockJSON(rows, 0)
                : [
                    "name": .string(name), "held": false, "fencingToken": 0, "waiters": 0,
                    "stats": ["grants": 0, "waits": 0, "expiriesWithoutRelease": 0, "releases": 0],
                ]
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
