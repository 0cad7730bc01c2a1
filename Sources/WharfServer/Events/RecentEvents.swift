/// The last `capacity` events a replica raised or received, numbered 1, 2, 3... in the order its
/// subscribers got them, from which a stream that reconnects with `Last-Event-ID` resumes.
///
/// Pure; a ring of fixed size, so its memory is bounded by `capacity` events whatever the rate.
struct RecentEvents<Element> {
    let capacity: Int
    private var ring: [Element?]
    /// Index in `ring` of the oldest event held.
    private var start = 0
    private(set) var count = 0
    /// The number of the newest event (0: none yet).
    private(set) var lastSeq: UInt64 = 0

    init(capacity: Int) {
        precondition(capacity >= 1, "a window holds at least one event")
        self.capacity = capacity
        ring = Array(repeating: nil, count: capacity)
    }

    /// The number of the oldest event held, or nil when none is.
    var oldestSeq: UInt64? { count == 0 ? nil : lastSeq - UInt64(count) + 1 }

    /// Adds the next event and returns its number; the oldest is forgotten when the window is full.
    @discardableResult
    mutating func append(_ element: Element) -> UInt64 {
        lastSeq += 1
        if count < capacity {
            ring[(start + count) % capacity] = element
            count += 1
        } else {
            ring[start] = element
            start = (start + 1) % capacity
        }
        return lastSeq
    }

    enum Resume {
        /// The events after the one asked for, oldest first (empty: it was the newest).
        case events([Element])
        /// Events after the one asked for were forgotten: the window starts at `oldestSeq` (nil: empty).
        case gap(oldestSeq: UInt64?)
        /// The number was never given out here.
        case unknown
    }

    /// What a subscriber that last saw event `seq` missed.
    func after(_ seq: UInt64) -> Resume {
        if seq > lastSeq { return .unknown }
        if seq == lastSeq { return .events([]) }
        guard let oldest = oldestSeq, seq + 1 >= oldest else { return .gap(oldestSeq: oldestSeq) }
        let skip = Int(seq + 1 - oldest)
        return .events((skip..<count).map { ring[(start + $0) % capacity]! })
    }
}
