import WharfPQ
import WharfRPC

/// A webhook endpoint with its health figures. Times are epoch milliseconds.
public struct EndpointRow: Sendable {
    public var id: Int64
    public var url: String
    public var description: String?
    public var events: [String]?
    public var rateLimitPerS: Int64?
    public var enabled: Bool
    public var disabledAtMs: Int64?
    public var disabledReason: String?
    public var disableAfterMs: Int64?
    public var dormantAfterMs: Int64?
    public var lastSuccessMs: Int64?
    public var lastFailureMs: Int64?
    public var failingSinceMs: Int64?
    public var consecutiveFailures: Int64
    public var createdAtMs: Int64
    public var updatedAtMs: Int64
    public var previousSecretUntilMs: Int64?
    public var attempts1h: Int64
    public var successes1h: Int64
    public var attempts24h: Int64
    public var successes24h: Int64
    public var latencyP50Ms: Double?
    public var latencyP95Ms: Double?
    public var pending: Int64
    public var nowMs: Int64
    /// How long finished deliveries are kept (null: the server's default).
    public var retentionMs: Int64?

    init(_ r: PQResult, _ i: Int) {
        id = r.int(i, 0) ?? 0
        url = r.string(i, 1) ?? ""
        description = r.string(i, 2)
        events = r.string(i, 3).flatMap { try? JSONParser.parse($0) }?.arrayValue?.compactMap(\.stringValue)
        rateLimitPerS = r.int(i, 4)
        enabled = r.bool(i, 5) ?? false
        disabledAtMs = r.int(i, 6)
        disabledReason = r.string(i, 7)
        disableAfterMs = r.int(i, 8)
        dormantAfterMs = r.int(i, 9)
        lastSuccessMs = r.int(i, 10)
        lastFailureMs = r.int(i, 11)
        failingSinceMs = r.int(i, 12)
        consecutiveFailures = r.int(i, 13) ?? 0
        createdAtMs = r.int(i, 14) ?? 0
        updatedAtMs = r.int(i, 15) ?? 0
        previousSecretUntilMs = r.int(i, 16)
        attempts1h = r.int(i, 17) ?? 0
        successes1h = r.int(i, 18) ?? 0
        attempts24h = r.int(i, 19) ?? 0
        successes24h = r.int(i, 20) ?? 0
        latencyP50Ms = r.string(i, 21).flatMap(Double.init)
        latencyP95Ms = r.string(i, 22).flatMap(Double.init)
        pending = r.int(i, 23) ?? 0
        nowMs = r.int(i, 24) ?? 0
        retentionMs = r.int(i, 25)
    }
}

/// A delivery a replica claimed for one attempt.
public struct ClaimedDelivery: Sendable {
    public var id: Int64
    public var messageID: String
    public var endpointID: Int64
    public var attempt: Int
    public var body: String
    public var url: String
    public var secrets: [String]
    public var rateLimitPerS: Int64?
}

/// One attempt's outcome, to record.
public struct DeliveryOutcome: Sendable {
    public var status: Int?
    public var latencyMs: Double
    public var errorKind: String?
    public var error: String?
    public var responseBody: String?
    /// `succeeded`, `failed` (no attempt left, or the endpoint is gone) or `pending` (retry later).
    public var nextState: String
    public var retryInMs: Int64?
    public var gone: Bool

    public init(
        status: Int?, latencyMs: Double, errorKind: String?, error: String?, responseBody: String?, nextState: String,
        retryInMs: Int64?, gone: Bool
    ) {
        self.status = status
        self.latencyMs = latencyMs
        self.errorKind = errorKind
        self.error = error
        self.responseBody = responseBody
        self.nextState = nextState
        self.retryInMs = retryInMs
        self.gone = gone
    }
}

