import WharfCore
import WharfHooks
import WharfRPC
import WharfStore

/// The webhooks family: endpoints, signed durable deliveries, health.
extension Server {
    func registerWebhookMethods() {
        let hooks = webhooks

        register("webhooks.register") { [unowned self] call in
            let p = call.params
            try p.onlyKnown([
                "url", "description", "events", "rateLimitPerS", "disableAfterMs", "dormantAfterMs", "retentionMs",
            ])
            let url = try p.name("url", maxLength: 2000)
            let description = try p.optionalName("description", maxLength: 1000)
            let events = try p.stringArray("events", maxCount: 100)
            let rate = try p.optionalInt("rateLimitPerS", in: 1...100_000)
            let disableAfter = try p.optionalInt("disableAfterMs", in: 0...31_536_000_000)
            let dormantAfter = try p.optionalInt("dormantAfterMs", in: 0...31_536_000_000)
            let retention = try p.optionalInt("retentionMs", in: 0...31_536_000_000)
            hooks.check(url) { [unowned self] r in
                if case .failure(let e) = r { return call.fail(e) }
                let secret = Signer.newSecret()
                store.insertEndpoint(
                    url: url, description: description, events: events, rateLimitPerS: rate, secret: secret,
                    disableAfterMs: disableAfter, dormantAfterMs: dormantAfter, retentionMs: retention
                ) { r in
                    switch r {
                    case .failure(let e): call.fail(e)
                    case .success(let row):
                        hooks.ping(endpointID: row.id, url: url, secrets: [secret]) { ping in
                            var o = hooks.json(row)
                            o["secret"] = .string(secret)
                            o["ping"] = ping
                            o["verified"] = ping["verified"] ?? false
                            call.reply(.object(o))
                        }
                    }
                }
            }
        }

        register("webhooks.update") { [unowned self] call in
            let p = call.params
            try p.onlyKnown([
                "id", "url", "description", "events", "rateLimitPerS", "disableAfterMs", "dormantAfterMs", "retentionMs",
            ])
            let id = try Self.numericID(p, "id")
            let url = try p.optionalName("url", maxLength: 2000)
            let description = try p.optionalName("description", maxLength: 1000)
            let events = try p.stringArray("events", maxCount: 100)
            let rate = try p.optionalInt("rateLimitPerS", in: 1...100_000)
            let disableAfter = try p.optionalInt("disableAfterMs", in: 0...31_536_000_000)
            let dormantAfter = try p.optionalInt("dormantAfterMs", in: 0...31_536_000_000)
            let retention = try p.optionalInt("retentionMs", in: 0...31_536_000_000)
            let set = p.object.keys.filter { $0 != "id" }
            let apply = { [unowned self] in
                store.updateEndpoint(
                    id, url: url, description: description, events: events, rateLimitPerS: rate,
                    disableAfterMs: disableAfter, dormantAfterMs: dormantAfter, retentionMs: retention, set: set
                ) { r in call.finish(Self.endpointReply(r, id: id, hooks)) }
            }
            guard let url else { return apply() }
            hooks.check(url) { r in
                if case .failure(let e) = r { return call.fail(e) }
                apply()
            }
        }

        register("webhooks.get") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.numericID(call.params, "id")
            store.endpoint(id) { r in call.finish(Self.endpointReply(r, id: id, hooks)) }
        }

