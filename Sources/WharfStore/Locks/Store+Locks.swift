import WharfPQ

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

/// A lease that was granted. Times are epoch milliseconds of PostgreSQL's clock, rounded down (the
/// lease lasts at least until `expiresAtMs`).
public struct LockGrant: Sendable, Equatable {
    public var name: String
    public var token: String
    public var fencingToken: Int64
    public var acquiredAtMs: Int64
    public var expiresAtMs: Int64
}

/// What the look at a lease expected to have run out found.
public struct LapsedLease: Sendable, Equatable {
    /// Milliseconds until it runs out, when it is still held with its token; else nil.
    public var leftMs: Int64?
    /// It ran out still held with its token: it expired without a release.
    public var expired: Bool
    public var holder: String?
    public var fencingToken: Int64?
}

/// The outcome of one acquire attempt.
public enum LockOutcome: Sendable {
    case granted(LockGrant)
    case notGranted(LockRefusal)
    /// The request was refused outright: its `requestId` names a live grant made with other values.
    case requestIDReused(LockReuse)
}

/// What the live grant of a reused `requestId` was made with (what a retry must repeat).
public struct LockReuse: Sendable, Equatable {
    public var ttlMs: Int64?
    public var lockDelayMs: Int64?
    public var bound: Bool
}

/// The outcome of a renewal.
public enum LockRenewal: Sendable {
    /// The lease now runs until the grant's `expiresAtMs` (its `acquiredAtMs` is not read: 0).
    case renewed(LockGrant)
    /// The lease is not held with this token (expired, released or taken over).
    case leaseLost
}

/// A lock row as `locks.get` and `locks.list` read it. Times are epoch milliseconds of PostgreSQL's clock,
/// rounded down.
public struct LockRow: Sendable, Equatable {
    public var name: String
    /// Held by an unexpired lease.
    public var held: Bool
    public var holder: String?
    public var expiresAtMs: Int64?
    public var acquiredAtMs: Int64?
    public var fencingToken: Int64
    public var grants: Int64
    public var waits: Int64
    /// Leases that ran out without a release, the current one included once it has.
    public var expiriesWithoutRelease: Int64
    public var releases: Int64
    /// While an expired lease still blocks the name (lock-delay), when it stops.
    public var lockDelayUntilMs: Int64?
    /// Live waiters queued on any replica.
    public var waiters: Int64
    /// The job holding the lock (a lockKey lease, or its schedule's overlap hold), if one does.
    public var ownerJob: Int64?
    /// The webhook delivery holding its schedule's lock, if one does.
    public var ownerDelivery: Int64?
    /// The holder is a schedule's job or delivery (overlap "skip"): the lease lasts until it ends.
    public var scheduleHold: Bool

    /// A name that was never acquired: free, fencing token 0.
    public static func never(_ name: String) -> LockRow {
        LockRow(
            name: name, held: false, fencingToken: 0, grants: 0, waits: 0, expiriesWithoutRelease: 0, releases: 0,
            waiters: 0, scheduleHold: false)
    }
}

/// Why an acquire was not granted, and when it is worth trying again (by the database clock).
public struct LockRefusal: Sendable {
    /// The current holder, if the lock is held (or expired and still in its lock-delay).
    public var holder: String?
    /// When the holder's lease (plus lock-delay) runs out, epoch milliseconds rounded down: the instant
    /// the holder was told (`LockGrant.expiresAtMs`, without lock-delay).
    public var freeAtMs: Int64?
    /// The place in the line of waiters, when the request joined it.
    public var waiterSeq: Int64?
    /// Milliseconds until the holder's lease (plus lock-delay) runs out, rounded up (nil when it is not
    /// held): a retry this much later does not find it still held.
    public var freeInMs: Int64?
    /// Milliseconds until the older waiters ahead stop counting if their replica stops refreshing them,
    /// rounded up (nil when none is ahead).
    public var aheadForMs: Int64?
}

/// The outcome of a release.
public struct LockRelease: Sendable {
    public var released: Bool
    public var fencingToken: Int64?
    public var releasedAtMs: Int64?
}

