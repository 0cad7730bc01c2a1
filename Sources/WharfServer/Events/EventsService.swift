import WharfCore
import WharfRPC
import WharfStore

/// The events family: what happens (jobs finishing, schedules firing, locks granted and lapsing,
/// endpoints changing state) reaches the connections that called `events.subscribe` (as JSON-RPC
/// notifications), the `GET /events` streams (Server-Sent Events), and the webhook endpoints that list
/// the event's type. Loop thread only.
///
/// Cost. A feature checks `wants(_:)` (one set lookup) before it builds an event, and `wanted` holds only
/// the types some subscriber, stream or endpoint anywhere asked for, so an event nobody wants costs that
/// lookup. Each replica announces the type patterns its subscribers want on `NOTIFY wharf_wake
/// 'event:{"replica", "interest"}'` (when they change and every 10 s; an announcement holds 30 s), and a
/// replica sends other replicas only the types they announced, many events to one NOTIFY (payloads under
/// 7,900 bytes, one loop turn's events together). Events from other replicas are delivered here as this
/// replica's own.
///
/// Every event delivered here gets an id `<boot>-<n>` (the replica's boot tag and a number that grows by
/// one) and enters a window of the last `eventWindow` events, from which a stream resumes after
/// `Last-Event-ID`. A stream's types stay wanted for a minute after it ends, so that what it misses
/// while it reconnects is in the window.
final class EventsService {
    let context: ServiceContext
    /// The connections open now (the runtime's).
    private let connections: () -> Dictionary<ObjectIdentifier, ClientConnection>.Values
    /// Where events go to the endpoints that list them.
    private let webhooks: WebhooksService
    /// This process's tag in event ids: another tag in a `Last-Event-ID` is another replica or boot.
    let boot: String
    private(set) var interest = EventInterest()
    private var window: RecentEvents<RaisedEvent>
    /// Connections with a subscription, by their session.
    private var subscribers: [ObjectIdentifier: ClientConnection] = [:]
    private var streams: [ObjectIdentifier: EventStream] = [:]
    /// Events for the other replicas, encoded, waiting for this turn's NOTIFY.
    private var outgoing: [String] = []
    private var outgoingBytes = 0
    private var sendScheduled = false
    private var lastAnnounced: Set<String> = []
    private var announceScheduled = false
    /// Endpoints that list types the server raises (except `endpoint.disabled`, which reaches endpoints
    /// through its own send), with those patterns.
    private var hookTargets: [(endpoint: Int64, patterns: [String])] = []
    private var refreshingHooks = false
    /// The last `at` made, by its millisecond: events of one millisecond share it.
    private var lastAt: (ms: Int64, json: JSON) = (-1, .null)
    private var observers: [(RaisedEvent) -> Void] = []

    /// How long an ended stream's types stay wanted.
    static let lingerMs: UInt64 = 60_000
    static let announceEveryMs: UInt64 = 10_000
    /// How long another replica's announcement holds without a repeat.
    static let announcementTTLMs: UInt64 = 30_000
    /// Largest NOTIFY payload sent (PostgreSQL's limit is 8,000 bytes).
    static let maxPayloadBytes = 7_900

    init(
        _ context: ServiceContext, webhooks: WebhooksService,
        connections: @escaping () -> Dictionary<ObjectIdentifier, ClientConnection>.Values
    ) {
        self.context = context
        self.webhooks = webhooks
        self.connections = connections
        window = RecentEvents(capacity: max(1, context.config.limits.eventWindow))
        var random = SystemRandomNumberGenerator()
        boot = String(random.next() & 0xffff_ffff, radix: 16)
    }

    func start() {
        context.onWake(.event) { [unowned self] payload in self.received(payload) }
        context.addChore(everyMs: 1_000) { [unowned self] in self.tick() }
        context.addChore(everyMs: Self.announceEveryMs) { [unowned self] in
            if !self.interest.announced.isEmpty { self.announce() }
        }
        // Replicas that run already announce at once what their subscribers want.
        notify(["replica": .string(context.config.replicaID), "hello": true])
        refreshHooks()
    }