        register("webhooks.health") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.numericID(call.params, "id")
            store.endpoint(id) { r in
                call.finish(
                    r.flatMap { row in
                        guard let row else { return .failure(.notFound("webhook endpoint", id: String(id))) }
                        return .success(.object(hooks.health(row)))
                    })
            }
        }

        register("webhooks.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["limit", "cursor"])
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 100)
            let after = try p.has("cursor") ? Self.numericID(p, "cursor") : nil
            store.endpoints(after: after, limit: limit) { r in
                call.finish(
                    r.map { rows in
                        [
                            "endpoints": .array(rows.map { .object(hooks.json($0)) }),
                            "cursor": rows.count == limit ? .from(rows.last.map { String($0.id) }) : .null,
                        ]
                    })
            }
        }

        register("webhooks.remove") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.numericID(call.params, "id")
            store.removeEndpoint(id) { r in
                call.finish(
                    r.flatMap { removed in
                        removed
                            ? .success(["id": .string(String(id)), "removed": true])
                            : .failure(.notFound("webhook endpoint", id: String(id)))
                    })
            }
        }

        register("webhooks.test") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.numericID(call.params, "id")
            store.endpointSecrets(id) { r in
                switch r {
                case .failure(let e): call.fail(e)
                case .success(nil): call.fail(.notFound("webhook endpoint", id: String(id)))
                case .success(let found?): hooks.ping(endpointID: id, url: found.url, secrets: found.secrets) { call.reply($0) }
                }
            }
        }

        register("webhooks.rotateSecret") { [unowned self] call in
            try call.params.onlyKnown(["id", "graceMs"])
            let id = try Self.numericID(call.params, "id")
            let grace = try call.params.optionalInt("graceMs", in: 0...2_592_000_000) ?? 86_400_000
            let secret = Signer.newSecret()
            store.rotateSecret(id, graceMs: grace, newSecret: secret) { r in
                call.finish(
                    r.flatMap { ok in
                        guard ok else { return .failure(.notFound("webhook endpoint", id: String(id))) }
                        return .success([
                            "id": .string(String(id)), "secret": .string(secret),
                            "previousSecretValidUntil": .string(Timestamp.format(epochMs: Timestamp.nowMs() + grace)),
                        ])
                    })
            }
        }

        register("webhooks.enable") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try Self.numericID(call.params, "id")
            store.enableEndpoint(id) { r in
                hooks.poke()
                call.finish(Self.endpointReply(r, id: id, hooks))
            }
        }

        register("webhooks.send") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["endpointId", "event", "payload", "idempotencyKey"])
            let endpoint = try p.has("endpointId") ? Self.numericID(p, "endpointId") : nil
            let event = try p.optionalName("event", maxLength: 200)
            guard endpoint != nil || event != nil else {
                throw RPCError.invalidParams(field: "endpointId", "is required unless event is given")
            }
            guard let payload = p["payload"] else { throw RPCError.invalidParams(field: "payload", "is required") }
            let key = try p.optionalName("idempotencyKey", maxLength: 400)
            let type = event ?? "message"
            if let endpoint {
                let send = Store.WebhookSend(
                    messageID: WebhooksService.newMessageID(), endpointID: endpoint, event: type,
                    body: WebhooksService.body(event: type, data: payload), idempotencyKey: key)
                return hooks.sends.add(send) { r in
                    call.finish(
                        r.flatMap { row in
                            guard let row else { return .failure(.notFound("webhook endpoint", id: String(endpoint))) }
                            let id = JSON.string(String(row.deliveryID))
                            return .success(["deliveryIds": [id], "deliveryId": id, "duplicate": .bool(!row.new)])
                        })
                }
            }
            let send = Store.WebhookSend(
                messageID: WebhooksService.newMessageID(), endpointID: nil, event: type,
                body: WebhooksService.body(event: type, data: payload), idempotencyKey: key)
            hooks.eventSends.add(send) { r in
                call.finish(
                    r.map { rows in
                        let ids = rows.map { JSON.string(String($0.deliveryID)) }
                        return [
                            "deliveryIds": .array(ids), "duplicate": .bool(!rows.isEmpty && rows.allSatisfy { !$0.new }),
                        ]
                    })
            }
        }

        register("webhooks.deliveries") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["endpointId", "state", "limit", "cursor"])
            let endpoint = try Self.numericID(p, "endpointId")
            let state = try p.optionalString("state")
            if let state, !["pending", "delivering", "succeeded", "failed"].contains(state) {
                throw RPCError.invalidParams(field: "state", "must be one of pending, delivering, succeeded, failed")
            }
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 50)
            let before = try p.has("cursor") ? Self.numericID(p, "cursor") : nil
            let bodies = Access.seesResponseBodies(call.session.role)
            store.deliveries(endpointID: endpoint, state: state, before: before, limit: limit) { r in
                call.finish(
                    r.map { rows in
                        let shown = bodies ? rows : rows.map(WebhooksService.withoutResponseBodies)
                        return ["deliveries": .array(shown), "cursor": rows.count == limit ? rows.last?["id"] ?? .null : .null]
                    })
            }
        }

        register("webhooks.redeliver") { [unowned self] call in
            try call.params.onlyKnown(["deliveryId"])
            let id = try Self.numericID(call.params, "deliveryId")
            store.redeliver(id) { r in
                hooks.poke()
                call.finish(
                    r.flatMap { out in
                        guard let state = out.state else { return .failure(.notFound("webhook delivery", id: String(id))) }
                        return .success([
                            "deliveryId": .string(String(id)), "requeued": .bool(out.requeued),
                            "state": .string(out.requeued ? "pending" : state),
                        ])
                    })
            }
        }

        register("webhooks.recover") { [unowned self] call in
            try call.params.onlyKnown(["endpointId", "since"])
            let id = try Self.numericID(call.params, "endpointId")
            guard let since = Timestamp.parse(try call.params.string("since")) else {
                throw RPCError.invalidParams(field: "since", "must be an RFC 3339 date-time")
            }
            store.recoverDeliveries(endpointID: id, sinceMs: since) { r in
                hooks.poke()
                call.finish(r.map { ["endpointId": .string(String(id)), "requeued": .from($0)] })
            }
        }
    }

    /// An id given as a decimal string (or a JSON integer).
    static func numericID(_ p: Params, _ key: String) throws(RPCError) -> Int64 {
        guard let v = p[key] else { throw RPCError.invalidParams(field: key, "is required") }
        if let i = v.intValue, i > 0 { return i }
        guard let s = v.stringValue, let i = Int64(s), i > 0 else {
            throw RPCError.invalidParams(field: key, "must be an id such as \"42\"")
        }
        return i
    }

    static func endpointReply(_ r: Result<EndpointRow?, RPCError>, id: Int64, _ hooks: WebhooksService) -> Result<
        JSON, RPCError
    > {
        r.flatMap { row in
            guard let row else { return .failure(.notFound("webhook endpoint", id: String(id))) }
            return .success(.object(hooks.json(row)))
        }
    }
}

