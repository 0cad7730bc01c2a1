import WharfPQ
import WharfJSON

/// The statements on webhook endpoints and deliveries, with typed rows (`WebhookRows.swift`).
extension Store {
    /// Stores a new endpoint; returns it with a `webhook.ping` message for it.
    public func insertEndpoint(
        url: String, description: String?, events: [String]?, rateLimitPerS: Int64?, secret: String,
        disableAfterMs: Int64?, dormantAfterMs: Int64?, retentionMs: Int64? = nil,
        _ completion: @escaping (Result<(row: EndpointRow, ping: WebhookMessage), StoreError>) -> Void
    ) {
        let params: [String?] = [
            url, description, events.map { PGArray.text($0) }, rateLimitPerS.map(String.init), secret,
            disableAfterMs.map(String.init), dormantAfterMs.map(String.init), retentionMs.map(String.init),
        ]
        rows(WebhookSQL.insertEndpoint, params, completion) { rows throws(StoreError) in
            guard rows.rowCount == 1, let id = rows.string(0, EndpointRow.columnCount),
                let body = rows.string(0, EndpointRow.columnCount + 1)
            else { throw StoreError.internalError }
            return (EndpointRow(rows, 0), WebhookMessage(id: id, body: body))
        }
    }

    public func endpoint(_ id: Int64, _ completion: @escaping (Result<EndpointRow?, StoreError>) -> Void) {
        rows(WebhookSQL.getEndpoint, [String(id)], completion) { rows in rows.rowCount > 0 ? EndpointRow(rows, 0) : nil
        }
    }

    public func endpoints(
        after: Int64?, limit: Int, _ completion: @escaping (Result<[EndpointRow], StoreError>) -> Void
    ) {
        rows(WebhookSQL.listEndpoints, [after.map(String.init), String(limit)], completion) { rows in
            (0..<rows.rowCount).map { EndpointRow(rows, $0) }
        }
    }

    /// Sets the fields named in `set` (wire names) to the given values; nil when the endpoint does not exist.
    public func updateEndpoint(
        _ id: Int64, url: String?, description: String?, events: [String]?, rateLimitPerS: Int64?,
        disableAfterMs: Int64?, dormantAfterMs: Int64?, retentionMs: Int64? = nil, set: [String],
        _ completion: @escaping (Result<EndpointRow?, StoreError>) -> Void
    ) {
        let params: [String?] = [
            String(id), url, description, events.map { PGArray.text($0) }, rateLimitPerS.map(String.init),
            disableAfterMs.map(String.init), dormantAfterMs.map(String.init), PGArray.text(set),
            retentionMs.map(String.init),
        ]
        rows(WebhookSQL.updateEndpoint, params, completion) { rows in rows.rowCount > 0 ? EndpointRow(rows, 0) : nil }
    }

    /// Whether the endpoint existed.
    public func removeEndpoint(_ id: Int64, _ completion: @escaping (Result<Bool, StoreError>) -> Void) {
        rows(WebhookSQL.removeEndpoint, [String(id)], completion) { rows in rows.rowCount > 0 }
    }

    /// The endpoint's URL, the secrets that sign now and a `webhook.ping` for it; nil when it does not exist.
    public func endpointTarget(_ id: Int64, _ completion: @escaping (Result<EndpointTarget?, StoreError>) -> Void) {
        rows(WebhookSQL.secrets, [String(id)], completion) { rows in
            guard rows.rowCount > 0 else { return nil }
            return EndpointTarget(
                url: rows.string(0, 0) ?? "", secrets: [rows.string(0, 1), rows.string(0, 2)].compactMap { $0 },
                ping: WebhookMessage(id: rows.string(0, 3) ?? "", body: rows.string(0, 4) ?? ""))
        }
    }

    /// Whether the endpoint existed.
    public func rotateSecret(
        _ id: Int64, graceMs: Int64, newSecret: String, _ completion: @escaping (Result<Bool, StoreError>) -> Void
    ) {
        rows(WebhookSQL.rotateSecret, [String(id), String(graceMs), newSecret], completion) { rows in rows.rowCount > 0
        }
    }

    /// Enables the endpoint again; nil when it does not exist.
    /// Enabled endpoints that list event types: (id, the types).
    public func endpointEventLists(_ completion: @escaping (Result<[(Int64, [String])], StoreError>) -> Void) {
        rows(WebhookSQL.endpointEventLists, [], completion) { rows in
            (0..<rows.rowCount).compactMap { i in
                guard let id = rows.int(i, 0), let text = rows.string(i, 1),
                    let list = (try? JSONParser.parse(text))?.arrayValue
                else { return nil }
                return (id, list.compactMap(\.stringValue))
            }
        }
    }