extension Store {
    public func insertEndpoint(
        url: String, description: String?, events: [String]?, rateLimitPerS: Int64?, secret: String,
        disableAfterMs: Int64?, dormantAfterMs: Int64?, retentionMs: Int64? = nil,
        _ completion: @escaping (Result<EndpointRow, RPCError>) -> Void
    ) {
        let params: [String?] = [
            url, description, events.map { PGArray.text($0) }, rateLimitPerS.map(String.init), secret,
            disableAfterMs.map(String.init), dormantAfterMs.map(String.init), retentionMs.map(String.init),
        ]
        one(WebhookSQL.insertEndpoint, params, completion) { rows throws(RPCError) in
            guard rows.rowCount == 1 else { throw RPCError.internalError }
            return EndpointRow(rows, 0)
        }
    }

    public func endpoint(_ id: Int64, _ completion: @escaping (Result<EndpointRow?, RPCError>) -> Void) {
        one(WebhookSQL.getEndpoint, [String(id)], completion) { rows in rows.rowCount > 0 ? EndpointRow(rows, 0) : nil }
    }

    public func endpoints(after: Int64?, limit: Int, _ completion: @escaping (Result<[EndpointRow], RPCError>) -> Void) {
        one(WebhookSQL.listEndpoints, [after.map(String.init), String(limit)], completion) { rows in
            (0..<rows.rowCount).map { EndpointRow(rows, $0) }
        }
    }

    /// Sets the fields named in `set` (wire names) to the given values.
    public func updateEndpoint(
        _ id: Int64, url: String?, description: String?, events: [String]?, rateLimitPerS: Int64?,
        disableAfterMs: Int64?, dormantAfterMs: Int64?, retentionMs: Int64? = nil, set: [String],
        _ completion: @escaping (Result<EndpointRow?, RPCError>) -> Void
    ) {
        let params: [String?] = [
            String(id), url, description, events.map { PGArray.text($0) }, rateLimitPerS.map(String.init),
            disableAfterMs.map(String.init), dormantAfterMs.map(String.init), PGArray.text(set),
            retentionMs.map(String.init),
        ]
        one(WebhookSQL.updateEndpoint, params, completion) { rows in rows.rowCount > 0 ? EndpointRow(rows, 0) : nil }
    }

    public func removeEndpoint(_ id: Int64, _ completion: @escaping (Result<Bool, RPCError>) -> Void) {
        one(WebhookSQL.removeEndpoint, [String(id)], completion) { rows in rows.rowCount > 0 }
    }

    /// The endpoint's URL and the secrets that sign now; nil when it does not exist.
    public func endpointSecrets(
        _ id: Int64, _ completion: @escaping (Result<(url: String, secrets: [String])?, RPCError>) -> Void
    ) {
        one(WebhookSQL.secrets, [String(id)], completion) { rows in
            guard rows.rowCount > 0 else { return nil }
            return (rows.string(0, 0) ?? "", [rows.string(0, 1), rows.string(0, 2)].compactMap { $0 })
        }
    }

    public func rotateSecret(
        _ id: Int64, graceMs: Int64, newSecret: String, _ completion: @escaping (Result<Bool, RPCError>) -> Void
    ) {
        one(WebhookSQL.rotateSecret, [String(id), String(graceMs), newSecret], completion) { rows in rows.rowCount > 0 }
    }

    public func enableEndpoint(_ id: Int64, _ completion: @escaping (Result<EndpointRow?, RPCError>) -> Void) {
        one(WebhookSQL.enableEndpoint, [String(id)], completion) { rows in rows.rowCount > 0 ? EndpointRow(rows, 0) : nil }
    }

    /// What one claim of deliveries may take (see `WebhookSQL.claim`).
    public struct DeliveryClaim: Sendable {
        public var limit: Int
        /// Of `limit`, how many may go to endpoints that already have an attempt in flight or claimed.
        public var extra: Int
        public var blockedEndpoints: [Int64]
        public var busyEndpoints: [(endpoint: Int64, inFlight: Int)]
        public var perEndpoint: Int
        /// How many of the earliest due deliveries are looked at.
        public var window: Int
        public var leaseMs: Int64