extension WebhooksService {
    /// An endpoint as the protocol shows it, with its health summary.
    func json(_ e: EndpointRow) -> JSONObject {
        [
            "id": .string(String(e.id)),
            "url": .string(e.url),
            "description": .from(e.description),
            "events": e.events.map { .array($0.map(JSON.string)) } ?? .null,
            "rateLimitPerS": .from(e.rateLimitPerS),
            "disableAfterMs": .from(e.disableAfterMs),
            "dormantAfterMs": .from(e.dormantAfterMs),
            "retentionMs": .from(e.retentionMs),
            "createdAt": .string(Timestamp.format(epochMs: e.createdAtMs)),
            "updatedAt": .string(Timestamp.format(epochMs: e.updatedAtMs)),
            "health": .object(health(e)),
        ]
    }

    func health(_ e: EndpointRow) -> JSONObject {
        func at(_ ms: Int64?) -> JSON { ms.map { .string(Timestamp.format(epochMs: $0)) } ?? .null }
        func rate(_ ok: Int64, _ all: Int64) -> JSON { all == 0 ? .null : .double((Double(ok) / Double(all) * 1000).rounded() / 1000) }
        let state = !e.enabled ? "disabled" : e.consecutiveFailures > 0 ? "failing" : "enabled"
        let dormantAfter = e.dormantAfterMs ?? policy.dormantAfterMs
        let dormant = e.nowMs - (e.lastSuccessMs ?? e.createdAtMs) > dormantAfter
        var o: JSONObject = [
            "state": .string(state),
            "dormant": .bool(dormant),
            "lastSuccessAt": at(e.lastSuccessMs),
            "lastFailureAt": at(e.lastFailureMs),
            "failingSince": at(e.failingSinceMs),
            "consecutiveFailures": .int(e.consecutiveFailures),
            "successRate1h": rate(e.successes1h, e.attempts1h),
            "successRate24h": rate(e.successes24h, e.attempts24h),
            "latencyP50Ms": e.latencyP50Ms.map { .double(($0 * 10).rounded() / 10) } ?? .null,
            "latencyP95Ms": e.latencyP95Ms.map { .double(($0 * 10).rounded() / 10) } ?? .null,
            "pendingDeliveries": .int(e.pending),
        ]
        if !e.enabled {
            o["disabledAt"] = at(e.disabledAtMs)
            o["disabledReason"] = .from(e.disabledReason)
        }
        return o
    }

    /// A delivery as a role that may not see receivers' answers gets it: its attempts without `responseBody`.
    static func withoutResponseBodies(_ delivery: JSON) -> JSON {
        guard var o = delivery.objectValue, let log = o["attemptLog"]?.arrayValue else { return delivery }
        o["attemptLog"] = .array(
            log.map { a in a.objectValue.map { .object(JSONObject($0.pairs.filter { $0.key != "responseBody" })) } ?? a })
        return .object(o)
    }
}