    public func enableEndpoint(_ id: Int64, _ completion: @escaping (Result<EndpointRow?, StoreError>) -> Void) {
        rows(WebhookSQL.enableEndpoint, [String(id)], completion) { rows in
            rows.rowCount > 0 ? EndpointRow(rows, 0) : nil
        }
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
        _ completion: @escaping (Result<(deliveries: [ClaimedDelivery], nowMs: Int64?), StoreError>) -> Void
    ) {
        let params: [String?] = [
            String(c.limit), String(c.leaseMs), PGArray.ints(c.blockedEndpoints),
            PGArray.ints(c.busyEndpoints.map(\.endpoint)), PGArray.ints(c.busyEndpoints.map { Int64($0.inFlight) }),
            String(c.perEndpoint), String(c.window), String(c.extra),
        ]
        rows(WebhookSQL.claim, params, completion) { rows in
            let out = (0..<rows.rowCount).map { i in
                ClaimedDelivery(
                    id: rows.int(i, 0) ?? 0, messageID: rows.string(i, 1) ?? "", endpointID: rows.int(i, 2) ?? 0,
                    attempt: Int(rows.int(i, 3) ?? 1), body: rows.string(i, 4) ?? "", url: rows.string(i, 5) ?? "",
                    secrets: [rows.string(i, 6), rows.string(i, 7)].compactMap { $0 }, rateLimitPerS: rows.int(i, 8))
            }
            return (out, rows.rowCount > 0 ? rows.int(0, 9) : nil)
        }
    }

    /// Records a batch of attempts in one statement, with each endpoint's attempts summed up in order
    /// (`endpoints`, see `EndpointAttempts`). Returns, per attempt, whether its endpoint went from
    /// enabled to disabled in this batch, and why.
    public func recordAttempts(
        _ items: [(delivery: ClaimedDelivery, outcome: DeliveryOutcome)], endpoints: [EndpointAttempts],
        disableAfterMs: Int64, _ completion: @escaping (Result<[RecordedAttempt], StoreError>) -> Void
    ) {
        let outcomes = items.map(\.outcome)
        let deliveries = items.map(\.delivery)
        let params: [String?] = [
            PGArray.ints(deliveries.map(\.id)), PGArray.ints(deliveries.map { Int64($0.attempt) }),
            PGArray.ints(deliveries.map(\.endpointID)), PGArray.ints(outcomes.map { $0.status.map(Int64.init) }),
            PGArray.doubles(outcomes.map(\.latencyMs)),
            PGArray.text(outcomes.map(\.errorKind)), PGArray.text(outcomes.map(\.error)),
            PGArray.text(outcomes.map(\.responseBody)), PGArray.text(outcomes.map(\.next.state)),
            PGArray.ints(
                outcomes.map { o -> Int64? in
                    if case .retry(let ms) = o.next { return ms }
                    return nil
                }),
            PGArray.ints(endpoints.map(\.endpointID)), PGArray.bools(endpoints.map(\.anySuccess)),
            PGArray.bools(endpoints.map(\.lastSuccess)), PGArray.ints(endpoints.map(\.tailFailures)),
            PGArray.bools(endpoints.map(\.anyFailure)), PGArray.bools(endpoints.map(\.gone)),
            String(disableAfterMs),
        ]
        rows(WebhookSQL.record, params, completion) { r in
            var changed: [Int64: RecordedAttempt] = [:]
            for i in 0..<r.rowCount {
                guard let id = r.int(i, 0) else { continue }
                let now = r.bool(i, 1) ?? true
                let before = r.bool(i, 2) ?? true
                changed[id] = RecordedAttempt(justDisabled: before && !now, reason: r.string(i, 3))
            }
            // The transition is reported once per endpoint: on its first attempt in the batch.
            var reported = Set<Int64>()
            return deliveries.map { d in
                guard let c = changed[d.endpointID], c.justDisabled, reported.insert(d.endpointID).inserted else {
                    return RecordedAttempt(justDisabled: false, reason: nil)
                }
                return c
            }
        }
    }

