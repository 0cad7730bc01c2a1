import WharfCore
import WharfRPC
import WharfStore

/// The events family: connections subscribe to event types and receive each event as a JSON-RPC
/// notification `{"method": "event", "params": {type, at, data}}`. Events raised on any replica reach
/// the subscribers of every replica (through `NOTIFY wharf_wake 'event:...'`).
extension Server {
    func registerEventMethods() {
        onWake(.event) { [unowned self] payload in
            guard let event = try? JSONParser.parse(payload), event["replica"]?.stringValue != config.replicaID,
                let type = event["type"]?.stringValue
            else { return }
            deliverEvent(type: type, at: event["at"] ?? .null, data: event["data"] ?? .null)
        }

        register("events.subscribe") { call in
            try call.params.onlyKnown(["events"])
            guard let events = try call.params.stringArray("events", maxCount: 100), !events.isEmpty else {
                throw RPCError.invalidParams(field: "events", "is required: event types such as endpoint.disabled, or *")
            }
            call.session.subscriptions.formUnion(events)
            call.reply(["events": .array(call.session.subscriptions.sorted().map(JSON.string))])
        }

        register("events.unsubscribe") { call in
            try call.params.onlyKnown(["events"])
            if let events = try call.params.stringArray("events", maxCount: 100) {
                call.session.subscriptions.subtract(events)
            } else {
                call.session.subscriptions = []
            }
            call.reply(["events": .array(call.session.subscriptions.sorted().map(JSON.string))])
        }
    }

    /// Raises an event: this replica's subscribers get it at once, the other replicas' through NOTIFY.
    func publishEvent(type: String, data: JSON) {
        let at = JSON.string(Timestamp.format(epochMs: Timestamp.nowMs()))
        deliverEvent(type: type, at: at, data: data)
        let payload: JSON = ["replica": .string(config.replicaID), "type": .string(type), "at": at, "data": data]
        store.publish(WakeTopic.event.payload(payload.text)) { [unowned self] r in
            if case .failure(let e) = r {
                logger.warning("publishing an event failed", metadata: ["type": "\(type)", "error": "\(e.message)"])
            }
        }
    }

    private func deliverEvent(type: String, at: JSON, data: JSON) {
        let note: JSON = [
            "jsonrpc": "2.0", "method": "event", "params": ["type": .string(type), "at": at, "data": data],
        ]
        // Encoded once; every subscriber's queue shares the same bytes.
        var line: [UInt8]?
        for c in connections.values
        where c.session.subscriptions.contains(type) || c.session.subscriptions.contains("*") {
            if line == nil {
                var w = JSONWriter(capacity: 256)
                w.write(note)
                w.bytes.append(0x0A)
                line = w.bytes
            }
            c.enqueueEvent(line!)
        }
    }
}
