/// Events waiting to be written to one subscriber, bounded: when full, the oldest is dropped and
/// counted, and the count is delivered as a gap marker ahead of the events that follow it.
///
/// Pure. Events are shared encoded lines (one array per event, not copied per subscriber). The
/// connection moves events into its output only while the peer keeps up, so a slow peer's backlog
/// piles up here, where it can be dropped, rather than in the output, where it cannot.
struct SubscriberQueue: Sendable {
    /// Most events held; at least 1.
    let capacity: Int
    private var items: [[UInt8]] = []
    private var head = 0
    /// Events dropped since the last gap marker was taken.
    private(set) var dropped = 0
    /// Events dropped over the queue's life.
    private(set) var droppedTotal = 0
    /// Encoded bytes of the events held.
    private(set) var byteCount = 0

    init(capacity: Int) {
        precondition(capacity >= 1, "a subscriber queue holds at least one event")
        self.capacity = capacity
    }

    var count: Int { items.count - head }
    /// Slots the storage holds, taken events included (stays under `capacity` + 1,024 plus a little).
    var storedSlots: Int { items.count }
    /// True when there is nothing to take: no event and no gap to report.
    var isEmpty: Bool { count == 0 && dropped == 0 }

    /// Adds an event; when the queue is full the oldest one is dropped first.
    mutating func push(_ event: [UInt8]) {
        if count == capacity {
            byteCount -= items[head].count
            items[head] = []
            head += 1
            dropped += 1
            droppedTotal += 1
        }
        items.append(event)
        byteCount += event.count
        if head >= 1024, head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
    }

    enum Next: Equatable, Sendable {
        /// `count` events were dropped here; tell the subscriber before the next event.
        case gap(count: Int)
        case event([UInt8])
    }

    /// The next thing to write: a gap marker if events were dropped, else the oldest event.
    mutating func pop() -> Next? {
        if dropped > 0 {
            defer { dropped = 0 }
            return .gap(count: dropped)
        }
        guard count > 0 else { return nil }
        let event = items[head]
        items[head] = []
        head += 1
        byteCount -= event.count
        if head == items.count {
            items.removeAll(keepingCapacity: items.capacity <= 4096)
            head = 0
        }
        return .event(event)
    }

    /// Forgets everything (the connection closed).
    mutating func removeAll() {
        items = []
        head = 0
        byteCount = 0
        dropped = 0
    }
}
