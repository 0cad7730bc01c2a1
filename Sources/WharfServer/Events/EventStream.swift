import WharfRPC

/// One `GET /events` subscriber: its filter, the Server-Sent Events messages waiting for it, and its
/// heartbeat clock. The HTTP connection that carries it moves messages into its output while the peer
/// keeps up; a stream whose queue fills (the peer reads slower than events come) takes no more events:
/// it gets what it holds, then one last `events.dropped` message naming the last of them, and its
/// connection closes; the client resumes from there with `Last-Event-ID`. Loop thread only.
final class EventStream {
    let filter: EventFilter
    let heartbeatMs: UInt64
    private var queue: SubscriberQueue
    /// Set once the queue overflowed; nothing more is queued.
    private(set) var overflowed = false
    /// Set when the stream should not receive more (its connection closed or overflowed).
    var isOver: Bool { overflowed || closed }
    private(set) var closed = false
    /// The id of the last event queued (where the client resumes after an overflow).
    private(set) var lastQueuedID: String?
    /// When something was last queued, for the heartbeat (loop milliseconds).
    private var lastQueuedMs: UInt64
    /// Called when a message was queued (the connection marks itself to flush).
    var onQueued: () -> Void = {}

    init(filter: EventFilter, capacity: Int, heartbeatMs: UInt64, nowMs: UInt64) {
        self.filter = filter
        self.heartbeatMs = heartbeatMs
        queue = SubscriberQueue(capacity: max(1, capacity))
        lastQueuedMs = nowMs
    }

    /// Bytes held for this subscriber.
    var byteCount: Int { queue.byteCount }
    /// Nothing waits to be written.
    var isDrained: Bool { queue.count == 0 }
    var capacity: Int { queue.capacity }

    /// Queues an event's message, or ends the stream when its queue is full.
    func push(_ event: RaisedEvent, nowMs: UInt64) {
        guard !isOver else { return }
        if queue.count == queue.capacity {
            overflowed = true
        } else {
            queue.push(event.sseMessage)
            lastQueuedID = event.id
        }
        lastQueuedMs = nowMs
        onQueued()
    }

    /// Queues a message that is not an event of the window (a notice at the start of the stream).
    func pushNotice(_ message: [UInt8], nowMs: UInt64) {
        guard !isOver else { return }
        queue.push(message)
        lastQueuedMs = nowMs
        onQueued()
    }

    /// Queues a comment when nothing was queued for `heartbeatMs`, so that proxies keep the stream open.
    func heartbeat(nowMs: UInt64) {
        guard !isOver, queue.count == 0, nowMs >= lastQueuedMs + heartbeatMs else { return }
        pushNotice(Array(": keep-alive\n\n".utf8), nowMs: nowMs)
    }

    /// The next message to write, oldest first.
    func pop() -> [UInt8]? {
        if case .event(let bytes)? = queue.pop() { return bytes }
        return nil
    }

    /// The last message of a stream whose queue overflowed.
    var droppedMessage: [UInt8] {
        var data: JSONObject = [
            "reason": "slow_subscriber", "queueLimit": .from(queue.capacity),
            "detail": "the events for this stream outgrew its queue; reconnect with Last-Event-ID to resume",
        ]
        if let lastQueuedID { data["lastEventId"] = .string(lastQueuedID) }
        return RaisedEvent.sse(event: "events.dropped", id: nil, data: .object(data))
    }

    /// The connection closed: the stream takes nothing more.
    func close() {
        closed = true
        queue.removeAll()
    }
}