    public func nextDeliveryDue(
        skipping blocked: [Int64],
        _ completion: @escaping (Result<(nextMs: Int64?, leaseExpiryMs: Int64?, nowMs: Int64), StoreError>) -> Void
    ) {
        rows(WebhookSQL.nextDue, [PGArray.ints(blocked)], completion) { rows in
            (rows.int(0, 0), rows.int(0, 1), rows.int(0, 2) ?? 0)
        }
    }

    /// An endpoint's deliveries, newest first, before delivery `before`.
    public func deliveries(
        endpointID: Int64, state: String?, before: Int64?, limit: Int,
        _ completion: @escaping (Result<[DeliveryRow], StoreError>) -> Void
    ) {
        let params: [String?] = [String(endpointID), state, before.map(String.init), String(limit)]
        rows(WebhookSQL.deliveries, params, completion) { rows in (0..<rows.rowCount).map { DeliveryRow(rows, $0) } }
    }

    /// Queues a finished delivery again.
    public func redeliver(_ id: Int64, _ completion: @escaping (Result<RedeliverOutcome, StoreError>) -> Void) {
        rows(WebhookSQL.redeliver, [String(id)], completion) { rows in
            guard let state = rows.string(0, 1) else { return .notFound }
            return (rows.int(0, 0) ?? 0) > 0 ? .requeued : .unfinished(state: state)
        }
    }

    /// Queues again every failed delivery of the endpoint created since `sinceMs`; returns how many.
    public func recoverDeliveries(
        endpointID: Int64, sinceMs: Int64, _ completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        rows(WebhookSQL.recover, [String(endpointID), String(sinceMs)], completion) { rows in Int(rows.int(0, 0) ?? 0) }
    }

    /// Deletes up to `limit` finished deliveries past their retention, with their attempts; returns how many.
    public func pruneDeliveries(
        defaultRetentionMs: Int64, limit: Int, _ completion: @escaping (Result<Int, StoreError>) -> Void
    ) {
        rows(WebhookSQL.prune, [String(defaultRetentionMs), String(limit)], completion) { rows in
            Int(rows.int(0, 0) ?? 0)
        }
    }

    /// Gives a claimed delivery back untried; whether it was still ours.
    public func deferDelivery(
        _ d: ClaimedDelivery, byMs: Int64, _ completion: @escaping (Result<Bool, StoreError>) -> Void
    ) {
        rows(WebhookSQL.deferDelivery, [String(d.id), String(d.attempt), String(byMs)], completion) { rows in
            rows.affectedRows > 0
        }
    }

    /// Queues a batch of sends in one statement (`wharf.send_webhooks`). Per send, its deliveries: one
    /// for a send to an endpoint (none when the endpoint does not exist), one per subscribed endpoint in
    /// endpoint order for a send by event.
    public func send(_ sends: [WebhookSend], _ completion: @escaping (Result<[[SentDelivery]], StoreError>) -> Void) {
        sendOnce(sends) { [self] r in
            // A keyed send that found nothing may have met the same key committed by a concurrent
            // statement after this one's snapshot (its insert was skipped, the row invisible): a new
            // statement sees it. A send that no endpoint takes finds nothing again.
            guard case .success(var out) = r else { return completion(r) }
            let again = sends.indices.filter { sends[$0].idempotencyKey != nil && out[$0].isEmpty }
            guard !again.isEmpty else { return completion(r) }
            sendOnce(again.map { sends[$0] }) { r2 in
                if case .success(let retried) = r2 { for (k, i) in again.enumerated() { out[i] = retried[k] } }
                completion(.success(out))
            }
        }
    }

    private func sendOnce(
        _ sends: [WebhookSend], _ completion: @escaping (Result<[[SentDelivery]], StoreError>) -> Void
    ) {
        let params: [String?] = [
            PGArray.ints(sends.map(\.endpointID)), PGArray.text(sends.map(\.event)), PGArray.text(sends.map(\.data)),
            PGArray.text(sends.map(\.idempotencyKey)), PGArray.ints(sends.map(\.delayMs)),
            PGArray.text(sends.map(\.scheduleName)), PGArray.ints(sends.map(\.fireMs)),
        ]
        rows(WebhookSQL.send, params, completion) { rows in
            var out = Array(repeating: [SentDelivery](), count: sends.count)
            for i in 0..<rows.rowCount {
                guard let ord = rows.int(i, 0), let d = rows.int(i, 1), let e = rows.int(i, 2), ord >= 1,
                    ord <= sends.count
                else { continue }
                out[Int(ord) - 1].append(SentDelivery(deliveryID: d, endpointID: e, new: rows.bool(i, 3) ?? true))
            }
            return out
        }
    }
}