extension Store {
    /// Grants, in one plain upsert (one commit), each requested lock that is free and has nobody in
    /// line: the common case. Returns the grants by name; a request left out is not refused, only
    /// undecided (`decideLocks` decides it). Names must be distinct within a call.
    public func grantFreeLocks(
        _ items: [LockRequest],
        _ completion: @escaping (Result<[String: LockGrant], StoreError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.holder)), PGArray.ints(items.map(\.ttlMs)),
            PGArray.text(items.map(\.requestID)), PGArray.text(items.map(\.sessionID)),
            PGArray.ints(items.map(\.lockDelayMs)), PGArray.bools(items.map(\.bound)),
        ]
        rows(LockSQL.acquireFree, params, completion) { rows throws(StoreError) in
            var grants: [String: LockGrant] = [:]
            for i in 0..<rows.rowCount {
                guard let name = rows.string(i, 0), let token = rows.string(i, 1) else { throw .internalError }
                grants[name] = LockGrant(
                    name: name, token: token, fencingToken: rows.int(i, 2) ?? 0, acquiredAtMs: rows.int(i, 5) ?? 0,
                    expiresAtMs: rows.int(i, 6) ?? 0)
            }
            return grants
        }
    }

    /// Decides each request exactly in one statement (one commit): grants, retried requests, the line
    /// of waiters, contention counts. Each request reads its own outcome. A name may come more than once
    /// (the first request may be granted, the others queue behind it).
    public func decideLocks(
        _ items: [LockRequest], replicaID: String,
        _ completion: @escaping (Result<[LockOutcome], StoreError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.holder)), PGArray.ints(items.map(\.ttlMs)),
            PGArray.text(items.map(\.requestID)), PGArray.text(items.map(\.sessionID)),
            PGArray.ints(items.map(\.lockDelayMs)), PGArray.ints(items.map(\.queueForMs)),
            PGArray.ints(items.map(\.waiterSeq)), replicaID, PGArray.bools(items.map(\.bound)),
        ]
        rows(LockSQL.acquire, params, plan: .byKey, completion) { rows throws(StoreError) in
            guard rows.rowCount == items.count else { throw .internalError }
            return (0..<rows.rowCount).map { i in
                if let token = rows.string(i, 1) {
                    return .granted(
                        LockGrant(
                            name: items[i].name, token: token, fencingToken: rows.int(i, 2) ?? 0,
                            acquiredAtMs: rows.int(i, 3) ?? 0, expiresAtMs: rows.int(i, 4) ?? 0))
                }
                if rows.bool(i, 10) == true {
                    return .requestIDReused(
                        LockReuse(
                            ttlMs: rows.int(i, 11), lockDelayMs: rows.int(i, 12), bound: rows.bool(i, 13) ?? false))
                }
                return .notGranted(
                    LockRefusal(
                        holder: rows.string(i, 5), freeAtMs: rows.int(i, 6), waiterSeq: rows.int(i, 7),
                        freeInMs: rows.int(i, 9).map { max(0, $0) }, aheadForMs: rows.int(i, 8).map { max(0, $0) }))
            }
        }
    }

    /// Extends a lease held with `token` (compare-and-set); an expired or taken-over lease is lost.
    public func renewLock(
        name: String, token: String, ttlMs: Int64, _ completion: @escaping (Result<LockRenewal, StoreError>) -> Void
    ) {
        rows(LockSQL.renew, [name, token, String(ttlMs)], completion) { rows in
            guard rows.rowCount > 0 else { return .leaseLost }
            return .renewed(
                LockGrant(
                    name: name, token: token, fencingToken: rows.int(0, 1) ?? 0, acquiredAtMs: 0,
                    expiresAtMs: rows.int(0, 0) ?? 0))
        }
    }

    /// Releases leases in one statement (compare-and-delete on each token; with a session, only while the
    /// lease is bound to it).
    public func releaseLocks(
        _ items: [(name: String, token: String, session: String?)],
        _ completion: @escaping (Result<[LockRelease], StoreError>) -> Void
    ) {
        let params = [
            PGArray.text(items.map(\.name)), PGArray.text(items.map(\.token)), PGArray.text(items.map(\.session)),
        ]
        rows(LockSQL.release, params, plan: .byKey, completion) { rows throws(StoreError) in
            var freed: [String: LockRelease] = [:]
            for i in 0..<rows.rowCount {
                guard let name = rows.string(i, 0), let token = rows.string(i, 1) else { throw .internalError }
                freed[name + "\u{0}" + token] = LockRelease(
                    released: true, fencingToken: rows.int(i, 2), releasedAtMs: rows.int(i, 3))
            }
            return items.map { freed[$0.name + "\u{0}" + $0.token] ?? LockRelease(released: false) }
        }
    }

    /// Releases one lease; `true` when `token` held it.
    public func releaseLock(name: String, token: String, _ completion: @escaping (Result<Bool, StoreError>) -> Void) {
        releaseLocks([(name, token, nil)]) { completion($0.map { $0[0].released }) }
    }

    /// Removes waiters from the durable line (they gave up or left). Per waiter: the lock's holder and
    /// when its lease runs out, if it is still held.
    public func removeLockWaiters(
        _ seqs: [Int64], _ completion: @escaping (Result<[(holder: String?, freeAtMs: Int64?)], StoreError>) -> Void
    ) {
        rows(LockSQL.removeWaiters, [PGArray.ints(seqs)], completion) { rows throws(StoreError) in
            guard rows.rowCount == seqs.count else { throw .internalError }
            return (0..<rows.rowCount).map { (rows.string($0, 1), rows.int($0, 2)) }
        }
    }

    /// Wakes the lines of the leases that ran out among `leases` (held with those tokens until now), on
    /// every replica. Per lease: the milliseconds until it runs out when it is still held with its token,
    /// else nil (it ran out, or was released or taken over).
    public func wakeLapsedLocks(
        _ leases: [(name: String, token: String)], _ completion: @escaping (Result<[LapsedLease], StoreError>) -> Void
    ) {
        rows(LockSQL.wakeLapsed, [PGArray.text(leases.map(\.name)), PGArray.text(leases.map(\.token))], completion) {
            rows throws(StoreError) in
            guard rows.rowCount == leases.count else { throw .internalError }
            return (0..<rows.rowCount).map {
                LapsedLease(
                    leftMs: rows.int($0, 1), expired: rows.bool($0, 2) ?? false, holder: rows.string($0, 3),
                    fencingToken: rows.int($0, 4))
            }
        }
    }

    /// Keeps this replica's queued waiters counting (their rows stop counting some seconds after the
    /// last refresh, so a replica that dies does not hold up the line for long).
    public func refreshLockWaiters(replicaID: String, _ completion: @escaping (Result<Void, StoreError>) -> Void) {
        rows(LockSQL.refreshWaiters, [replicaID], completion) { _ in () }
    }

    /// Deletes every replica's dead waiters and wakes their lines.
    public func sweepLockWaiters(_ completion: @escaping (Result<Void, StoreError>) -> Void) {
        rows(LockSQL.sweepWaiters, [], completion) { _ in () }
    }

    static func lockRow(_ r: PQResult, _ i: Int) throws(StoreError) -> LockRow {
        guard let name = r.string(i, 0) else { throw .internalError }
        let held = r.bool(i, 1) ?? false
        let job = held ? r.int(i, 12) : nil
        let delivery = held ? r.int(i, 13) : nil
        return LockRow(
            name: name, held: held, holder: held ? r.string(i, 2) : nil, expiresAtMs: held ? r.int(i, 3) : nil,
            acquiredAtMs: held ? r.int(i, 4) : nil, fencingToken: r.int(i, 5) ?? 0, grants: r.int(i, 6) ?? 0,
            waits: r.int(i, 7) ?? 0, expiriesWithoutRelease: r.int(i, 8) ?? 0, releases: r.int(i, 9) ?? 0,
            lockDelayUntilMs: r.int(i, 10), waiters: r.int(i, 11) ?? 0, ownerJob: job, ownerDelivery: delivery,
            scheduleHold: held && (delivery != nil || r.bool(i, 14) == true))
    }

    /// A lock's state and counters; a name never acquired reads as free with fencing token 0.
    public func lock(name: String, _ completion: @escaping (Result<LockRow, StoreError>) -> Void) {
        rows(LockSQL.get, [name], completion) { rows throws(StoreError) in
            rows.rowCount > 0 ? try Self.lockRow(rows, 0) : .never(name)
        }
    }

    /// Locks by name after `after`, whose name starts with `prefix`, at most `limit`.
    public func listLocks(
        prefix: String?, after: String?, limit: Int, _ completion: @escaping (Result<[LockRow], StoreError>) -> Void
    ) {
        rows(LockSQL.list, [prefix, after, String(limit)], completion) { rows throws(StoreError) in
            var out: [LockRow] = []
            for i in 0..<rows.rowCount { out.append(try Self.lockRow(rows, i)) }
            return out
        }
    }
}
