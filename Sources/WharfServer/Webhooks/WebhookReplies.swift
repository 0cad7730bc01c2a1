import WharfCore
import WharfHooks
import WharfRPC
import WharfStore

/// The webhooks family's replies and refusals as the protocol shows them: the one place where
/// webhook rows and outcomes become JSON and `RPCError`s.
enum WebhookReplies {
    // MARK: Refusals

    static func endpointNotFound(_ id: Int64) -> RPCError { .notFound("webhook endpoint", id: String(id)) }

    static func deliveryNotFound(_ id: Int64) -> RPCError { .notFound("webhook delivery", id: String(id)) }

    static let invalidURL = RPCError.invalidParams(field: "url", "must be an http or https URL without credentials")

    /// A target none of whose addresses may be delivered to.
    static func privateAddress(_ url: String, _ addresses: [IPAddress]) -> RPCError {
        let list = addresses.map(\.description).joined(separator: ", ")
        return RPCError(
            code: RPCError.Code.invalidParams,
            message: "Invalid params: url leads only to non-public addresses" + (list.isEmpty ? "" : " (\(list))"),
            data: [
                "reason": "private_address", "field": "url",
                "detail": "loopback, private, link-local, CGNAT, multicast and similar targets are refused",
            ])
    }

    static func unresolvable(_ host: String, detail: String) -> RPCError {
        RPCError(
            code: RPCError.Code.invalidParams, message: "Invalid params: url host \(host) does not resolve",
            data: ["reason": "dns", "field": "url", "detail": .string(detail)])
    }

    // MARK: Endpoints

    /// An endpoint with its health summary; `dormantAfterMs` is the server's default.
    static func endpoint(_ e: EndpointRow, dormantAfterMs: Int64) -> JSONObject {
        [
            "id": .string(String(e.id)),
            "url": .string(e.url),
            "description": .from(e.description),
            "events": e.events.map { .array($0.map(JSON.string)) } ?? .null,
            "rateLimitPerS": .from(e.rateLimitPerS),
            "disableAfterMs": .from(e.disableAfterMs),
            "dormantAfterMs": .from(e.dormantAfterMs),
            "retentionMs": .from(e.retentionMs),
            "createdAt": .time(epochMs: e.createdAtMs),
            "updatedAt": .time(epochMs: e.updatedAtMs),
            "health": .object(health(e, dormantAfterMs: dormantAfterMs)),
        ]
    }

    static func health(_ e: EndpointRow, dormantAfterMs: Int64) -> JSONObject {
        func rate(_ ok: Int64, _ all: Int64) -> JSON {
            all == 0 ? .null : .double((Double(ok) / Double(all) * 1000).rounded() / 1000)
        }
        let state = !e.enabled ? "disabled" : e.consecutiveFailures > 0 ? "failing" : "enabled"
        let dormant = e.nowMs - (e.lastSuccessMs ?? e.createdAtMs) > (e.dormantAfterMs ?? dormantAfterMs)
        var o: JSONObject = [
            "state": .string(state),
            "dormant": .bool(dormant),
            "lastSuccessAt": .time(epochMs: e.lastSuccessMs),
            "lastFailureAt": .time(epochMs: e.lastFailureMs),
            "failingSince": .time(epochMs: e.failingSinceMs),
            "consecutiveFailures": .int(e.consecutiveFailures),
            "successRate1h": rate(e.successes1h, e.attempts1h),
            "successRate24h": rate(e.successes24h, e.attempts24h),
            "latencyP50Ms": e.latencyP50Ms.map { .double(($0 * 10).rounded() / 10) } ?? .null,
            "latencyP95Ms": e.latencyP95Ms.map { .double(($0 * 10).rounded() / 10) } ?? .null,
            "pendingDeliveries": .int(e.pending),
        ]
        if !e.enabled {
            o["disabledAt"] = .time(epochMs: e.disabledAtMs)
            o["disabledReason"] = .from(e.disabledReason)
        }
        return o
    }

    /// `webhooks.get`, `webhooks.update`, `webhooks.enable`: the endpoint, or not found.
    static func endpoint(
        _ r: Result<EndpointRow?, StoreError>, id: Int64, dormantAfterMs: Int64
    ) -> Result<JSON, RPCError> {
        r.mapError(\.rpcError).flatMap { row in
            guard let row else { return .failure(endpointNotFound(id)) }
            return .success(.object(endpoint(row, dormantAfterMs: dormantAfterMs)))
        }
    }

    /// `webhooks.register`: the endpoint, its secret (shown only here) and how its ping went.
    static func registered(
        _ row: EndpointRow, secret: String, ping: Result<HTTPResponse, RPCError>, dormantAfterMs: Int64
    )
        -> JSON
    {
        var o = endpoint(row, dormantAfterMs: dormantAfterMs)
        let p = self.ping(ping)
        o["secret"] = .string(secret)
        o["ping"] = p
        o["verified"] = p["verified"] ?? false
        return .object(o)
    }