    /// True when someone anywhere wants events of `type`: build the event only then.
    @inline(__always)
    func wants(_ type: EventType) -> Bool { interest.wanted.contains(type) }

    /// Raises an event: this replica's subscribers get it at once, other replicas through NOTIFY when
    /// they want its type, the endpoints that list its type as a webhook delivery.
    func raise(_ type: EventType, subject: String?, data: JSON) {
        let now = Timestamp.nowMs()
        if now != lastAt.ms { lastAt = (now, .string(Timestamp.format(epochMs: now))) }
        let event = RaisedEvent(
            type: type.rawValue, subject: subject.map { EventSubject(kind: type.subjectKind, name: $0) }, at: lastAt.json,
            data: data)
        deliver(event)
        if interest.remoteWanted.contains(type) { send(event) }
        if interest.hookWanted.contains(type) { fanOut(event) }
    }

    // MARK: Subscribers

    func register(in methods: MethodTable) {
        methods.register("events.subscribe") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["events", "queues", "schedules", "locks", "endpoints"])
            guard let events = try p.stringArray("events", maxCount: 100), !events.isEmpty else {
                throw RPCError.invalidParams(field: "events", "is required: event types such as job.dead, job.*, or *")
            }
            for e in events {
                if let problem = EventFilter.problem(e) { throw RPCError.invalidParams(field: "events", "\(e): \(problem)") }
            }
            var filter = call.session.eventFilter
            filter.types.formUnion(events)
            try Self.readSubjects(from: p, into: &filter)
            guard let connection = connections().first(where: { $0.session === call.session }) else {
                throw RPCError.invalidRequest("events.subscribe needs a connection that stays open")
            }
            subscribe(call.session, connection, filter)
            call.reply(Self.describe(filter))
        }

        methods.register("events.unsubscribe") { [unowned self] call in
            try call.params.onlyKnown(["events"])
            var filter = call.session.eventFilter
            if let events = try call.params.stringArray("events", maxCount: 100) {
                filter.types.subtract(events)
            } else {
                filter = EventFilter()
            }
            if filter.types.isEmpty { filter = EventFilter() }
            let connection = subscribers[ObjectIdentifier(call.session)]
            if let connection { subscribe(call.session, connection, filter) } else { call.session.eventFilter = filter }
            call.reply(Self.describe(filter))
        }
    }

    /// Reads `queues`, `schedules`, `locks` and `endpoints` (each replaces the list it names).
    static func readSubjects(from p: Params, into filter: inout EventFilter) throws(RPCError) {
        if let v = try p.stringArray("queues", maxCount: 1_000) { filter.queues = Set(v) }
        if let v = try p.stringArray("schedules", maxCount: 1_000) { filter.schedules = Set(v) }
        if let v = try p.stringArray("locks", maxCount: 1_000) { filter.locks = Set(v) }
        if let v = try p.stringArray("endpoints", maxCount: 1_000) { filter.endpoints = Set(v) }
    }

    /// The subscription as `events.subscribe` and `events.unsubscribe` reply it.
    static func describe(_ filter: EventFilter) -> JSON {
        var o: JSONObject = ["events": .array(filter.types.sorted().map(JSON.string))]
        for (name, names) in filter.subjectFields { o[name] = .array(names.sorted().map(JSON.string)) }
        return .object(o)
    }

    private func subscribe(_ session: Session, _ connection: ClientConnection, _ filter: EventFilter) {
        let key = ObjectIdentifier(session)
        interest.unsubscribed(session.eventFilter.types)
        session.eventFilter = filter
        if filter.types.isEmpty {
            subscribers[key] = nil
            session.removeCloseHook("events")
        } else {
            interest.subscribed(filter.types)
            if subscribers.updateValue(connection, forKey: key) == nil {
                session.onClose("events") { [unowned self, unowned session] in
                    self.subscribers[key] = nil
                    self.interest.unsubscribed(session.eventFilter.types)
                    self.interestChanged()
                }
            }
        }
        interestChanged()
    }

    /// Opens a `GET /events` stream; with `lastEventID`, the stream first gets what it missed from the
    /// window, or an `events.reset` notice when the window cannot tell.
    func openStream(filter: EventFilter, lastEventID: String?, heartbeatMs: UInt64) -> EventStream {
        let now = context.loop.nowMs
        let stream = EventStream(
            filter: filter, capacity: context.config.limits.maxSubscriberQueue, heartbeatMs: heartbeatMs, nowMs: now)
        if let lastEventID {
            switch resume(after: lastEventID) {
            case .events(let missed):
                for e in missed where filter.matches(type: e.type, subject: e.subject) { stream.push(e, nowMs: now) }
            case .gap(let oldest):
                stream.pushNotice(reset("outside_window", lastEventID, oldest: oldest), nowMs: now)
            case .unknown:
                stream.pushNotice(reset("unknown_id", lastEventID, oldest: window.oldestSeq), nowMs: now)
            }
        }
        streams[ObjectIdentifier(stream)] = stream
        interest.subscribed(filter.types)
        interestChanged()
        return stream
    }

    /// The stream's connection closed.
    func closeStream(_ stream: EventStream) {
        guard streams.removeValue(forKey: ObjectIdentifier(stream)) != nil else { return }
        stream.close()
        interest.unsubscribed(stream.filter.types, lingerUntilMs: context.loop.nowMs + Self.lingerMs)
        interestChanged()
    }

    private func resume(after id: String) -> RecentEvents<RaisedEvent>.Resume {
        guard let dash = id.lastIndex(of: "-"), id[..<dash] == boot, let seq = UInt64(id[id.index(after: dash)...])
        else { return .unknown }
        return window.after(seq)
    }

    /// The notice a stream gets when it cannot resume where it asked: events may have been missed.
    private func reset(_ reason: String, _ lastEventID: String, oldest: UInt64?) -> [UInt8] {
        var data: JSONObject = [
            "reason": .string(reason), "lastEventId": .string(lastEventID), "window": .from(window.capacity),
            "detail": .string(
                reason == "unknown_id"
                    ? "this replica did not give out that id (another replica, or it restarted): events may have been missed"
                    : "events after that id are no longer in this replica's window: some were missed"),
        ]
        if let oldest { data["oldestId"] = .string("\(boot)-\(oldest)") }
        return RaisedEvent.sse(event: "events.reset", id: nil, data: .object(data))
    }

    // MARK: Delivery

    /// Another part of this server that follows events (`jobs.wait`): `observer` sees every event
    /// delivered on this replica; `follow` makes `types` wanted on every replica until `unfollow`.
    func observe(_ observer: @escaping (RaisedEvent) -> Void) { observers.append(observer) }

    func follow(_ types: Set<String>) {
        interest.subscribed(types)
        interestChanged()
    }

    func unfollow(_ types: Set<String>) {
        interest.unsubscribed(types)
        interestChanged()
    }

    private func deliver(_ event: RaisedEvent) {
        event.id = "\(boot)-\(window.append(event))"
        for o in observers { o(event) }
        for c in subscribers.values where c.session.eventFilter.matches(type: event.type, subject: event.subject) {
            c.enqueueEvent(event.rpcLine)
        }
        if !streams.isEmpty {
            let now = context.loop.nowMs
            for s in streams.values where s.filter.matches(type: event.type, subject: event.subject) {
                s.push(event, nowMs: now)
            }
        }
    }

    private func tick() {
        let now = context.loop.nowMs
        if interest.expire(nowMs: now) { interestChanged() }
        for s in streams.values { s.heartbeat(nowMs: now) }
        refreshHooks()
    }

    // MARK: Other replicas

    private func received(_ payload: String) {
        guard let message = try? JSONParser.parse(payload),
            let replica = message["replica"]?.stringValue, replica != context.config.replicaID
        else { return }
        if message["hello"] != nil { return scheduleAnnouncement() }
        if let patterns = message["interest"]?.arrayValue {
            let ttl = UInt64(message["ttlMs"]?.intValue ?? Int64(Self.announcementTTLMs))
            interest.announced(
                by: replica, Set(patterns.compactMap(\.stringValue)), untilMs: context.loop.nowMs + ttl)
            return
        }
        let events = message["events"]?.arrayValue ?? [message]
        for e in events {
            guard let type = e["type"]?.stringValue else { continue }
            let subject = e["subject"]?.stringValue.map { EventSubject(kind: EventSubject.Kind(type: type), name: $0) }
            deliver(RaisedEvent(type: type, subject: subject, at: e["at"] ?? .null, data: e["data"] ?? .null))
        }
    }

    /// Queues an event for the other replicas; this turn's events leave together.
    private func send(_ event: RaisedEvent) {
        let text = event.wire.text
        let envelope = 40 + context.config.replicaID.utf8.count
        guard text.utf8.count + envelope <= Self.maxPayloadBytes else {
            context.logger.warning(
                "an event too large for NOTIFY stays on this replica", metadata: ["type": "\(event.type)"])
            return
        }
        if outgoingBytes + text.utf8.count + 1 + envelope > Self.maxPayloadBytes { sendOutgoing() }
        outgoing.append(text)
        outgoingBytes += text.utf8.count + 1
        guard !sendScheduled else { return }
        sendScheduled = true
        context.runBeforeFlush { [unowned self] in
            self.sendScheduled = false
            self.sendOutgoing()
        }
    }

    private func sendOutgoing() {
        guard !outgoing.isEmpty else { return }
        let replica = JSON.string(context.config.replicaID).text
        let payload = "{\"replica\":\(replica),\"events\":[\(outgoing.joined(separator: ","))]}"
        outgoing = []
        outgoingBytes = 0
        publish(payload)
    }

    private func interestChanged() {
        if interest.announced != lastAnnounced { scheduleAnnouncement() }
    }

    private func scheduleAnnouncement() {
        guard !announceScheduled else { return }
        announceScheduled = true
        context.runBeforeFlush { [unowned self] in
            self.announceScheduled = false
            self.announce()
        }
    }

    private func announce() {
        lastAnnounced = interest.announced
        notify([
            "replica": .string(context.config.replicaID), "interest": .array(lastAnnounced.sorted().map(JSON.string)),
            "ttlMs": .from(Int(Self.announcementTTLMs)),
        ])
    }

    private func notify(_ message: JSON) { publish(message.text) }

    private func publish(_ text: String) {
        context.store.publish(WakeTopic.event.payload(text)) { [unowned self] r in
            if case .failure(let e) = r {
                self.context.logger.warning("publishing events to other replicas failed", metadata: ["error": "\(e)"])
            }
        }
    }

    // MARK: Webhook endpoints

    /// Re-reads which endpoints list event types the server raises (a short statement, each second).
    private func refreshHooks() {
        guard !refreshingHooks, context.pool.isAvailable else { return }
        refreshingHooks = true
        context.store.endpointEventLists { [unowned self] r in
            self.refreshingHooks = false
            guard case .success(let lists) = r else { return }
            let raised = Set(EventType.allCases.filter { $0 != .endpointDisabled }.map(\.rawValue))
            self.hookTargets = lists.compactMap { (endpoint, events) in
                let patterns = events.filter { p in raised.contains { EventFilter.pattern(p, matches: $0) } }
                return patterns.isEmpty ? nil : (endpoint, patterns)
            }
            self.interest.hooksChanged(Set(self.hookTargets.flatMap(\.patterns)))
        }
    }

    /// Queues a delivery of `event` to every endpoint that lists its type. A `delivery.failed` about a
    /// delivery of a `delivery.failed` message goes to no endpoint (a failing receiver of them would
    /// otherwise feed itself).
    private func fanOut(_ event: RaisedEvent) {
        if event.type == EventType.deliveryFailed.rawValue, event.data["event"]?.stringValue == event.type { return }
        for t in hookTargets where t.patterns.contains(where: { EventFilter.pattern($0, matches: event.type) }) {
            webhooks.send(endpointID: t.endpoint, event: event.type, data: event.data) { [unowned self] r in
                if case .failure(let e) = r {
                    self.context.logger.warning(
                        "queueing an event's webhook failed",
                        metadata: ["type": "\(event.type)", "endpoint": "\(t.endpoint)", "error": "\(e.message)"])
                }
            }
        }
    }
}