        public init(
            limit: Int, extra: Int, blockedEndpoints: [Int64], busyEndpoints: [(endpoint: Int64, inFlight: Int)],
            perEndpoint: Int, window: Int, leaseMs: Int64
        ) {
            self.limit = limit
            self.extra = extra
            self.blockedEndpoints = blockedEndpoints
            self.busyEndpoints = busyEndpoints
            self.perEndpoint = perEndpoint
            self.window = window
            self.leaseMs = leaseMs
        }
    }

    public func claimDeliveries(
        _ c: DeliveryClaim,
        _ completion: @escaping (Result<(deliveries: [ClaimedDelivery], nowMs: Int64?), RPCError>) -> Void
    ) {
        let params: [String?] = [
            String(c.limit), String(c.leaseMs), PGArray.ints(c.blockedEndpoints),
            PGArray.ints(c.busyEndpoints.map(\.endpoint)), PGArray.ints(c.busyEndpoints.map { Int64($0.inFlight) }),
            String(c.perEndpoint), String(c.window), String(c.extra),
        ]
        one(WebhookSQL.claim, params, completion) { rows in
            let out = (0..<rows.rowCount).map { i in
                ClaimedDelivery(
                    id: rows.int(i, 0) ?? 0, messageID: rows.string(i, 1) ?? "", endpointID: rows.int(i, 2) ?? 0,
                    attempt: Int(rows.int(i, 3) ?? 1), body: rows.string(i, 4) ?? "", url: rows.string(i, 5) ?? "",
                    secrets: [rows.string(i, 6), rows.string(i, 7)].compactMap { $0 }, rateLimitPerS: rows.int(i, 8))
            }
            return (out, rows.rowCount > 0 ? rows.int(0, 9) : nil)
        }
    }

    /// Records a batch of attempts in one statement. Returns, per attempt, whether its endpoint went
    /// from enabled to disabled in this batch, and why.
    public func recordAttempts(
        _ items: [(delivery: ClaimedDelivery, outcome: DeliveryOutcome)], disableAfterMs: Int64,
        _ completion: @escaping (Result<[(justDisabled: Bool, reason: String?)], RPCError>) -> Void
    ) {
        // Each endpoint's health from the batch's outcomes, in order.
        var order: [Int64] = []
        var agg: [Int64: (anySuccess: Bool, lastSuccess: Bool, tail: Int64, anyFailure: Bool, gone: Bool)] = [:]
        for (d, o) in items {
            let ok = o.status.map { (200..<300).contains($0) } ?? false
            var a = agg[d.endpointID] ?? (false, false, 0, false, false)
            if agg[d.endpointID] == nil { order.append(d.endpointID) }
            if ok {
                a.anySuccess = true
                a.tail = 0
            } else {
                a.tail += 1
                a.anyFailure = true
            }
            a.lastSuccess = ok
            a.gone = a.gone || o.gone
            agg[d.endpointID] = a
        }
        let rows = items.map(\.outcome)
        let deliveries = items.map(\.delivery)
        let params: [String?] = [
            PGArray.ints(deliveries.map(\.id)), PGArray.ints(deliveries.map { Int64($0.attempt) }),
            PGArray.ints(deliveries.map(\.endpointID)), PGArray.ints(rows.map { $0.status.map(Int64.init) }),
            PGArray.doubles(rows.map(\.latencyMs)),
            PGArray.text(rows.map(\.errorKind)), PGArray.text(rows.map(\.error)), PGArray.text(rows.map(\.responseBody)),
            PGArray.text(rows.map(\.nextState)), PGArray.ints(rows.map(\.retryInMs)),
            PGArray.ints(order), PGArray.bools(order.map { agg[$0]!.anySuccess }),
            PGArray.bools(order.map { agg[$0]!.lastSuccess }), PGArray.ints(order.map { agg[$0]!.tail }),
            PGArray.bools(order.map { agg[$0]!.anyFailure }), PGArray.bools(order.map { agg[$0]!.gone }),
            String(disableAfterMs),
        ]
        one(WebhookSQL.record, params, completion) { r in
            var changed: [Int64: (Bool, String?)] = [:]
            for i in 0..<r.rowCount {
                guard let id = r.int(i, 0) else { continue }
                let now = r.bool(i, 1) ?? true
                let before = r.bool(i, 2) ?? true
                changed[id] = (before && !now, r.string(i, 3))
            }
            // The transition is reported once per endpoint: on its first attempt in the batch.
            var reported = Set<Int64>()
            return deliveries.map { d in
                guard let c = changed[d.endpointID], c.0, reported.insert(d.endpointID).inserted else { return (false, nil) }
                return c
            }
        }
    }