    /// A ping's outcome: `{verified, status, latencyMs, errorKind?, error?}`, or why the target was refused.
    static func ping(_ r: Result<HTTPResponse, RPCError>) -> JSON {
        switch r {
        case .failure(let e):
            return ["verified": false, "error": .string(e.message), "errorKind": e.data?["reason"] ?? "network"]
        case .success(let resp):
            var o: JSONObject = ["verified": .bool(resp.succeeded), "latencyMs": .double(resp.latencyMs)]
            o["status"] = resp.status.map { .int(Int64($0)) } ?? .null
            if let kind = resp.errorKind { o["errorKind"] = .string(kind) }
            if let e = resp.error { o["error"] = .string(e) }
            return .object(o)
        }
    }

    static func list(_ rows: [EndpointRow], limit: Int, dormantAfterMs: Int64) -> JSON {
        [
            "endpoints": .array(rows.map { .object(endpoint($0, dormantAfterMs: dormantAfterMs)) }),
            "cursor": rows.count == limit ? .from(rows.last.map { String($0.id) }) : .null,
        ]
    }

    static func removed(_ id: Int64, _ found: Bool) -> Result<JSON, RPCError> {
        found ? .success(["id": .string(String(id)), "removed": true]) : .failure(endpointNotFound(id))
    }

    static func rotated(_ id: Int64, _ found: Bool, secret: String, validUntilMs: Int64) -> Result<JSON, RPCError> {
        guard found else { return .failure(endpointNotFound(id)) }
        return .success([
            "id": .string(String(id)), "secret": .string(secret),
            "previousSecretValidUntil": .time(epochMs: validUntilMs),
        ])
    }

    // MARK: Deliveries

    /// `webhooks.send` to one endpoint: its delivery, or not found.
    static func sent(toEndpoint id: Int64, _ deliveries: [SentDelivery]) -> Result<JSON, RPCError> {
        guard let d = deliveries.first else { return .failure(endpointNotFound(id)) }
        let deliveryID = JSON.string(String(d.deliveryID))
        return .success(["deliveryIds": [deliveryID], "deliveryId": deliveryID, "duplicate": .bool(!d.new)])
    }

    /// `webhooks.send` by event: one delivery per subscribed endpoint (possibly none).
    static func sent(byEvent deliveries: [SentDelivery]) -> JSON {
        [
            "deliveryIds": .array(deliveries.map { .string(String($0.deliveryID)) }),
            "duplicate": .bool(!deliveries.isEmpty && deliveries.allSatisfy { !$0.new }),
        ]
    }

    /// A delivery with its attempts; without the receivers' answers (`responseBody`) for a role that
    /// may not see them.
    static func delivery(_ d: DeliveryRow, responseBodies: Bool) -> JSON {
        var o: JSONObject = [
            "id": .string(String(d.id)), "messageId": .string(d.messageID), "event": .string(d.event),
            "state": .string(d.state), "attempts": .int(d.attempts), "endpointId": .string(String(d.endpointID)),
            "createdAt": .time(epochMs: d.createdAtMs),
        ]
        if d.state == "pending" { o["nextAttemptAt"] = .time(epochMs: d.nextAttemptAtMs) }
        if let f = d.finishedAtMs { o["finishedAt"] = .time(epochMs: f) }
        if let s = d.lastStatus { o["lastStatus"] = .int(s) }
        if let e = d.lastError { o["lastError"] = .string(e) }
        o["attemptLog"] = .array(
            d.attemptLog.map { a in
                var o: JSONObject = [
                    "attempt": .from(a.attempt), "at": .time(epochMs: a.atMs), "status": .from(a.status),
                    "latencyMs": a.latencyMs.map(JSON.double) ?? .null, "errorKind": .from(a.errorKind),
                    "error": .from(a.error),
                ]
                if responseBodies { o["responseBody"] = .from(a.responseBody) }
                return .object(o)
            })
        return .object(o)
    }

    static func deliveries(_ rows: [DeliveryRow], limit: Int, responseBodies: Bool) -> JSON {
        [
            "deliveries": .array(rows.map { delivery($0, responseBodies: responseBodies) }),
            "cursor": rows.count == limit ? .from(rows.last.map { String($0.id) }) : .null,
        ]
    }

    static func redelivered(_ id: Int64, _ outcome: RedeliverOutcome) -> Result<JSON, RPCError> {
        let state: String
        switch outcome {
        case .notFound: return .failure(deliveryNotFound(id))
        case .requeued: state = "pending"
        case .unfinished(let s): state = s
        }
        return .success([
            "deliveryId": .string(String(id)), "requeued": .bool(outcome == .requeued), "state": .string(state),
        ])
    }

    static func recovered(_ endpointID: Int64, _ count: Int) -> JSON {
        ["endpointId": .string(String(endpointID)), "requeued": .from(count)]
    }
}
