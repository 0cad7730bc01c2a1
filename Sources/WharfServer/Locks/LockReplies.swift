import WharfCore
import WharfRPC
import WharfStore

/// Every reply and refusal of the `locks.*` family, built from the store's typed rows and outcomes: the
/// one place where locks meet the wire protocol (Protocol/locks.md).
enum LockReplies {
    /// `locks.acquire` granted (also `locks.acquire` retried with its `requestId`).
    static func granted(_ grant: LockGrant) -> JSON {
        [
            "granted": true, "name": .string(grant.name), "token": .string(grant.token),
            "fencingToken": .int(grant.fencingToken), "expiresAt": .time(epochMs: grant.expiresAtMs),
        ]
    }

    /// `locks.acquire` not granted: who holds the lock, and until when (lease plus lock-delay).
    /// `draining`: the wait was cut short because this server drains (ask another replica).
    static func notGranted(_ name: String, _ holder: String?, freeAtMs: Int64?, draining: Bool = false) -> JSON {
        var reply: JSONObject = [
            "granted": false, "name": .string(name), "heldBy": .from(holder), "expiresAt": .time(epochMs: freeAtMs),
        ]
        if draining { reply["draining"] = true }
        return .object(reply)
    }

    /// `locks.acquire` with `waitMs` when this replica already queues `max` waiters for the name.
    static func tooManyWaiters(_ name: String, max: Int) -> RPCError {
        .limitExceeded(
            "lock \(name) already has \(max) waiters on this server; try again later", limit: "lockWaiters", max: max,
            retryable: true)
    }

    /// What an acquire attempt gets when its caller's connection closed before it was sent (nobody
    /// reads it: the attempt is dropped).
    static let callerLeft = RPCError.unavailable("the caller's connection closed", reason: "caller_left")

    /// A `requestId` whose live grant was made with other values than its retry's.
    static func requestIDReused(_ r: LockRequest, _ reuse: LockReuse) -> RPCError {
        .conflict(
            "requestId \(r.requestID ?? "") was granted lock \(r.name) with ttlMs \(reuse.ttlMs.map(String.init) ?? "?"), "
                + "lockDelayMs \(reuse.lockDelayMs ?? 0) and bindToSession \(reuse.bound); a retry must repeat them "
                + "(use a new requestId for a different request)",
            reason: "request_id_reused",
            [
                "name": .string(r.name), "requestId": .from(r.requestID), "ttlMs": .from(reuse.ttlMs),
                "lockDelayMs": .from(reuse.lockDelayMs), "bindToSession": .bool(reuse.bound),
            ])
    }

    /// `locks.renew`.
    static func renewed(_ name: String, _ renewal: LockRenewal) -> Result<JSON, RPCError> {
        switch renewal {
        case .renewed(let grant):
            return .success([
                "name": .string(name), "expiresAt": .time(epochMs: grant.expiresAtMs), "fencingToken": .int(grant.fencingToken),
            ])
        case .leaseLost:
            return .failure(
                .conflict(
                    "lock \(name) is not held with this token (expired or taken over)", reason: "lease_lost",
                    ["name": .string(name)]))
        }
    }

    /// `locks.release`.
    static func released(_ name: String, _ released: Bool) -> Result<JSON, RPCError> {
        guard released else {
            return .failure(
                .conflict(
                    "lock \(name) is not held with this token (released, or taken over after expiry)",
                    reason: "lease_lost", ["name": .string(name)]))
        }
        return .success(["name": .string(name), "released": true])
    }

    /// A lock as `locks.get` and `locks.list` show it. A job or delivery holding its schedule's lock
    /// holds it until it ends: the row's expiry a century away means nothing, so it is left out, and
    /// `owner` says what to wait for.
    static func lock(_ row: LockRow) -> JSON {
        var o: JSONObject = ["name": .string(row.name), "held": .bool(row.held)]
        if row.held {
            o["holder"] = .from(row.holder)
            if row.ownerJob != nil || row.ownerDelivery != nil {
                var owner: JSONObject = [:]
                if let job = row.ownerJob { owner["job"] = .string(String(job)) }
                if let delivery = row.ownerDelivery { owner["delivery"] = .string(String(delivery)) }
                if row.scheduleHold, row.name.hasPrefix("cron:") { owner["schedule"] = .string(String(row.name.dropFirst(5))) }
                o["owner"] = .object(owner)
            }
            if !row.scheduleHold { o["expiresAt"] = .time(epochMs: row.expiresAtMs) }
            o["acquiredAt"] = .time(epochMs: row.acquiredAtMs)
        }
        if let until = row.lockDelayUntilMs { o["lockDelayUntil"] = .time(epochMs: until) }
        o["fencingToken"] = .int(row.fencingToken)
        o["waiters"] = .int(row.waiters)
        o["stats"] = [
            "grants": .int(row.grants), "waits": .int(row.waits),
            "expiriesWithoutRelease": .int(row.expiriesWithoutRelease), "releases": .int(row.releases),
        ]
        return .object(o)
    }

    /// `locks.list`: a page, and the cursor of the next one when the page is full.
    static func list(_ rows: [LockRow], limit: Int) -> JSON {
        [
            "locks": .array(rows.map(lock)),
            "nextCursor": rows.count == limit ? (rows.last.map { .string($0.name) } ?? .null) : .null,
        ]
    }
}