    public func nextDeliveryDue(
        skipping blocked: [Int64],
        _ completion: @escaping (Result<(nextMs: Int64?, leaseExpiryMs: Int64?, nowMs: Int64), RPCError>) -> Void
    ) {
        one(WebhookSQL.nextDue, [PGArray.ints(blocked)], completion) { rows in
            (rows.int(0, 0), rows.int(0, 1), rows.int(0, 2) ?? 0)
        }
    }

    public func deliveries(
        endpointID: Int64, state: String?, before: Int64?, limit: Int,
        _ completion: @escaping (Result<[JSON], RPCError>) -> Void
    ) {
        let params: [String?] = [String(endpointID), state, before.map(String.init), String(limit)]
        one(WebhookSQL.deliveries, params, completion) { rows in
            (0..<rows.rowCount).map { i -> JSON in
                var o: JSONObject = [
                    "id": .from(rows.string(i, 0)), "messageId": .from(rows.string(i, 1)), "event": .from(rows.string(i, 2)),
                    "state": .from(rows.string(i, 3)), "attempts": .from(rows.int(i, 4)),
                    "endpointId": .from(rows.string(i, 11)), "createdAt": .from(rows.string(i, 6)),
                ]
                if rows.string(i, 3) == "pending" { o["nextAttemptAt"] = .from(rows.string(i, 5)) }
                if let f = rows.string(i, 7) { o["finishedAt"] = .string(f) }
                if let s = rows.int(i, 8) { o["lastStatus"] = .int(s) }
                if let e = rows.string(i, 9) { o["lastError"] = .string(e) }
                o["attemptLog"] = rows.string(i, 10).flatMap { try? JSONParser.parse($0) } ?? .array([])
                return .object(o)
            }
        }
    }

    /// Queues a finished delivery again. Returns whether it was requeued and its state now (nil: none).
    public func redeliver(_ id: Int64, _ completion: @escaping (Result<(requeued: Bool, state: String?), RPCError>) -> Void) {
        one(WebhookSQL.redeliver, [String(id)], completion) { rows in ((rows.int(0, 0) ?? 0) > 0, rows.string(0, 1)) }
    }

    public func recoverDeliveries(
        endpointID: Int64, sinceMs: Int64, _ completion: @escaping (Result<Int, RPCError>) -> Void
    ) {
        one(WebhookSQL.recover, [String(endpointID), String(sinceMs)], completion) { rows in Int(rows.int(0, 0) ?? 0) }
    }

    /// Deletes up to `limit` finished deliveries past their retention, with their attempts; returns how many.
    public func pruneDeliveries(
        defaultRetentionMs: Int64, limit: Int, _ completion: @escaping (Result<Int, RPCError>) -> Void
    ) {
        one(WebhookSQL.prune, [String(defaultRetentionMs), String(limit)], completion) { rows in
            Int(rows.int(0, 0) ?? 0)
        }
    }

    public func deferDelivery(_ d: ClaimedDelivery, byMs: Int64, _ completion: @escaping (Result<Bool, RPCError>) -> Void) {
        one(WebhookSQL.deferDelivery, [String(d.id), String(d.attempt), String(byMs)], completion) { rows in
            rows.affectedRows > 0
        }
    }

