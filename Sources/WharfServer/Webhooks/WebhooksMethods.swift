import WharfCore
import WharfHooks
import WharfRPC
import WharfStore

/// The webhooks family: endpoints, signed durable deliveries, health.
extension WebhooksService {
    func register(in methods: MethodTable) {
        let dormant = policy.dormantAfterMs

        methods.register("webhooks.register") { [unowned self] call in
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
            self.check(url) { [unowned self] r in
                if case .failure(let e) = r { return call.fail(e) }
                let secret = Signer.newSecret()
                store.insertEndpoint(
                    url: url, description: description, events: events, rateLimitPerS: rate, secret: secret,
                    disableAfterMs: disableAfter, dormantAfterMs: dormantAfter, retentionMs: retention
                ) { r in
                    switch r {
                    case .failure(let e): call.fail(e.rpcError)
                    case .success(let new):
                        self.ping(url: url, secrets: [secret], message: new.ping) { ping in
                            call.reply(
                                WebhookReplies.registered(new.row, secret: secret, ping: ping, dormantAfterMs: dormant))
                        }
                    }
                }
            }
        }

        methods.register("webhooks.update") { [unowned self] call in
            let p = call.params
            try p.onlyKnown([
                "id", "url", "description", "events", "rateLimitPerS", "disableAfterMs", "dormantAfterMs", "retentionMs",
            ])
            let id = try p.numericID("id")
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
                ) { r in call.finish(WebhookReplies.endpoint(r, id: id, dormantAfterMs: dormant)) }
            }
            guard let url else { return apply() }
            self.check(url) { r in
                if case .failure(let e) = r { return call.fail(e) }
                apply()
            }
        }

        methods.register("webhooks.get") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try call.params.numericID("id")
            store.endpoint(id) { r in call.finish(WebhookReplies.endpoint(r, id: id, dormantAfterMs: dormant)) }
        }

        methods.register("webhooks.health") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try call.params.numericID("id")
            store.endpoint(id) { r in
                call.finish(
                    r.mapError(\.rpcError).flatMap { row in
                        guard let row else { return .failure(WebhookReplies.endpointNotFound(id)) }
                        return .success(.object(WebhookReplies.health(row, dormantAfterMs: dormant)))
                    })
            }
        }

        methods.register("webhooks.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["limit", "cursor"])
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 100)
            let after = try p.has("cursor") ? p.numericID("cursor") : nil
            store.endpoints(after: after, limit: limit) { r in
                call.finish(
                    r.mapError(\.rpcError).map { WebhookReplies.list($0, limit: limit, dormantAfterMs: dormant) })
            }
        }

        methods.register("webhooks.remove") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try call.params.numericID("id")
            store.removeEndpoint(id) { r in
                call.finish(r.mapError(\.rpcError).flatMap { WebhookReplies.removed(id, $0) })
            }
        }

        methods.register("webhooks.test") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try call.params.numericID("id")
            store.endpointTarget(id) { r in
                switch r {
                case .failure(let e): call.fail(e.rpcError)
                case .success(nil): call.fail(WebhookReplies.endpointNotFound(id))
                case .success(let t?):
                    self.ping(url: t.url, secrets: t.secrets, message: t.ping) { call.reply(WebhookReplies.ping($0)) }
                }
            }
        }

        methods.register("webhooks.rotateSecret") { [unowned self] call in
            try call.params.onlyKnown(["id", "graceMs"])
            let id = try call.params.numericID("id")
            let grace = try call.params.optionalInt("graceMs", in: 0...2_592_000_000) ?? 86_400_000
            let secret = Signer.newSecret()
            store.rotateSecret(id, graceMs: grace, newSecret: secret) { r in
                call.finish(
                    r.mapError(\.rpcError).flatMap {
                        WebhookReplies.rotated(id, $0, secret: secret, validUntilMs: Timestamp.nowMs() + grace)
                    })
            }
        }

        methods.register("webhooks.enable") { [unowned self] call in
            try call.params.onlyKnown(["id"])
            let id = try call.params.numericID("id")
            store.enableEndpoint(id) { r in
                self.poke()
                if case .success(let e?) = r { self.context.raiseEnabled(e) }
                call.finish(WebhookReplies.endpoint(r, id: id, dormantAfterMs: dormant))
            }
        }

        methods.register("webhooks.send") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["endpointId", "event", "payload", "idempotencyKey"])
            let endpoint = try p.has("endpointId") ? p.numericID("endpointId") : nil
            let event = try p.optionalName("event", maxLength: 200)
            guard endpoint != nil || event != nil else {
                throw RPCError.invalidParams(field: "endpointId", "is required unless event is given")
            }
            guard let payload = p["payload"] else { throw RPCError.invalidParams(field: "payload", "is required") }
            let key = try p.optionalName("idempotencyKey", maxLength: 400)
            self.send(endpointID: endpoint, event: event ?? "message", data: payload, idempotencyKey: key) { r in
                call.finish(
                    r.flatMap { sent in
                        guard let endpoint else { return .success(WebhookReplies.sent(byEvent: sent)) }
                        return WebhookReplies.sent(toEndpoint: endpoint, sent)
                    })
            }
        }

        methods.register("webhooks.deliveries") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["endpointId", "state", "limit", "cursor"])
            let endpoint = try p.numericID("endpointId")
            let state = try p.optionalString("state")
            if let state, !["pending", "delivering", "succeeded", "failed"].contains(state) {
                throw RPCError.invalidParams(field: "state", "must be one of pending, delivering, succeeded, failed")
            }
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 50)
            let before = try p.has("cursor") ? p.numericID("cursor") : nil
            let bodies = Access.seesResponseBodies(call.session.role)
            store.deliveries(endpointID: endpoint, state: state, before: before, limit: limit) { r in
                call.finish(
                    r.mapError(\.rpcError).map { WebhookReplies.deliveries($0, limit: limit, responseBodies: bodies) })
            }
        }

        methods.register("webhooks.redeliver") { [unowned self] call in
            try call.params.onlyKnown(["deliveryId"])
            let id = try call.params.numericID("deliveryId")
            store.redeliver(id) { r in
                self.poke()
                call.finish(r.mapError(\.rpcError).flatMap { WebhookReplies.redelivered(id, $0) })
            }
        }

        methods.register("webhooks.recover") { [unowned self] call in
            try call.params.onlyKnown(["endpointId", "since"])
            let id = try call.params.numericID("endpointId")
            guard let since = Timestamp.parse(try call.params.string("since")) else {
                throw RPCError.invalidParams(field: "since", "must be an RFC 3339 date-time")
            }
            store.recoverDeliveries(endpointID: id, sinceMs: since) { r in
                self.poke()
                call.finish(r.mapError(\.rpcError).map { WebhookReplies.recovered(id, $0) })
            }
        }
    }
}
