import WharfCore
import WharfRPC
import WharfStore

/// The events family: connections subscribe to event types and receive each event as a JSON-RPC
/// notification `{"method": "event", "params": {type, at, data}}`. Events raised on any replica reach
/// the subscribers of every replica (through `NOTIFY wharf_wake 'event:...'`). Loop thread only.
final class EventsService {
    let context: ServiceContext
    /// The connections open now (the runtime's).
    private let connections: () -> Dictionary<ObjectIdentifier, ClientConnection>.Values

    init(_ context: ServiceContext, connections: @escaping () -> Dictionary<ObjectIdentifier, ClientConnection>.Values) {
        self.context = context
        self.connections = connections
    }

    func start() {
        context.onWake(.event) { [unowned self] payload in
            guard let event = try? JSONParser.parse(payload), event["replica"]?.stringValue != context.config.replicaID,
                let type = event["type"]?.stringValue
            else { return }
            deliver(type: type, at: event["at"] ?? .null, data: event["data"] ?? .null)
        }
    }

    func register(in methods: MethodTable) {
        methods.register("events.subscribe") { call in
            try call.params.onlyKnown(["events"])
            guard let events = try call.params.stringArray("events", maxCount: 100), !events.isEmpty else {
                throw RPCError.invalidParams(field: "events", "is required: event types such as endpoint.disabled, or *")
            }
            call.session.subscriptions.formUnion(events)
            call.reply(["events": .array(call.session.subscriptions.sorted().map(JSON.string))])
        }

        methods.register("events.unsubscribe") { call in
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
    func publish(type: String, data: JSON) {
        let at = JSON.string(Timestamp.format(epochMs: Timestamp.nowMs()))
        deliver(type: type, at: at, data: data)
        let payload: JSON = ["replica": .string(context.config.replicaID), "type": .string(type), "at": at, "data": data]
        context.store.publish(WakeTopic.event.payload(payload.text)) { [unowned self] r in
            if case .failure(let e) = r {
                context.logger.warning(
                    "publishing an event failed", metadata: ["type": "\(type)", "error": "\(e)"])
            }
        }
    }

    private func deliver(type: String, at: JSON, data: JSON) {
        let note: JSON = [
            "jsonrpc": "2.0", "method": "event", "params": ["type": .string(type), "at": at, "data": data],
        ]
        // Encoded once; every subscriber's queue shares the same bytes.
        var line: [UInt8]?
        for c in connections()
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