    /// Queues a batch of sends by event in one statement: per send, its deliveries (one per subscribed
    /// endpoint, in endpoint order) and whether each is new.
    public func sendEventMany(
        _ items: [WebhookSend],
        _ completion: @escaping (Result<[[(deliveryID: Int64, endpointID: Int64, new: Bool)]], RPCError>) -> Void
    ) {
        sendEventManyOnce(items) { [self] r in
            // A keyed send that found nothing may have met the same key committed by a concurrent
            // statement after this one's snapshot (its insert was skipped, the row invisible): a new
            // statement sees it. A send that no endpoint takes finds nothing again.
            guard case .success(var out) = r else { return completion(r) }
            let again = items.indices.filter { items[$0].idempotencyKey != nil && out[$0].isEmpty }
            guard !again.isEmpty else { return completion(r) }
            sendEventManyOnce(again.map { items[$0] }) { r2 in
                if case .success(let retried) = r2 { for (k, i) in again.enumerated() { out[i] = retried[k] } }
                completion(.success(out))
            }
        }
    }

    private func sendEventManyOnce(
        _ items: [WebhookSend],
        _ completion: @escaping (Result<[[(deliveryID: Int64, endpointID: Int64, new: Bool)]], RPCError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.text(items.map(\.messageID)), PGArray.text(items.map(\.event)), PGArray.text(items.map(\.body)),
            PGArray.text(items.map(\.idempotencyKey)),
        ]
        one(WebhookSQL.sendEventMany, params, completion) { rows in
            var out = Array(repeating: [(deliveryID: Int64, endpointID: Int64, new: Bool)](), count: items.count)
            for i in 0..<rows.rowCount {
                guard let ord = rows.int(i, 0), let d = rows.int(i, 1), let e = rows.int(i, 2), ord >= 1,
                    ord <= items.count
                else { continue }
                out[Int(ord) - 1].append((d, e, rows.bool(i, 3) ?? true))
            }
            return out
        }
    }

    /// One `webhooks.send`: to one endpoint (`sendMany`), or by event to every enabled endpoint
    /// subscribed to it (`sendEventMany`, when `endpointID` is nil).
    public struct WebhookSend: Sendable {
        public var messageID: String
        public var endpointID: Int64?
        public var event: String
        public var body: String
        public var idempotencyKey: String?
        public var delayMs: Int64?

        public init(
            messageID: String, endpointID: Int64?, event: String, body: String, idempotencyKey: String? = nil,
            delayMs: Int64? = nil
        ) {
            self.messageID = messageID
            self.endpointID = endpointID
            self.event = event
            self.body = body
            self.idempotencyKey = idempotencyKey
            self.delayMs = delayMs
        }
    }

    /// Queues a batch of sends in one statement. Per send: the delivery id and whether it is new, or
    /// nil when the endpoint does not exist.
    public func sendMany(
        _ sends: [WebhookSend], _ completion: @escaping (Result<[(deliveryID: Int64, new: Bool)?], RPCError>) -> Void
    ) {
        sendManyOnce(sends) { [self] r in
            // As in `sendEventMany`: a keyed send that found nothing is looked at again by a new statement.
            guard case .success(var out) = r else { return completion(r) }
            let again = sends.indices.filter { sends[$0].idempotencyKey != nil && out[$0] == nil }
            guard !again.isEmpty else { return completion(r) }
            sendManyOnce(again.map { sends[$0] }) { r2 in
                if case .success(let retried) = r2 { for (k, i) in again.enumerated() { out[i] = retried[k] } }
                completion(.success(out))
            }
        }
    }

    private func sendManyOnce(
        _ sends: [WebhookSend], _ completion: @escaping (Result<[(deliveryID: Int64, new: Bool)?], RPCError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.text(sends.map(\.messageID)), PGArray.ints(sends.map(\.endpointID)), PGArray.text(sends.map(\.event)),
            PGArray.text(sends.map(\.body)), PGArray.text(sends.map(\.idempotencyKey)), PGArray.ints(sends.map(\.delayMs)),
        ]
        one(WebhookSQL.sendMany, params, completion) { rows in
            (0..<rows.rowCount).map { i in rows.int(i, 1).map { ($0, rows.bool(i, 2) ?? false) } }
        }
    }
}
